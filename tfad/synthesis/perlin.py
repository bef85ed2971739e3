"""Perlin noise in TensorFlow, for the masks of the synthetic anomalies P_q.

Vectorised over pixels and driven by stateless random ops, so it runs inside a `tf.data` map with a
per-element seed and gives the same noise for the same seed on any machine.
"""

from __future__ import annotations

import math

import tensorflow as tf


def _fade(t: tf.Tensor) -> tf.Tensor:
    # Perlin's quintic interpolant: zero first and second derivatives at the lattice points.
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise_2d(
    height: int,
    width: int,
    res_y: tf.Tensor | int,
    res_x: tf.Tensor | int,
    seed: tf.Tensor,
) -> tf.Tensor:
    """Gradient (Perlin) noise of shape ``[height, width]`` with ``res_y x res_x`` lattice cells.

    Args:
        height, width: output size in pixels (any size; cells need not divide it).
        res_y, res_x: number of noise periods along each axis (>= 1), scalars, may be tensors.
        seed: a ``[2]`` int32/int64 tensor for the stateless random gradients.

    Returns:
        float32 noise, roughly in ``[-1, 1]`` (scaled by sqrt(2) as in the reference implementation).
    """
    res_y = tf.cast(res_y, tf.int32)
    res_x = tf.cast(res_x, tf.int32)
    angles = tf.random.stateless_uniform(
        tf.stack([res_y + 1, res_x + 1]), seed=seed, minval=0.0, maxval=2.0 * math.pi
    )
    gradients = tf.stack([tf.cos(angles), tf.sin(angles)], axis=-1)  # [ry+1, rx+1, 2]

    # Lattice coordinate of every pixel: integer cell and fractional position inside it.
    pos_y = tf.range(height, dtype=tf.float32) * tf.cast(res_y, tf.float32) / float(height)
    pos_x = tf.range(width, dtype=tf.float32) * tf.cast(res_x, tf.float32) / float(width)
    cell_y = tf.cast(tf.floor(pos_y), tf.int32)
    cell_x = tf.cast(tf.floor(pos_x), tf.int32)
    frac_y = pos_y - tf.floor(pos_y)
    frac_x = pos_x - tf.floor(pos_x)
    cy, cx = tf.meshgrid(cell_y, cell_x, indexing="ij")
    fy, fx = tf.meshgrid(frac_y, frac_x, indexing="ij")

    def corner(dy: int, dx: int) -> tf.Tensor:
        grad = tf.gather_nd(gradients, tf.stack([cy + dy, cx + dx], axis=-1))
        return grad[..., 0] * (fy - dy) + grad[..., 1] * (fx - dx)

    n00, n10, n01, n11 = corner(0, 0), corner(1, 0), corner(0, 1), corner(1, 1)
    ty, tx = _fade(fy), _fade(fx)
    top = n00 + ty * (n10 - n00)
    bottom = n01 + ty * (n11 - n01)
    return math.sqrt(2.0) * (top + tx * (bottom - top))


def perlin_mask(
    height: int,
    width: int,
    seed: tf.Tensor,
    max_scale_exponent: int = 6,
    threshold: float = 0.5,
) -> tf.Tensor:
    """Binary Perlin mask ``[height, width, 1]`` (float32 0/1) as in DRAEM / methods.md.

    The noise scale is ``2^a x 2^b`` with ``a, b ~ randint(0, max_scale_exponent)`` (upper bound
    exclusive), and the mask is ``noise > threshold``.
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=2)
    exponents = tf.random.stateless_uniform(
        [2], seed=seeds[0], minval=0, maxval=max_scale_exponent, dtype=tf.int32
    )
    res = tf.bitwise.left_shift(tf.ones([2], tf.int32), exponents)
    noise = perlin_noise_2d(height, width, res[0], res[1], seeds[1])
    return tf.cast(noise > threshold, tf.float32)[..., tf.newaxis]
