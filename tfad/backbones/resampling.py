"""Linear resampling of image-like maps as matrix products: resizing and Gaussian blurring.

Resizing (``tf.image.resize``, bilinear, with or without antialiasing) and a separable Gaussian blur are
linear and act on rows and columns separately, so each is ``Y = A X B^T`` per image and channel, and a chain
of them is one such product with the matrices multiplied together. On CPU this is much faster than the ops
themselves where they are slow: a 33-tap blur as two one-channel convolutions, an antialiased downscale
(``ScaleAndTranslate``), a blur after an upsampling that blurs a map 400 times larger than its grid. The
matrices are built once per size from TensorFlow's own resize (so they are its definition, not a copy of it)
and the results equal the ops' within float rounding (tested).

Used by the backbone's input downscale (:func:`tfad.backbones.feature_map`) and by the families that turn a
feature-grid distance map into an image-size heatmap (:func:`upsample_blur`).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import tensorflow as tf


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian of radius ``ceil(4 sigma)``."""
    radius = max(1, math.ceil(4 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).astype(np.float32)


@functools.lru_cache(maxsize=64)
def resize_matrix(size_in: int, size_out: int, antialias: bool = False) -> np.ndarray:
    """``[size_out, size_in]``: ``tf.image.resize(..., method="bilinear", antialias=antialias)`` along one
    axis, as a matrix (read off by resizing the unit vectors with TensorFlow itself)."""
    if size_in < 1 or size_out < 1:
        raise ValueError(f"resize sizes must be positive, got {size_in} -> {size_out}")
    with tf.init_scope():  # eager even while a tf.function or an export traces the caller
        unit_vectors = tf.eye(size_in)[:, :, None, None]  # size_in images of size_in x 1
        resized = tf.image.resize(unit_vectors, [size_out, 1], method="bilinear", antialias=antialias)
        return np.ascontiguousarray(resized.numpy()[:, :, 0, 0].T, dtype=np.float32)


@functools.lru_cache(maxsize=64)
def average_pool_matrix(size: int, window: int) -> np.ndarray:
    """``[size, size]``: ``tf.nn.avg_pool2d(..., window, 1, "SAME")`` along one axis, as a matrix (read off by
    pooling the unit vectors with TensorFlow itself). SAME pooling divides by the cells inside the map, so
    the 2-D pool is the product of the two axes' matrices; the identity for ``window == 1``."""
    if size < 1 or window < 1:
        raise ValueError(f"average pool: size and window must be positive, got {size} and {window}")
    with tf.init_scope():
        unit_vectors = tf.eye(size)[:, :, None, None]  # size images of size x 1
        pooled = tf.nn.avg_pool2d(unit_vectors, [window, 1], 1, "SAME")
        return np.ascontiguousarray(pooled.numpy()[:, :, 0, 0].T, dtype=np.float32)


@functools.lru_cache(maxsize=64)
def blur_matrix(size: int, sigma: float) -> np.ndarray:
    """``[size, size]``: the Gaussian of :func:`gaussian_kernel` along one axis with ``REFLECT`` borders
    (mirror without repeating the edge), as a matrix; the identity for ``sigma <= 0``."""
    if sigma <= 0:
        return np.eye(size, dtype=np.float32)
    kernel = gaussian_kernel(sigma).astype(np.float64)
    radius = len(kernel) // 2
    if radius >= size:
        raise ValueError(f"a Gaussian of sigma {sigma} (radius {radius}) needs maps larger than {size}")
    matrix = np.zeros((size, size), np.float64)
    for i in range(size):
        for k, weight in enumerate(kernel):
            j = i + k - radius
            j = -j if j < 0 else 2 * (size - 1) - j if j >= size else j
            matrix[i, j] += weight
    return matrix.astype(np.float32)


def resample(maps: tf.Tensor, rows: np.ndarray, cols: np.ndarray) -> tf.Tensor:
    """``rows @ X @ cols^T`` for every image and channel of ``maps`` ``[N, H, W, C]``: ``[N, H', W', C]``
    for ``rows`` ``[H', H]`` and ``cols`` ``[W', W]`` (static H, W, C)."""
    _, height, width, channels = maps.shape
    if (rows.shape[1], cols.shape[1]) != (height, width):
        raise ValueError(f"resample: matrices {rows.shape} x {cols.shape} do not fit maps {maps.shape}")
    with tf.name_scope("resample"):  # one scope for benchmarks/serving_profile.py
        x = maps if channels == 1 else tf.transpose(maps, [0, 3, 1, 2])  # channels as images
        x = tf.reshape(x, [-1, width])
        x = tf.matmul(x, tf.constant(cols.T))  # every row at once: one large matrix product
        x = tf.matmul(tf.constant(rows), tf.reshape(x, [-1, height, cols.shape[0]]))
        if channels == 1:
            return tf.reshape(x, [-1, rows.shape[0], cols.shape[0], 1])
        return tf.transpose(tf.reshape(x, [-1, channels, rows.shape[0], cols.shape[0]]), [0, 2, 3, 1])


def resize_images(images: tf.Tensor, size: int, antialias: bool = False) -> tf.Tensor:
    """``tf.image.resize(images, [size, size], "bilinear", antialias=antialias)`` as matrix products."""
    height, width = images.shape[1], images.shape[2]
    return resample(images, resize_matrix(height, size, antialias), resize_matrix(width, size, antialias))


@functools.lru_cache(maxsize=64)
def upsample_blur_matrix(size_in: int, size: int, sigma: float) -> np.ndarray:
    """``[size, size_in]``: the bilinear resize to ``size``, then :func:`blur_matrix`, along one axis."""
    blur = blur_matrix(size, float(sigma)).astype(np.float64)
    return (blur @ resize_matrix(size_in, size).astype(np.float64)).astype(np.float32)


def upsample_blur(maps: tf.Tensor, size: int, sigma: float) -> tf.Tensor:
    """Bilinear resize of ``[N, g, g', C]`` maps to ``size`` x ``size``, then the ``REFLECT``-bordered
    Gaussian blur of ``sigma`` (none for ``sigma <= 0``), in one product per axis."""
    height, width = maps.shape[1], maps.shape[2]
    return resample(maps, upsample_blur_matrix(height, size, sigma), upsample_blur_matrix(width, size, sigma))
