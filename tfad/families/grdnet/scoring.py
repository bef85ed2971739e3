"""GRD-Net's score function: the configured patch score (``grdnet.patch_score``) and the anomaly-map heatmap.

``map-max`` (the default) is the maximum of the mean-filtered discriminative map A
(:func:`tfad.scoring.discriminative.score_anomaly_map`, shared with the segmentation family); ``ssim`` is
1 - SSIM between the input and the generator's reconstruction
(:func:`tfad.scoring.reconstruction.ssim_score`), which the inference model outputs anyway. The heatmap
is A either way. It runs inside the exported SavedModel graph as well as in Python evaluation: one
definition.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tfad.scoring.discriminative import DEFAULT_FILTER_SIZE, score_anomaly_map
from tfad.scoring.reconstruction import PATCH_SCORES, ssim_score


def score_images(
    model,
    images: tf.Tensor,
    score: str = "map-max",
    filter_size: int = DEFAULT_FILTER_SIZE,
    roi: np.ndarray | None = None,
) -> dict[str, tf.Tensor]:
    """``score`` [N], ``heatmap`` [N, H, W] (A, times ``roi`` when given) and ``reconstruction`` of uint8
    ``images`` ``[N, H, W, C]``. ``ssim`` scores the whole patch, so it takes no ``roi`` (ValueError)."""
    if score == "map-max":
        return score_anomaly_map(model, images, filter_size, roi)
    if score != "ssim":
        raise ValueError(f"patch_score: one of {PATCH_SCORES}, got {score!r}")
    if roi is not None:
        raise ValueError("patch_score ssim scores the whole patch: it cannot honour an inference ROI")
    x = tf.cast(images, tf.float32) / 255.0
    outputs = model(x, training=False)
    return {
        "score": ssim_score(x, outputs["reconstruction"]),
        "heatmap": outputs["anomaly_map"][..., 0],
        "reconstruction": outputs["reconstruction"],
    }
