"""SuperSimpleNet's losses (001; methods.md): truncated L1 and focal loss on logits.

The segmentation head outputs a logit per grid cell and the classification head a logit per image; both
are trained against 0/1 targets (the feature-noise mask and whether an image holds any anomaly).
"""

from __future__ import annotations

import tensorflow as tf

TRUNCATION = 0.5  # SSN's threshold: a normal cell's logit below -0.5, an anomalous one's above 0.5, costs 0
FOCAL_GAMMA = 4.0  # SSN's focusing parameter


def truncated_l1_loss(logits: tf.Tensor, targets: tf.Tensor, threshold: float = TRUNCATION) -> tf.Tensor:
    """``mean(max(0, t + l))`` over normal cells + ``mean(max(0, t - l))`` over anomalous cells.

    ``logits`` and 0/1 ``targets`` have the same shape. Each mean is over its own cells, so the rare
    anomalous cells weigh as much as the normal ones; a kind with no cells contributes 0.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    y = tf.cast(targets, tf.float32)
    normal = tf.nn.relu(threshold + logits) * (1.0 - y)
    anomalous = tf.nn.relu(threshold - logits) * y
    n_normal, n_anomalous = tf.reduce_sum(1.0 - y), tf.reduce_sum(y)
    return tf.math.divide_no_nan(tf.reduce_sum(normal), n_normal) + tf.math.divide_no_nan(
        tf.reduce_sum(anomalous), n_anomalous
    )


def focal_loss_with_logits(logits: tf.Tensor, targets: tf.Tensor, gamma: float = FOCAL_GAMMA) -> tf.Tensor:
    """Mean binary focal loss ``-(1 - p_t)^gamma log p_t`` with ``p = sigmoid(logits)`` (no class weight).

    Computed from the logits (``log p = log_sigmoid(l)``), so a confident logit stays finite where
    ``log(sigmoid(l))`` would underflow. ``gamma = 0`` is the binary cross-entropy.
    """
    logits = tf.convert_to_tensor(logits, tf.float32)
    y = tf.cast(targets, tf.float32)
    log_p = tf.math.log_sigmoid(logits)  # log p
    log_not_p = tf.math.log_sigmoid(-logits)  # log (1 - p)
    p = tf.sigmoid(logits)
    loss = -y * tf.pow(1.0 - p, gamma) * log_p - (1.0 - y) * tf.pow(p, gamma) * log_not_p
    return tf.reduce_mean(loss)
