"""Losses of the supervised families: class-weighted cross-entropy (classifier) and Dice + BCE / focal
(segmentation, 003 ch. 7).

Masks and maps are ``[N, H, W, 1]``; probabilities in [0, 1].
"""

from __future__ import annotations

import tensorflow as tf

from tfad.losses.discriminative import focal_loss

SEGMENTATION_LOSSES = ("dice+bce", "dice+focal")
_EPS = 1e-6


def weighted_cross_entropy(logits: tf.Tensor, labels: tf.Tensor, class_weights: tf.Tensor) -> tf.Tensor:
    """Softmax cross-entropy of ``logits`` [N, K] against int ``labels`` [N], each sample weighted by its
    class's weight (``class_weights`` [K]); normalised by the sum of the weights, so a balanced batch with
    unit weights gives the plain mean."""
    labels = tf.cast(labels, tf.int32)
    per_sample = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    weights = tf.gather(tf.cast(class_weights, tf.float32), labels)
    return tf.math.divide_no_nan(tf.reduce_sum(weights * per_sample), tf.reduce_sum(weights))


def dice_loss(probabilities: tf.Tensor, targets: tf.Tensor, smooth: float = 1.0) -> tf.Tensor:
    """Soft Dice loss ``1 - (2 |P n M| + s) / (|P| + |M| + s)`` per image, mean over the batch.

    The smoothing ``s`` (1 pixel) makes a good image (empty mask) predicted empty score 0 instead of 0/0.
    """
    p = tf.convert_to_tensor(probabilities, tf.float32)
    m = tf.convert_to_tensor(targets, tf.float32)
    axes = [1, 2, 3]
    inter = tf.reduce_sum(p * m, axis=axes)
    total = tf.reduce_sum(p, axis=axes) + tf.reduce_sum(m, axis=axes)
    return tf.reduce_mean(1.0 - (2.0 * inter + smooth) / (total + smooth))


def segmentation_loss(
    probabilities: tf.Tensor, targets: tf.Tensor, kind: str = "dice+bce", gamma: float = 2.0
) -> tf.Tensor:
    """Dice + pixel loss: binary cross-entropy (``"dice+bce"``) or focal loss (``"dice+focal"``, gamma)."""
    if kind == "dice+bce":
        return dice_loss(probabilities, targets) + focal_loss(probabilities, targets, 0.0)
    if kind == "dice+focal":
        return dice_loss(probabilities, targets) + focal_loss(probabilities, targets, gamma)
    raise ValueError(f"unknown segmentation loss {kind!r}; choose one of {SEGMENTATION_LOSSES}")
