"""ResGANAD's score function (Eq. 8.14-8.16): the configured patch score (1-SSIM, Eq. 8.14, or the maximum
of the mean-filtered error map: ``resganad.patch_score``) and the min-max |X - X_hat| heatmap.

It runs inside the exported SavedModel graph as well as in Python evaluation: one definition.
"""

from __future__ import annotations

import tensorflow as tf

from tfad.scoring.discriminative import DEFAULT_FILTER_SIZE
from tfad.scoring.reconstruction import minmax_heatmap, patch_score


def score_images(
    reconstructor,
    images: tf.Tensor,
    score: str = "ssim",
    score_map: str = "ssim",
    filter_size: int = DEFAULT_FILTER_SIZE,
) -> dict[str, tf.Tensor]:
    """The serving contract of reconstruction models, on uint8 ``images`` ``[N, H, W, C]``.

    Returns ``score`` [N] (the patch score ``score``: ``ssim`` = 1-SSIM, ``map-max`` = max of the
    ``filter_size`` x ``filter_size`` mean-filtered ``score_map``; tfad.scoring.reconstruction),
    ``heatmap`` [N, H, W] (min-max |X - X_hat|, whatever the score) and ``reconstruction`` [N, H, W, C] in
    [0, 1]. The exported SavedModel and Python scoring both run exactly this function.
    """
    x = tf.cast(images, tf.float32) / 255.0
    reconstruction = reconstructor(x, training=False)
    return {
        "score": patch_score(x, reconstruction, score, score_map, filter_size),
        "heatmap": minmax_heatmap(x, reconstruction),
        "reconstruction": reconstruction,
    }
