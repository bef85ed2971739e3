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


@pytest.mark.parametrize(
    ("sizes", "grid", "local_average"),
    [
        ((16, 8), 32, 3),  # SuperSimpleNet `line`: both taps upscaled, 3x3 mean
        ((32, 16), 32, 3),  # `accurate`: the finest tap already at the grid
        ((12, 6), 24, 3),  # SuperSimpleNet `line-fast`
        ((12, 6), 24, 1),  # no local mean
        ((8, 4), 6, 5),  # a grid coarser than the finest tap (downscaled), a wide mean
    ],
)
def test_a_1x1_convolution_of_the_feature_grid_is_the_grid_times_the_kernel(
    sizes, grid: int, local_average: int
) -> None:
    from tfad.backbones.features import convolve_feature_grid, feature_grid

    rng = np.random.default_rng(3)
    shapes = [(2, s, s, c) for s, c in zip(sizes, (5, 7), strict=True)]
    maps = [tf.constant(rng.normal(size=shape), tf.float32) for shape in shapes]
    kernel = tf.constant(rng.normal(size=(12, 9)), tf.float32)
    expected = tf.einsum("nhwd,dk->nhwk", feature_grid(maps, grid, local_average), kernel)
    _close(convolve_feature_grid(maps, kernel[None, None], grid, local_average), expected)
    bias = tf.constant(rng.normal(size=9) * 10, tf.float32)
    _close(
        convolve_feature_grid(maps, kernel[None, None], grid, local_average, bias[None, None]),
        expected + bias,
    )
    one_tap = tf.einsum("nhwd,dk->nhwk", feature_grid(maps[1:], grid, local_average), kernel[5:])
    _close(convolve_feature_grid(maps[1:], kernel[None, None, 5:], grid, local_average), one_tap)


def test_average_pool_matrix_is_tf_avg_pool_and_counts_only_cells_inside() -> None:
    from tfad.backbones.resampling import average_pool_matrix

    matrix = average_pool_matrix(6, 3)
    np.testing.assert_allclose(matrix[0, :3], [0.5, 0.5, 0.0])  # the border divides by the 2 cells inside
    np.testing.assert_allclose(matrix[2, 1:4], [1 / 3] * 3)
    image = tf.constant(np.random.default_rng(0).normal(size=(1, 6, 5, 1)), tf.float32)
    rows, cols = average_pool_matrix(6, 3), average_pool_matrix(5, 3)
    _close(resample(image, rows, cols), tf.nn.avg_pool2d(image, 3, 1, "SAME"))
    assert np.array_equal(average_pool_matrix(4, 1), np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="positive"):
        average_pool_matrix(4, 0)


@pytest.mark.parametrize(
    ("sizes", "grid", "local_average", "kernel_size"),
    [
        ((12, 6), 24, 3, 3),  # SuperSimpleNet `line-fast`'s classification head
        ((16, 8), 32, 3, 5),  # `line` with the paper's 5x5 head
        ((32, 16), 32, 1, 3),  # the finest tap already at the grid, no local mean
        ((8, 4), 6, 5, 3),  # a grid coarser than the finest tap
        ((5, 3), 4, 1, 7),  # a kernel wider than the grid: every tap partly outside
        ((3, 2), 2, 1, 7),  # taps shifted by more than the grid (radius 3 > grid 2): wholly outside
        ((6, 3), 3, 3, 9),  # the same with a local mean and a grid coarser than the finest tap
    ],
)
def test_convolve_feature_grid_equals_the_convolution_of_the_grid(
    sizes, grid: int, local_average: int, kernel_size: int
) -> None:
    from tfad.backbones.features import convolve_feature_grid, feature_grid

    rng = np.random.default_rng(4)
    shapes = [(2, s, s, c) for s, c in zip(sizes, (5, 7), strict=True)]
    maps = [tf.constant(rng.normal(size=shape), tf.float32) for shape in shapes]
    kernel = tf.constant(rng.normal(size=(kernel_size, kernel_size, 12, 4)), tf.float32)
    expected = tf.nn.conv2d(feature_grid(maps, grid, local_average), kernel, 1, "SAME")
    _close(convolve_feature_grid(maps, kernel, grid, local_average), expected)
    # a constant input feature b, seen through the zero padding: each tap's b . K[tap] where it is inside
    b = tf.constant(rng.normal(size=12) * 10, tf.float32)
    shifted = tf.nn.conv2d(feature_grid(maps, grid, local_average) + b, kernel, 1, "SAME")
    tap_bias = tf.einsum("d,yxdc->yxc", b, kernel)
    _close(convolve_feature_grid(maps, kernel, grid, local_average, tap_bias), shifted)
    one_tap = tf.nn.conv2d(feature_grid(maps[1:], grid, local_average), kernel[:, :, 5:], 1, "SAME")
    _close(convolve_feature_grid(maps[1:], kernel[:, :, 5:], grid, local_average), one_tap)


def test_convolve_feature_grid_refuses_an_even_or_misfitting_kernel() -> None:
    from tfad.backbones.features import convolve_feature_grid

    maps = [tf.zeros([1, 4, 4, 5]), tf.zeros([1, 2, 2, 7])]
    with pytest.raises(ValueError, match="k odd"):
        convolve_feature_grid(maps, tf.zeros([2, 2, 12, 3]), 8)
    with pytest.raises(ValueError, match="does not fit 12 feature channels"):
        convolve_feature_grid(maps, tf.zeros([3, 3, 11, 3]), 8)
    with pytest.raises(ValueError, match="does not fit 12 feature channels"):
        convolve_feature_grid(maps, tf.zeros([1, 1, 11, 3]), 8)
    with pytest.raises(ValueError, match="tap_bias"):  # a [C, k, k] bias would be silently misread
        convolve_feature_grid(maps, tf.zeros([3, 3, 12, 2]), 8, tap_bias=tf.zeros([2, 3, 3]))
