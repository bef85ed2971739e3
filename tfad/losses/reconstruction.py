"""Losses of the reconstruction GANs (ResGANAD Eq. 8.10-8.13; GANomaly feature matching).

All functions take NHWC float32 batches in [0, 1] and return scalar means over the batch.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

SSIM_FILTER_SIZE = 11  # tf.image.ssim's default; images must be at least this large
SSIM_SIGMA = 1.5
_SSIM_C1 = 0.01**2  # (k1 * L)^2 with L = 1
_SSIM_C2 = 0.03**2


_BLOCK = 16  # filter outputs per block (>= SSIM_FILTER_SIZE - 1: a window spans one block and the next)


def _gaussian_taps() -> np.ndarray:
    coords = np.arange(SSIM_FILTER_SIZE) - (SSIM_FILTER_SIZE - 1) / 2.0
    g = np.exp(-0.5 * (coords / SSIM_SIGMA) ** 2)
    return g / g.sum()


@functools.cache
def _block_kernel() -> np.ndarray:
    # [1, 2, _BLOCK, _BLOCK]: tap t, input i, output j holds the Gaussian weight of input position i of
    # block b + t in the window of output j of block b (the window covers positions j..j+10 of the two).
    # Built once, as a constant: the filter runs per chunk inside the score loop and in every training step.
    g = _gaussian_taps()
    offset = np.arange(2 * _BLOCK)[:, None] - np.arange(_BLOCK)[None, :]
    inside = (offset >= 0) & (offset < SSIM_FILTER_SIZE)
    band = np.where(inside, g[np.clip(offset, 0, SSIM_FILTER_SIZE - 1)], 0.0)
    return band.reshape(1, 2, _BLOCK, _BLOCK).astype(np.float32)


@functools.cache
def _column_kernel() -> np.ndarray:
    # [11, 1, _BLOCK, 1]: the same Gaussian down the rows for each of a block's _BLOCK columns (depthwise).
    taps = _gaussian_taps().reshape(SSIM_FILTER_SIZE, 1, 1, 1)
    return np.tile(taps, (1, 1, _BLOCK, 1)).astype(np.float32)


def _gaussian_blur(x: tf.Tensor) -> tf.Tensor:
    # Separable Gaussian of [B, H, W] (W a multiple of _BLOCK) -> [B, H - 10, W], VALID in the first
    # W - 10 columns (the last 10 see the zero padding and are cropped by the caller).
    # Along the rows: each row is cut into blocks of _BLOCK positions that become a convolution's channels,
    # and a 2-wide convolution over the blocks applies the band: 32 multiply-adds per output at oneDNN's
    # convolution speed, with no copy of the input (1-channel 11-tap convolutions run far below the peak).
    # Down the columns: an 11x1 depthwise convolution on the same blocked layout, so the maps are never
    # transposed (transposing the four maps of a chunk cost more than this convolution, measured).
    rows, width = x.shape[1], x.shape[2]
    blocks = tf.reshape(x, [-1, rows, width // _BLOCK, _BLOCK])
    along_rows = tf.nn.conv2d(blocks, tf.constant(_block_kernel()), 1, [[0, 0], [0, 0], [0, 1], [0, 0]])
    down_columns = tf.nn.depthwise_conv2d(along_rows, tf.constant(_column_kernel()), [1, 1, 1, 1], "VALID")
    return tf.reshape(down_columns, [-1, rows - SSIM_FILTER_SIZE + 1, width])


def _ssim_pixels(x: tf.Tensor, y: tf.Tensor) -> tuple[tf.Tensor, int]:
    # SSIM of every Gaussian window of the VALID region, channels folded into the batch:
    # [N*C, H - 10, W - 10], and C.
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.convert_to_tensor(y, tf.float32)
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    if height is None or width is None or channels is None:
        raise ValueError(f"ssim needs static H, W, C; got shape {x.shape}")
    if min(height, width) < SSIM_FILTER_SIZE:
        raise ValueError(
            f"ssim needs images of at least {SSIM_FILTER_SIZE}x{SSIM_FILTER_SIZE}, got {height}x{width}"
        )
    # Fold channels into the batch: [N, H, W, C] -> [N*C, H, W] (a reshape for grey images), zero-padded to
    # whole blocks along W (the padding only reaches windows outside the VALID region, which are cropped).
    if channels == 1:
        x1, y1 = tf.reshape(x, [-1, height, width]), tf.reshape(y, [-1, height, width])
    else:
        x1 = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, height, width])
        y1 = tf.reshape(tf.transpose(y, [0, 3, 1, 2]), [-1, height, width])
    padded_width = -(-width // _BLOCK) * _BLOCK
    if padded_width != width:
        padding = [[0, 0], [0, 0], [0, padded_width - width]]
        x1, y1 = tf.pad(x1, padding), tf.pad(y1, padding)
    # Four blurred maps: SSIM needs var_x + var_y only as a sum, so blur(x^2 + y^2) stands for two.
    blurred = _gaussian_blur(tf.concat([x1, y1, x1 * x1 + y1 * y1, x1 * y1], axis=0))
    mu_x, mu_y, squares, xy = tf.split(blurred, 4, axis=0)
    mu_xy = mu_x * mu_y
    mu_squares = mu_x * mu_x + mu_y * mu_y
    luminance = (2.0 * mu_xy + _SSIM_C1) / (mu_squares + _SSIM_C1)
    # cov = E[xy] - mu_x mu_y; var_x + var_y = E[x^2 + y^2] - mu_x^2 - mu_y^2.
    contrast_structure = (2.0 * (xy - mu_xy) + _SSIM_C2) / (squares - mu_squares + _SSIM_C2)
    pixels = luminance * contrast_structure
    return pixels[:, :, : width - SSIM_FILTER_SIZE + 1], channels


def ssim(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Per-image SSIM ``[N]`` of two NHWC batches in [0, 1].

    The same definition as ``tf.image.ssim(max_val=1, filter_size=11, filter_sigma=1.5)`` (Gaussian
    window, VALID region, mean over pixels and channels; equal to it within 1e-5, tested), computed with
    a separable filter because ``tf.image.ssim``'s 11x11 depthwise convolution is slow on CPU.
    H and W must be static (they are, for the fixed-size models here).
    """
    pixels, channels = _ssim_pixels(x, y)
    per_channel = tf.reduce_mean(pixels, axis=[1, 2])
    return tf.reduce_mean(tf.reshape(per_channel, [-1, channels]), axis=1)


def ssim_map(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Per-pixel (local) SSIM ``[N, H - 10, W - 10]`` of two NHWC batches in [0, 1], mean over channels.

    The SSIM of the 11x11 Gaussian window centred on each pixel of the VALID region (5 pixels in from every
    side): the values whose mean :func:`ssim` is. Pixel (i, j) of the map is the window centred on image
    pixel (i + 5, j + 5).
    """
    pixels, channels = _ssim_pixels(x, y)
    if channels == 1:
        return pixels
    return tf.reduce_mean(tf.reshape(pixels, [-1, channels, *pixels.shape[1:]]), axis=1)


def huber(x: tf.Tensor, y: tf.Tensor, delta: float = 1.0) -> tf.Tensor:
    """Mean Huber loss over all pixels (``keras.losses.Huber`` semantics)."""
    error = tf.abs(x - y)
    quadratic = tf.minimum(error, delta)
    return tf.reduce_mean(0.5 * quadratic**2 + delta * (error - quadratic))


def contextual_loss(
    target: tf.Tensor, reconstruction: tf.Tensor, huber_weight: float = 2.0, ssim_weight: float = 1.0
) -> tf.Tensor:
    """L_con = w_a * Huber(X, X_hat) + w_b * (1 - SSIM(X, X_hat)), X the clean target."""
    return huber_weight * huber(target, reconstruction) + ssim_weight * tf.reduce_mean(
        1.0 - ssim(target, reconstruction)
    )


def l1_ssim_loss(
    target: tf.Tensor, reconstruction: tf.Tensor, l1_weight: float = 1.0, ssim_weight: float = 1.0
) -> tf.Tensor:
    """GRD-Net's L_con = w_l1 * L1(X, X_hat) + w_ssim * (1 - SSIM(X, X_hat)) (Eq. 8.4-8.6: both 1)."""
    return l1_weight * tf.reduce_mean(tf.abs(target - reconstruction)) + ssim_weight * tf.reduce_mean(
        1.0 - ssim(target, reconstruction)
    )


def noise_loss(
    reconstruction: tf.Tensor, perturbed: tf.Tensor, noise_mask: tf.Tensor, noise: tf.Tensor, beta: tf.Tensor
) -> tf.Tensor:
    """L_nse = mean((|(1 - beta) M X_hat - M X*| - beta N)^2)  (Eq. 8.10 with M_hat := M, unweighted).

    Zero exactly when the reconstruction equals the clean image inside the noise region: there
    ``M X* = (1 - beta) M X + beta N``, so the difference is ``-beta N`` and its magnitude ``beta N``.
    """
    residual = tf.abs((1.0 - beta) * noise_mask * reconstruction - noise_mask * perturbed) - beta * noise
    return tf.reduce_mean(tf.square(residual))


def feature_matching_loss(real_features: tf.Tensor, fake_features: tf.Tensor) -> tf.Tensor:
    """L_adv: L2 between the critic's features of X and of X_hat (GANomaly)."""
    return tf.reduce_mean(tf.square(real_features - fake_features))


def latent_loss(z: tf.Tensor, z_hat: tf.Tensor) -> tf.Tensor:
    """L_enc = L2(z, z_hat) between E1(X*) and E2(X_hat)."""
    return tf.reduce_mean(tf.square(z - z_hat))


def critic_loss(real_logits: tf.Tensor, fake_logits: tf.Tensor) -> tf.Tensor:
    """Binary cross-entropy of the discriminator: real -> 1, reconstruction -> 0."""
    real = tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(real_logits), real_logits)
    fake = tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(fake_logits), fake_logits)
    return tf.reduce_mean(real) + tf.reduce_mean(fake)
