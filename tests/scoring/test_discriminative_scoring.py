"""GRD-Net scoring: the 21x21 mean-filtered maximum and the inference ROI, on constructed maps."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfad.scoring.discriminative import score_anomaly_map, smoothed_max_score


def _maps(*maps: np.ndarray) -> tf.Tensor:
    return tf.constant(np.stack(maps).astype(np.float32)[..., None])


def test_21x21_score_on_constructed_maps() -> None:
    size = 64
    blob = np.zeros((size, size))
    blob[20:41, 20:41] = 1.0  # exactly one filter window
    small = np.zeros((size, size))
    small[30:40, 30:40] = 1.0  # 100 of 441 pixels
    pixel = np.zeros((size, size))
    pixel[32, 32] = 1.0
    corner = np.zeros((size, size))
    corner[:11, :11] = 1.0  # the window at (0, 0) holds 11x11 in-image pixels, all ones
    scores = smoothed_max_score(_maps(blob, small, pixel, corner, np.zeros((size, size))), 21).numpy()
    np.testing.assert_allclose(scores, [1.0, 100 / 441, 1 / 441, 1.0, 0.0], rtol=1e-5, atol=1e-7)


class _FixedMapModel:
    """Stands in for the GRD-Net inference model: returns a preset map, echoes the input as reconstruction."""

    def __init__(self, anomaly_map: np.ndarray) -> None:
        self.anomaly_map = anomaly_map

    def __call__(self, x, training=False):
        n = tf.shape(x)[0]
        a = tf.tile(tf.constant(self.anomaly_map, tf.float32)[None, :, :, None], [n, 1, 1, 1])
        return {"reconstruction": x, "anomaly_map": a}


def test_inference_roi_removes_defects_outside_it() -> None:
    a = np.zeros((32, 32), np.float32)
    a[4:12, 20:28] = 0.9  # a defect in the right half
    roi = np.zeros((32, 32), np.float32)
    roi[:, :16] = 1  # inspect the left half only
    images = np.full((2, 32, 32, 1), 255, np.uint8)
    without = score_anomaly_map(_FixedMapModel(a), tf.constant(images), 5)
    with_roi = score_anomaly_map(_FixedMapModel(a), tf.constant(images), 5, roi)
    assert without["score"].numpy() == pytest.approx([0.9, 0.9], rel=1e-5)
    assert with_roi["score"].numpy() == pytest.approx([0.0, 0.0], abs=1e-7)
    assert with_roi["heatmap"].shape == (2, 32, 32)
    assert float(tf.reduce_max(with_roi["heatmap"][:, :, 16:])) == 0.0
    np.testing.assert_allclose(without["reconstruction"].numpy(), 1.0)  # uint8 255 -> 1.0


def test_mean_filter_equals_avg_pool_same() -> None:
    # the cumulative-sum filter is tf.nn.avg_pool2d(SAME) (padding excluded from the mean), only faster
    from tfad.scoring.discriminative import mean_filter

    a = tf.constant(np.random.default_rng(3).uniform(0, 1, (2, 40, 33, 1)).astype(np.float32))
    for size in (1, 5, 21):
        expected = tf.nn.avg_pool2d(a, ksize=size, strides=1, padding="SAME").numpy()
        np.testing.assert_allclose(mean_filter(a, size).numpy(), expected, atol=2e-6)
