"""Score and heatmap primitives of reconstruction models (ResGANAD Eq. 8.14-8.16): 1-SSIM, the map-max
score and the min-max normalised difference. ResGANAD's and GRD-Net's score functions are built on them;
they run inside the exported SavedModel graph as well as in Python evaluation: one definition.

Two patch scores (``resganad.patch_score``, ``grdnet.patch_score``; docs/evaluation.md, "Patch scores of
the reconstruction models"):

- ``ssim``: 1 - SSIM(X, X_hat) over the whole patch (Eq. 8.14). A defect covering a few hundred of 65 536
  pixels moves this mean less than normal variation of the reconstruction does.
- ``map-max``: the maximum of a per-pixel error map after a ``filter_size`` x ``filter_size`` mean filter
  (GRD-Net's rule, :func:`tfad.scoring.discriminative.smoothed_max_score`): a defect-sized blob of error
  decides, wherever it is. The map is the local 1-SSIM (``ssim``: SSIM's own windows, mean over channels,
  the VALID region) or ``abs-error`` (|X - X_hat|, mean over channels).
"""

from __future__ import annotations

import tensorflow as tf

from tfad.losses.reconstruction import ssim, ssim_map
from tfad.scoring.discriminative import DEFAULT_FILTER_SIZE, smoothed_max_score

_EPS = 1e-8

#: ``resganad.patch_score`` / ``grdnet.patch_score`` values.
PATCH_SCORES = ("ssim", "map-max")
#: The per-pixel maps of the map-max score (``resganad.score_map``).
SCORE_MAPS = ("ssim", "abs-error")


def ssim_score(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """Patch anomaly score phi = 1 - SSIM(X, X_hat), ``[N]``; higher = more anomalous.

    Computed one image at a time: SSIM's intermediate maps of one 256x256 patch stay in the CPU cache,
    those of a 60-patch product do not (measured about 2x faster on the line PC, benchmarks/preset_cost.py).
    """
    return tf.map_fn(
        lambda pair: 1.0 - ssim(pair[0][None], pair[1][None])[0],
        (images, reconstructions),
        fn_output_signature=tf.float32,
    )


def ssim_error_map(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """Local 1 - SSIM ``[N, H - 10, W - 10]`` (:func:`tfad.losses.reconstruction.ssim_map`), mean over
    channels; its mean over pixels is :func:`ssim_score`."""
    return 1.0 - ssim_map(images, reconstructions)


def abs_error_map(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """|X - X_hat| ``[N, H, W]``, mean over channels (not normalised: comparable across images)."""
    return tf.reduce_mean(tf.abs(images - reconstructions), axis=-1)


def map_max_score(
    images: tf.Tensor,
    reconstructions: tf.Tensor,
    score_map: str = "ssim",
    filter_size: int = DEFAULT_FILTER_SIZE,
) -> tf.Tensor:
    """Patch score ``[N]`` = max of the ``filter_size`` x ``filter_size`` mean-filtered ``score_map``
    (``ssim``: :func:`ssim_error_map`; ``abs-error``: :func:`abs_error_map`); higher = more anomalous.

    One image at a time, as :func:`ssim_score`: the map and its filtered copy of one 256x256 patch stay in
    the CPU cache (the filter alone ran 51-75 ms per 60 maps this way against 85-89 ms as one batch). On 60
    patches (2-core Xeon, shared) this score costs about 1.5x :func:`ssim_score` with the SSIM map and about
    half of it with |X - X_hat|.
    """
    maps = {"ssim": ssim_error_map, "abs-error": abs_error_map}
    if score_map not in maps:
        raise ValueError(f"score_map: one of {SCORE_MAPS}, got {score_map!r}")
    error_map = maps[score_map]
    return tf.map_fn(
        lambda pair: smoothed_max_score(error_map(pair[0][None], pair[1][None])[..., None], filter_size)[0],
        (images, reconstructions),
        fn_output_signature=tf.float32,
    )


def patch_score(
    images: tf.Tensor,
    reconstructions: tf.Tensor,
    name: str = "ssim",
    score_map: str = "ssim",
    filter_size: int = DEFAULT_FILTER_SIZE,
) -> tf.Tensor:
    """The patch score ``name`` (``ssim``: :func:`ssim_score`; ``map-max``: :func:`map_max_score` of
    ``score_map`` and ``filter_size``) of ``images`` and their ``reconstructions`` in [0, 1], ``[N]``."""
    if name == "ssim":
        return ssim_score(images, reconstructions)
    if name == "map-max":
        return map_max_score(images, reconstructions, score_map, filter_size)
    raise ValueError(f"patch_score: one of {PATCH_SCORES}, got {name!r}")


def minmax_heatmap(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """Heatmap H = per-image min-max normalised |X - X_hat| (mean over channels), ``[N, H, W]`` in [0, 1].

    A perfect reconstruction (constant difference) gives an all-zero map instead of dividing by zero.
    """
    diff = tf.reduce_mean(tf.abs(images - reconstructions), axis=-1)
    low = tf.reduce_min(diff, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(diff, axis=[1, 2], keepdims=True)
    return (diff - low) / tf.maximum(high - low, _EPS)
