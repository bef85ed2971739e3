"""Dense feature maps of a pretrained backbone, shared by the families built on it (embedding, SSN).

The tapped stages of :func:`tfad.backbones.build_feature_extractor` have different resolutions; a family
wants one grid of feature vectors: every tap bilinearly resized to the grid and concatenated along channels,
then averaged over a k x k neighbourhood (PatchCore's "locally aware" features, SuperSimpleNet's pooling).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfad.backbones.efficientnet_lite import folded_features
from tfad.backbones.resampling import average_pool_matrix, resize_images, resize_matrix


def feature_map(
    images: tf.Tensor, extractor: keras.Model, input_size: int, grid_size: int, local_average: int = 1
) -> tf.Tensor:
    """Images in [0, 1] ``[N, H, W, C]`` -> features ``[N, grid_size, grid_size, D]``.

    Args:
        images: float images in [0, 1]; resized (bilinear, antialiased: ``tf.image.resize``'s definition,
            computed as matrix products, :mod:`tfad.backbones.resampling`) to ``input_size`` inside the graph
            when they have another size.
        extractor: the backbone (:func:`tfad.backbones.build_feature_extractor`), run in inference mode with
            its batch normalisations folded into the convolutions (:func:`tfad.backbones.folded_features`:
            the same function, faster on CPU); its batch statistics never move.
        input_size: the resolution the backbone sees.
        grid_size: cells per side of the output grid; every tap is bilinearly resized to it.
        local_average: odd k of the k x k mean over neighbouring cells (1 = off). SAME pooling divides by the
            cells inside the grid, so border cells are not darkened.
    """
    return feature_grid(backbone_taps(images, extractor, input_size), grid_size, local_average)


def backbone_taps(images: tf.Tensor, extractor: keras.Model, input_size: int) -> list[tf.Tensor]:
    """Images in [0, 1] -> the backbone's tapped outputs at their own resolutions, finest first: the first
    step of :func:`feature_map`, whose docstring describes the arguments."""
    if images.shape[1] != input_size or images.shape[2] != input_size:
        images = resize_images(images, input_size, antialias=True)  # = tf.image.resize, faster on CPU
    return folded_features(extractor, images)


def feature_grid(maps: list[tf.Tensor], grid_size: int, local_average: int = 1) -> tf.Tensor:
    """The tapped outputs ``maps`` -> features ``[N, grid_size, grid_size, D]``: the second step of
    :func:`feature_map`, whose docstring describes the arguments."""
    resized = [
        m if m.shape[1] == grid_size else tf.image.resize(m, [grid_size, grid_size], method="bilinear")
        for m in maps
    ]
    features = tf.concat(resized, axis=-1) if len(resized) > 1 else resized[0]
    if local_average > 1:
        features = tf.nn.avg_pool2d(features, local_average, 1, "SAME")
    return features


def convolve_feature_grid(
    maps: list[tf.Tensor],
    kernel: tf.Tensor,
    grid_size: int,
    local_average: int = 1,
    tap_bias: tf.Tensor | None = None,
) -> tf.Tensor:
    """``conv2d(feature_grid(maps, grid_size, local_average), kernel, SAME)``: ``[N, g, g, C]`` for a
    ``[k, k, D, C]`` kernel (k odd), plus, with ``tap_bias`` ``[k, k, C]``, each tap's constant wherever that
    tap falls inside the grid (a constant input feature seen through the convolution's zero padding).

    A k x k convolution is k^2 shifted 1x1 projections. A projection mixes channels only, and the resize and
    the local mean act on each channel alike, so they commute: each tap is projected at its own resolution
    (1 / s^2 of the grid's cells for a tap s times coarser than the grid), to the k^2 x C per-tap channels,
    and each tap's shift is taken into the resampling matrices: one product along the columns with the k
    column-shifted matrices side by side, one along the rows with the k row-shifted ones, which also sums
    the taps. Neither the D-channel grid nor the k^2 x C-channel one is ever written: for SuperSimpleNet
    `line-fast`'s supervised graph, 8.69 GFLOP per product instead of 11.17 and 0.82x the served inference
    time (2.6 GHz Intel Xeon, AVX2 code; docs/performance.md). With k = 1 it is the grid times a ``[D, C]``
    kernel: a few large matrix products with the C channels as the wide side (no transposes; SuperSimpleNet's
    folded segmentation head). A family's linear layers after the features (an
    adaptor, a 1x1 convolution, an inference-mode batch normalisation) fold into ``kernel`` and
    ``tap_bias``. Equal to the direct computation within float rounding (tested).
    """
    size = int(kernel.shape[0])
    if kernel.shape.rank != 4 or kernel.shape[1] != size or size % 2 == 0:
        raise ValueError(f"convolve_feature_grid: kernel {kernel.shape} is not [k, k, D, C] with k odd")
    total = sum(int(m.shape[-1]) for m in maps)
    if kernel.shape[2] != total:
        raise ValueError(
            f"convolve_feature_grid: kernel {kernel.shape} does not fit {total} feature channels"
        )
    out_channels, radius = int(kernel.shape[3]), size // 2
    if tap_bias is not None and tuple(tap_bias.shape) != (size, size, out_channels):
        raise ValueError(
            f"convolve_feature_grid: tap_bias {tap_bias.shape} is not [k, k, C] = {size, size, out_channels}"
        )
    pool = average_pool_matrix(grid_size, local_average).astype(np.float64)
    # [D, (dy, dx, C)]: each input channel's contribution to every tap's outputs
    projection = tf.reshape(tf.transpose(kernel, [2, 0, 1, 3]), [total, size * size * out_channels])
    along_columns, row_matrices, first = [], [], 0
    with tf.name_scope("feature_grid_convolution"):  # one scope for benchmarks/serving_profile.py
        for tap in maps:
            _, height, width, channels = tap.shape
            rows, cols = (_resize_and_pool(n, grid_size, pool) for n in (height, width))
            x = tf.matmul(tf.reshape(tap, [-1, channels]), projection[first : first + channels])
            if tap_bias is not None and first == 0:  # the resampling's weights sum to one: a constant stays
                x = x + tf.reshape(tap_bias, [-1])
            first += channels
            if size > 1:  # [N, h, w, dy, dx, C] -> [N h dy, (dx w), C] (already in that order for k = 1)
                x = tf.transpose(
                    tf.reshape(x, [-1, height, width, size, size, out_channels]), [0, 1, 3, 4, 2, 5]
                )
            x = tf.reshape(x, [-1, size * width, out_channels])
            shifted = [_shifted_rows(cols, dx - radius) for dx in range(size)]
            x = tf.matmul(tf.constant(np.concatenate(shifted, axis=1)), x)  # [N h dy, g, C]: dx summed
            x = tf.reshape(x, [-1, height, size, grid_size * out_channels])
            if size > 1:  # -> [N, (dy h), g C]
                x = tf.transpose(x, [0, 2, 1, 3])
            along_columns.append(tf.reshape(x, [-1, size * height, grid_size * out_channels]))
            row_matrices.extend(_shifted_rows(rows, dy - radius) for dy in range(size))
        x = along_columns[0] if len(maps) == 1 else tf.concat(along_columns, axis=1)
        # along the rows, summing the row taps and the backbone taps
        x = tf.matmul(tf.constant(np.concatenate(row_matrices, axis=1)), x)
        return tf.reshape(x, [-1, grid_size, grid_size, out_channels])


def _shifted_rows(matrix: np.ndarray, shift: int) -> np.ndarray:
    # row i of the result is row i + shift of ``matrix``, zero where that is outside: the grid's value at
    # offset ``shift``, with the zero padding of a SAME convolution
    out = np.zeros_like(matrix)
    n = matrix.shape[0]
    lo, hi = max(0, -shift), min(n, n - shift)
    if lo < hi:  # else the shift is the grid's size or more: every row is outside
        out[lo:hi] = matrix[lo + shift : hi + shift]
    return out


def _resize_and_pool(size: int, grid_size: int, pool: np.ndarray) -> np.ndarray:
    # feature_grid along one axis: the bilinear resize (none at the grid's size), then the local mean
    resize = np.eye(size) if size == grid_size else resize_matrix(size, grid_size).astype(np.float64)
    return (pool @ resize).astype(np.float32)


#: Stages a family may tap for a dense feature map (the backbone's STRIDE_TAPS minus the coarse ones).
FEATURE_TAPS = ("stride4", "stride8", "stride16")


def tap_list(taps: str) -> list[str]:
    """The comma-separated ``taps`` knob as a list, finest first (unknown names sort first, for the check)."""
    names = [t.strip() for t in str(taps).split(",") if t.strip()]
    return sorted(names, key=lambda t: int(t.removeprefix("stride")) if t in FEATURE_TAPS else 0)


def check_taps(taps: str, backbone_input_size: int) -> list[str]:
    """The validated ``taps`` knob (finest first); ValueError naming it, or ``backbone_input_size`` when
    that is not a multiple of the deepest tap's stride."""
    names = tap_list(taps)
    if not names or any(t not in FEATURE_TAPS for t in names) or len(set(names)) != len(names):
        raise ValueError(f"taps: a comma-separated list of distinct {FEATURE_TAPS}, got {taps!r}")
    deepest = max(int(t.removeprefix("stride")) for t in names)
    if backbone_input_size % deepest:
        raise ValueError(f"backbone_input_size must be a multiple of {deepest} (the deepest tap's stride)")
    return names
