"""Geometric augmentation for training: random rotation and vertical flips (never horizontal).

Horizontal flips are excluded on purpose: on a vial line a mirrored patch is itself an anomaly
(methods.md). Stateless ops keyed by a per-sample seed keep every epoch reproducible.
"""

from __future__ import annotations

import math

import tensorflow as tf


def _rotation_transform(angle: tf.Tensor, height: int, width: int) -> tf.Tensor:
    # ImageProjectiveTransformV3 maps output pixel (x, y) to input (a0 x + a1 y + a2, b0 x + b1 y + b2).
    cos, sin = tf.cos(angle), tf.sin(angle)
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    a2 = cx - cos * cx + sin * cy
    b2 = cy - sin * cx - cos * cy
    zero = tf.zeros_like(cos)
    return tf.stack([cos, -sin, a2, sin, cos, b2, zero, zero])[tf.newaxis]


def rotate(image: tf.Tensor, angle: tf.Tensor, interpolation: str = "BILINEAR") -> tf.Tensor:
    """Rotate ``[H, W, C]`` by ``angle`` radians about the centre, reflecting at the borders."""
    height, width = image.shape[0], image.shape[1]
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=_rotation_transform(tf.cast(angle, tf.float32), height, width),
        output_shape=tf.constant([height, width], tf.int32),
        fill_value=0.0,
        interpolation=interpolation,
        fill_mode="REFLECT",
    )
    return out[0]


def random_rotate_flip(
    images: dict[str, tf.Tensor],
    seed: tf.Tensor,
    max_angle: float = math.pi / 8,
    vertical_flip: bool = True,
    nearest_keys: tuple[str, ...] = ("mask", "roi"),
) -> dict[str, tf.Tensor]:
    """Apply one random rotation in ``[-max_angle, max_angle]`` and an optional vertical flip (p = 0.5)
    to every ``[H, W, C]`` tensor of ``images`` alike (image and its masks stay aligned).

    Keys in ``nearest_keys`` (binary masks) are resampled with nearest-neighbour interpolation.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    angle = tf.random.stateless_uniform([], seed=seeds[0], minval=-max_angle, maxval=max_angle)
    flip = tf.random.stateless_uniform([], seed=seeds[1]) < 0.5 if vertical_flip else tf.constant(False)
    out = {}
    for key, value in images.items():
        value = (
            rotate(value, angle, "NEAREST" if key in nearest_keys else "BILINEAR") if max_angle > 0 else value
        )
        out[key] = tf.cond(flip, lambda v=value: tf.reverse(v, axis=[0]), lambda v=value: v)
    return out
