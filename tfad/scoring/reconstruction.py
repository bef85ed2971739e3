"""Score and heatmap primitives of reconstruction models (ResGANAD Eq. 8.14-8.16): 1-SSIM and the
min-max normalised difference. ResGANAD's score function (``tfad.families.resganad.scoring``) is built on
them; they run inside the exported SavedModel graph as well as in Python evaluation: one definition.
"""

from __future__ import annotations

import tensorflow as tf

from tfad.losses.reconstruction import ssim

_EPS = 1e-8


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


def minmax_heatmap(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """Heatmap H = per-image min-max normalised |X - X_hat| (mean over channels), ``[N, H, W]`` in [0, 1].

    A perfect reconstruction (constant difference) gives an all-zero map instead of dividing by zero.
    """
    diff = tf.reduce_mean(tf.abs(images - reconstructions), axis=-1)
    low = tf.reduce_min(diff, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(diff, axis=[1, 2], keepdims=True)
    return (diff - low) / tf.maximum(high - low, _EPS)
