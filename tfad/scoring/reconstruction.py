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

from tfad.losses.reconstruction import ssim_map
from tfad.scoring.discriminative import DEFAULT_FILTER_SIZE, smoothed_max_score
from tfad.scoring.native import fused_minmax_heatmap, fused_ssim

#: Images per iteration of the map-max score loop: SSIM's maps of 6 256x256 patches stay in the CPU's caches,
#: those of a 60-patch product do not, and one image per iteration pays TensorFlow's per-op cost 60 times
#: (1-SSIM of a 60-patch product as TensorFlow ops, in a development timing not kept as a script: 23.8 ms
#: per image, 20.9 ms in chunks of 6, 25.0 ms at once; AMD EPYC Zen 5 ~2.7 GHz, AVX-512).
SCORE_CHUNK = 6


def _per_chunk(score, images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    # score(images [k, H, W, C], reconstructions) -> [k], applied to chunks of SCORE_CHUNK images (the last
    # may be shorter) in a loop, so any batch size works; [N].
    count = tf.shape(images)[0]
    chunks = (count + SCORE_CHUNK - 1) // SCORE_CHUNK
    scores = tf.TensorArray(tf.float32, size=chunks, infer_shape=False, element_shape=tf.TensorShape([None]))

    def body(index: tf.Tensor, scores: tf.TensorArray) -> tuple[tf.Tensor, tf.TensorArray]:
        first = index * SCORE_CHUNK
        chunk = slice(first, first + SCORE_CHUNK)
        return index + 1, scores.write(index, score(images[chunk], reconstructions[chunk]))

    _, scores = tf.while_loop(lambda index, _: index < chunks, body, (tf.constant(0), scores))
    return tf.ensure_shape(scores.concat(), [images.shape[0]])


#: ``resganad.patch_score`` / ``grdnet.patch_score`` values.
PATCH_SCORES = ("ssim", "map-max")
#: The per-pixel maps of the map-max score (``resganad.score_map``).
SCORE_MAPS = ("ssim", "abs-error")


def ssim_score(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """Patch anomaly score phi = 1 - SSIM(X, X_hat), ``[N]``; higher = more anomalous.

    Computed by the fused ``TfadSsim`` kernel (:func:`tfad.scoring.native.fused_ssim`), which reads each
    image once; it has no gradient (training's SSIM is :func:`tfad.losses.reconstruction.ssim`).
    """
    return 1.0 - fused_ssim(images, reconstructions)


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

    In chunks of :data:`SCORE_CHUNK` images: the maps and their filtered copies stay
    in the CPU's caches (the filter alone ran 51-75 ms per 60 maps one image at a time against 85-89 ms as one
    batch).
    """
    maps = {"ssim": ssim_error_map, "abs-error": abs_error_map}
    if score_map not in maps:
        raise ValueError(f"score_map: one of {SCORE_MAPS}, got {score_map!r}")
    error_map = maps[score_map]
    return _per_chunk(
        lambda x, y: smoothed_max_score(error_map(x, y)[..., None], filter_size), images, reconstructions
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
    Computed by the fused ``TfadMinmaxHeatmap`` kernel (:func:`tfad.scoring.native.fused_minmax_heatmap`).
    """
    return fused_minmax_heatmap(images, reconstructions)
