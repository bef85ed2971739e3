"""GRD-Net's discriminative losses on constructed maps: focal loss, overlap terms, Table 9.3 variants."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from tfad.losses.discriminative import (
    ROI_LOSS_VARIANTS,
    focal_loss,
    outside_overlap_loss,
    overlap_loss,
    roi_focal_loss,
)


def _map(values: np.ndarray) -> tf.Tensor:
    return tf.constant(np.asarray(values, np.float32)[None, :, :, None])


def test_focal_loss_by_hand() -> None:
    # one anomalous pixel at p = 0.5, one normal pixel at p = 0.25, gamma = 2
    p = _map([[0.5, 0.25]])
    y = _map([[1.0, 0.0]])
    expected = (-(0.5**2) * math.log(0.5) + -(0.25**2) * math.log(0.75)) / 2
    assert float(focal_loss(p, y, gamma=2.0)) == pytest.approx(expected, rel=1e-5)


def test_focal_loss_with_gamma_zero_is_binary_cross_entropy() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, (2, 8, 8, 1)).astype(np.float32)
    y = (rng.uniform(size=(2, 8, 8, 1)) > 0.7).astype(np.float32)
    bce = float(tf.reduce_mean(tf.keras.losses.binary_crossentropy(y, p)))
    assert float(focal_loss(p, y, gamma=0.0)) == pytest.approx(bce, rel=1e-4)


def test_focal_loss_down_weights_easy_pixels() -> None:
    y = _map([[1.0]])
    easy, hard = _map([[0.9]]), _map([[0.1]])
    ratio_focal = float(focal_loss(easy, y)) / float(focal_loss(hard, y))
    ratio_bce = float(focal_loss(easy, y, 0.0)) / float(focal_loss(hard, y, 0.0))
    assert ratio_focal < ratio_bce / 10  # (1-p)^2: 0.01 vs 0.81
    assert float(focal_loss(_map([[1.0, 0.0]]), _map([[1.0, 0.0]]))) < 1e-6  # perfect map: ~0, finite


def test_overlap_loss_inside_outside_half() -> None:
    roi = np.zeros((4, 4))
    roi[:, :2] = 1
    inside, outside, half = np.zeros((4, 4)), np.zeros((4, 4)), np.zeros((4, 4))
    inside[0, 0] = 1
    outside[0, 3] = 1
    half[0, 1] = half[0, 2] = 1
    assert float(overlap_loss(_map(inside), _map(roi), 0.7)) == pytest.approx(0.0)
    assert float(overlap_loss(_map(outside), _map(roi), 0.7)) == pytest.approx(0.7)
    assert float(overlap_loss(_map(half), _map(roi), 0.7)) == pytest.approx(0.35)
    assert float(overlap_loss(_map(np.zeros((4, 4))), _map(roi))) == 0.0  # empty map: no penalty, no NaN
    assert float(outside_overlap_loss(_map(inside), _map(roi))) == pytest.approx(0.0)
    assert float(outside_overlap_loss(_map(outside), _map(roi))) == pytest.approx(1.0)


def _gradient(variant: str, anomaly: np.ndarray, noise_mask: np.ndarray, roi: np.ndarray) -> np.ndarray:
    a = tf.Variable(_map(anomaly))
    with tf.GradientTape() as tape:
        loss = roi_focal_loss(a, _map(noise_mask), _map(roi), variant)
    return tape.gradient(loss, a).numpy()[0, :, :, 0]


def test_case_2_does_not_learn_anomalies_outside_the_roi() -> None:
    # A synthetic anomaly on both sides of an ROI boundary: with the intersection loss (case 2) the
    # pixels outside the ROI give no gradient at all, so they are never learned as anomalies.
    roi = np.zeros((6, 6))
    roi[:, :3] = 1
    noise_mask = np.zeros((6, 6))
    noise_mask[2:4, 1:5] = 1  # straddles the boundary
    anomaly = np.full((6, 6), 0.3)
    grad = _gradient("focal-intersection", anomaly, noise_mask, roi)
    assert np.all(grad[:, 3:] == 0.0)
    assert np.all(grad[2:4, 1:3] < 0)  # inside: pushed up towards the mask
    assert np.all(grad[:2, :3] > 0)  # inside, normal: pushed down
    # without the intersection (variant 1's focal term) the outside anomaly is learned
    grad_plain = _gradient("focal+overlap", anomaly, noise_mask, roi)
    assert np.all(grad_plain[2:4, 3:5] < 0)


def test_every_variant_is_finite_and_unknown_is_named() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 1, (2, 8, 8, 1)).astype(np.float32)
    m = (rng.uniform(size=(2, 8, 8, 1)) > 0.8).astype(np.float32)
    r = np.ones((2, 8, 8, 1), np.float32)
    r[:, :, 4:] = 0
    for variant in ROI_LOSS_VARIANTS:
        assert np.isfinite(float(roi_focal_loss(a, m, r, variant)))
    with pytest.raises(ValueError, match="unknown ROI loss variant 'case9'"):
        roi_focal_loss(a, m, r, "case9")
