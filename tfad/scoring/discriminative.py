"""Scores and heatmaps of models with a discriminative anomaly map (GRD-Net, 003 s. 8.2.2.3-8.2.2.4).

The map A in [0, 1] is the heatmap (not re-normalised: its values are comparable across images); the
image score is the maximum of A smoothed by a ``filter_size`` x ``filter_size`` mean filter (21 in the
thesis, after DRAEM), so a single hot pixel cannot reject a patch but a defect-sized blob does. These run
inside the exported SavedModel graph as well as in Python evaluation: one definition.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

DEFAULT_FILTER_SIZE = 21


def smoothed_max_score(anomaly_map: tf.Tensor, filter_size: int = DEFAULT_FILTER_SIZE) -> tf.Tensor:
    """Image score ``[N]`` = max over pixels of the ``filter_size``-mean-filtered map ``[N, H, W, 1]``.

    The filter averages over the pixels inside the image only (``SAME`` padding without zeros), so a
    defect at the border is not diluted by padding.
    """
    smoothed = tf.nn.avg_pool2d(anomaly_map, ksize=filter_size, strides=1, padding="SAME")
    return tf.reduce_max(smoothed, axis=[1, 2, 3])


def score_anomaly_map(
    model, images: tf.Tensor, filter_size: int = DEFAULT_FILTER_SIZE, roi: np.ndarray | None = None
) -> dict[str, tf.Tensor]:
    """The serving contract of anomaly-map models, on uint8 ``images`` ``[N, H, W, C]``.

    ``model`` maps images in [0, 1] to ``{"reconstruction", "anomaly_map"}``. ``roi`` (optional, ``[H, W]``
    0/1) is multiplied into the map before scoring: defects outside it can never reject. Returns ``score``
    [N], ``heatmap`` [N, H, W] (= A, times the ROI) and ``reconstruction`` [N, H, W, C] in [0, 1].
    """
    x = tf.cast(images, tf.float32) / 255.0
    outputs = model(x, training=False)
    anomaly_map = outputs["anomaly_map"]
    if roi is not None:
        anomaly_map = anomaly_map * tf.constant(np.asarray(roi, np.float32)[None, :, :, None])
    return {
        "score": smoothed_max_score(anomaly_map, filter_size),
        "heatmap": anomaly_map[..., 0],
        "reconstruction": outputs["reconstruction"],
    }
