"""Resizing and blurring as matrix products equal TensorFlow's ops (tfad.backbones.resampling)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tfad.backbones.resampling import blur_matrix, resample, resize_images, resize_matrix, upsample_blur
from tfad.scoring.discriminative import gaussian_blur


def _close(got: tf.Tensor, expected: tf.Tensor, rtol: float = 1e-5) -> None:
    expected = np.asarray(expected)
    assert got.shape == expected.shape
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=rtol * np.abs(expected).max())


@pytest.mark.parametrize(("size_in", "size_out", "channels"), [(256, 96, 1), (256, 128, 3), (64, 200, 1)])
@pytest.mark.parametrize("antialias", [True, False])
def test_resize_images_equals_tf_image_resize(
    size_in: int, size_out: int, channels: int, antialias: bool
) -> None:
    images = tf.constant(
        np.random.default_rng(size_in + channels).random((3, size_in, size_in, channels), np.float32)
    )
    expected = tf.image.resize(images, [size_out, size_out], method="bilinear", antialias=antialias)
    _close(resize_images(images, size_out, antialias=antialias), expected)


@pytest.mark.parametrize(
    ("grid", "size", "sigma"), [(12, 256, 4.0), (16, 256, 4.0), (28, 256, 2.5), (12, 64, 0.0)]
)
def test_upsample_blur_equals_resize_then_gaussian_blur(grid: int, size: int, sigma: float) -> None:
    # a grid with one hot cell and noise: the blur's reflection at the border and the resize both matter
    maps = np.random.default_rng(grid).random((2, grid, grid, 1)).astype(np.float32)
    maps[0, 0, grid - 1, 0] = 5.0
    maps = tf.constant(maps)
    expected = gaussian_blur(tf.image.resize(maps, [size, size], method="bilinear"), sigma)
    _close(upsample_blur(maps, size, sigma), expected)


def test_blur_matrix_rows_sum_to_one_and_reflect() -> None:
    matrix = blur_matrix(40, 2.0)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-6)
    # REFLECT mirrors without repeating the edge: pixel 0's weight reaches pixel 1 from both sides
    assert matrix[1, 0] < matrix[0, 0] and matrix[0, 1] > matrix[1, 2]
    assert np.array_equal(blur_matrix(5, 0.0), np.eye(5, dtype=np.float32))


def test_bad_sizes_are_named() -> None:
    with pytest.raises(ValueError, match="positive"):
        resize_matrix(0, 4)
    with pytest.raises(ValueError, match="radius 16"):
        blur_matrix(10, 4.0)
    with pytest.raises(ValueError, match="do not fit"):
        resample(tf.zeros([1, 8, 8, 1]), np.eye(4, 8, dtype=np.float32), np.eye(4, 6, dtype=np.float32))
