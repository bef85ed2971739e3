"""ResGANAD's score function (Eq. 8.14-8.16): 1-SSIM score, min-max |X - X_hat| heatmap.

It runs inside the exported SavedModel graph as well as in Python evaluation: one definition.
"""

from __future__ import annotations

import tensorflow as tf

from tfad.scoring.reconstruction import minmax_heatmap, ssim_score


def score_images(reconstructor, images: tf.Tensor) -> dict[str, tf.Tensor]:
    """The serving contract of reconstruction models, on uint8 ``images`` ``[N, H, W, C]``.

    Returns ``score`` [N] (1-SSIM), ``heatmap`` [N, H, W] (min-max |X - X_hat|) and ``reconstruction``
    [N, H, W, C] in [0, 1]. The exported SavedModel and Python scoring both run exactly this function.
    """
    x = tf.cast(images, tf.float32) / 255.0
    reconstruction = reconstructor(x, training=False)
    return {
        "score": ssim_score(x, reconstruction),
        "heatmap": minmax_heatmap(x, reconstruction),
        "reconstruction": reconstruction,
    }
