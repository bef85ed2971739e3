"""The plain autoencoder's score function (seed 004 Eq. 1 as the anomaly score):

    score = alpha * MSE(X, X_hat) + (1 - alpha) * (1 - SSIM(X, X_hat))    per patch

and the min-max |X - X_hat| heatmap of the other reconstruction families (tfad.scoring.reconstruction). It
runs inside the exported SavedModel graph as well as in Python evaluation: one definition.
"""

from __future__ import annotations

import tensorflow as tf

from tfad.scoring.reconstruction import minmax_heatmap, ssim_score

DEFAULT_ALPHA = 0.1  # seed 004's best configuration (h2)


def mse_score(images: tf.Tensor, reconstructions: tf.Tensor) -> tf.Tensor:
    """MSE(X, X_hat) per patch, ``[N]``: the mean of the squared error over pixels and channels."""
    return tf.reduce_mean(tf.square(images - reconstructions), axis=[1, 2, 3])


def combined_score(images: tf.Tensor, reconstructions: tf.Tensor, alpha: float = DEFAULT_ALPHA) -> tf.Tensor:
    """``alpha * MSE + (1 - alpha) * (1 - SSIM)`` per patch, ``[N]``; higher = more anomalous. The 1-SSIM
    term is :func:`tfad.scoring.reconstruction.ssim_score` (ResGANAD's patch score), computed only when it
    weighs anything (alpha = 1 is the MSE alone)."""
    score = alpha * mse_score(images, reconstructions)
    if alpha < 1.0:
        score += (1.0 - alpha) * ssim_score(images, reconstructions)
    return score


def score_images(reconstructor, images: tf.Tensor, alpha: float = DEFAULT_ALPHA) -> dict[str, tf.Tensor]:
    """The serving contract of reconstruction models on uint8 ``images`` ``[N, H, W, C]``: ``score`` [N]
    (:func:`combined_score`), ``heatmap`` [N, H, W] (per-image min-max |X - X_hat|, mean over channels) and
    ``reconstruction`` [N, H, W, C] in [0, 1]."""
    x = tf.cast(images, tf.float32) / 255.0
    reconstruction = reconstructor(x, training=False)
    return {
        "score": combined_score(x, reconstruction, alpha),
        "heatmap": minmax_heatmap(x, reconstruction),
        "reconstruction": reconstruction,
    }
