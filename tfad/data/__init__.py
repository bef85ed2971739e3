"""Data: sample records, MVTec and line layouts, streaming tf.data pipelines, rank images, synthetic vials.

Import the submodules (``tfad.data.layouts``, ``tfad.data.pipeline``, ...); this package imports nothing
so that ``tfad.data.records`` and ``tfad.data.layouts`` stay usable without TensorFlow. See docs/data.md.
"""
