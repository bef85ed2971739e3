"""Losses of GRD-Net's discriminative U-Net (003 Eq. 8.7-8.9, 9.3-9.4, Table 9.3).

The U-Net outputs an anomaly map A in (0, 1) ``[N, H, W, 1]``; it is trained against the synthetic anomaly
mask M of P_q, optionally restricted by a region-of-interest mask ROI (1 = inspect, 0 = ignore). The four
variants of Table 9.3 are selectable (``ROI_LOSS_VARIANTS``) so the ablation can be rerun:

1. ``focal+overlap``: FL(A, M) + L_overlap(A, ROI) (Eq. 9.4, the original formulation);
2. ``focal-intersection``: FL(A * ROI, M) (Eq. 8.9, "case 2", the thesis's best and the default);
3. ``focal-intersection+overlap``: FL(A * ROI, M) + L_overlap(A, ROI);
4. ``focal+outside-overlap``: FL(A, M) + w |A n (1 - ROI)| / min(|A|, |1 - ROI|), the "negated overlap"
   that penalises anomaly mass outside the ROI instead of rewarding it inside (the thesis names it only
   in words; this is the reading used here).

With case 2 a pixel outside the ROI contributes a constant to the loss and no gradient: a synthetic anomaly
there is not learned as an anomaly (tested).
"""

from __future__ import annotations

import tensorflow as tf

ROI_LOSS_VARIANTS = (
    "focal+overlap",
    "focal-intersection",
    "focal-intersection+overlap",
    "focal+outside-overlap",
)
_EPS = 1e-6


def focal_loss(probabilities: tf.Tensor, targets: tf.Tensor, gamma: float = 2.0) -> tf.Tensor:
    """Mean binary focal loss (Eq. 8.7): -(1-p)^g log p on anomalous pixels, -p^g log(1-p) on normal ones.

    ``probabilities`` are in [0, 1] (clipped to [1e-6, 1 - 1e-6] so a hard 0/1 stays finite); ``targets``
    0/1 of the same shape. ``gamma = 0`` is the binary cross-entropy.
    """
    p = tf.clip_by_value(tf.convert_to_tensor(probabilities, tf.float32), _EPS, 1.0 - _EPS)
    y = tf.convert_to_tensor(targets, tf.float32)
    positive = -y * tf.pow(1.0 - p, gamma) * tf.math.log(p)
    negative = -(1.0 - y) * tf.pow(p, gamma) * tf.math.log(1.0 - p)
    return tf.reduce_mean(positive + negative)


def overlap_loss(anomaly_map: tf.Tensor, region: tf.Tensor, weight: float = 1.0) -> tf.Tensor:
    """Eq. 9.3: ``w (1 - |A n R| / min(|A|, |R|))`` per image (soft counts), mean over the batch.

    0 when the predicted anomaly mass lies wholly inside ``region``, ``w`` when it lies wholly outside.
    An image with an empty map or region contributes 0.
    """
    a = tf.convert_to_tensor(anomaly_map, tf.float32)
    r = tf.convert_to_tensor(region, tf.float32)
    axes = [1, 2, 3]
    inter = tf.reduce_sum(a * r, axis=axes)
    smaller = tf.minimum(tf.reduce_sum(a, axis=axes), tf.reduce_sum(r, axis=axes))
    ratio = tf.math.divide_no_nan(inter, smaller)
    return weight * tf.reduce_mean(tf.where(smaller > 0, 1.0 - ratio, 0.0))


def outside_overlap_loss(anomaly_map: tf.Tensor, roi: tf.Tensor, weight: float = 1.0) -> tf.Tensor:
    """``w |A n (1 - ROI)| / min(|A|, |1 - ROI|)`` per image, mean over the batch (variant 4)."""
    a = tf.convert_to_tensor(anomaly_map, tf.float32)
    outside = 1.0 - tf.convert_to_tensor(roi, tf.float32)
    axes = [1, 2, 3]
    inter = tf.reduce_sum(a * outside, axis=axes)
    smaller = tf.minimum(tf.reduce_sum(a, axis=axes), tf.reduce_sum(outside, axis=axes))
    return weight * tf.reduce_mean(tf.math.divide_no_nan(inter, smaller))


def roi_focal_loss(
    anomaly_map: tf.Tensor,
    noise_mask: tf.Tensor,
    roi: tf.Tensor,
    variant: str = "focal-intersection",
    gamma: float = 2.0,
    overlap_weight: float = 1.0,
) -> tf.Tensor:
    """The discriminative loss L_FL of the chosen Table 9.3 ``variant`` (module docstring)."""
    if variant == "focal-intersection":
        return focal_loss(anomaly_map * roi, noise_mask, gamma)
    if variant == "focal+overlap":
        return focal_loss(anomaly_map, noise_mask, gamma) + overlap_loss(anomaly_map, roi, overlap_weight)
    if variant == "focal-intersection+overlap":
        return focal_loss(anomaly_map * roi, noise_mask, gamma) + overlap_loss(
            anomaly_map, roi, overlap_weight
        )
    if variant == "focal+outside-overlap":
        return focal_loss(anomaly_map, noise_mask, gamma) + outside_overlap_loss(
            anomaly_map, roi, overlap_weight
        )
    raise ValueError(f"unknown ROI loss variant {variant!r}; choose one of {ROI_LOSS_VARIANTS}")
