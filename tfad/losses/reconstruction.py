"""Losses of the reconstruction GANs (ResGANAD Eq. 8.10-8.13; GANomaly feature matching).

All functions take NHWC float32 batches in [0, 1] and return scalar means over the batch.
"""

from __future__ import annotations

import tensorflow as tf

SSIM_FILTER_SIZE = 11  # tf.image.ssim's default; images must be at least this large
SSIM_SIGMA = 1.5
_SSIM_C1 = 0.01**2  # (k1 * L)^2 with L = 1
_SSIM_C2 = 0.03**2


def _gaussian_kernel_1d(size: int, sigma: float) -> tf.Tensor:
    coords = tf.range(size, dtype=tf.float32) - (size - 1) / 2.0
    g = tf.exp(-0.5 * tf.square(coords / sigma))
    return g / tf.reduce_sum(g)


def _band_matrix(size: int) -> tf.Tensor:
    # [size, size - filter + 1] matrix whose columns are the shifted Gaussian taps (VALID filtering).
    g = _gaussian_kernel_1d(SSIM_FILTER_SIZE, SSIM_SIGMA)
    offset = tf.range(size)[:, None] - tf.range(size - SSIM_FILTER_SIZE + 1)[None, :]
    inside = (offset >= 0) & (offset < SSIM_FILTER_SIZE)
    return tf.where(inside, tf.gather(g, tf.clip_by_value(offset, 0, SSIM_FILTER_SIZE - 1)), 0.0)


def _gaussian_blur_valid(x: tf.Tensor) -> tf.Tensor:
    # Separable Gaussian with VALID padding on [B, H, W] as two band-matrix products: on CPU this is
    # several times faster than tf.image.ssim's 11x11 depthwise convolution or 1-channel conv2d
    # (measured in the development log of losses; matmul kernels are the best-optimised ops).
    height, width = x.shape[1], x.shape[2]
    x = tf.einsum("bhw,wv->bhv", x, _band_matrix(width))
    return tf.einsum("bhv,hu->buv", x, _band_matrix(height))


def ssim(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Per-image SSIM ``[N]`` of two NHWC batches in [0, 1].

    The same definition as ``tf.image.ssim(max_val=1, filter_size=11, filter_sigma=1.5)`` (Gaussian
    window, VALID region, mean over pixels and channels; equal to it within 1e-5, tested), computed with
    a separable filter because ``tf.image.ssim``'s 11x11 depthwise convolution is slow on CPU.
    H and W must be static (they are, for the fixed-size models here).
    """
    x = tf.convert_to_tensor(x, tf.float32)
    y = tf.convert_to_tensor(y, tf.float32)
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    if height is None or width is None or channels is None:
        raise ValueError(f"ssim needs static H, W, C; got shape {x.shape}")
    if min(height, width) < SSIM_FILTER_SIZE:
        raise ValueError(
            f"ssim needs images of at least {SSIM_FILTER_SIZE}x{SSIM_FILTER_SIZE}, got {height}x{width}"
        )
    # Fold channels into the batch: [N, H, W, C] -> [N*C, H, W].
    x1 = tf.reshape(tf.transpose(x, [0, 3, 1, 2]), [-1, height, width])
    y1 = tf.reshape(tf.transpose(y, [0, 3, 1, 2]), [-1, height, width])
    stacked = _gaussian_blur_valid(tf.concat([x1, y1, x1 * x1, y1 * y1, x1 * y1], axis=0))
    mu_x, mu_y, xx, yy, xy = tf.split(stacked, 5, axis=0)
    var_x = xx - mu_x * mu_x
    var_y = yy - mu_y * mu_y
    cov = xy - mu_x * mu_y
    luminance = (2.0 * mu_x * mu_y + _SSIM_C1) / (mu_x * mu_x + mu_y * mu_y + _SSIM_C1)
    contrast_structure = (2.0 * cov + _SSIM_C2) / (var_x + var_y + _SSIM_C2)
    per_channel = tf.reduce_mean(luminance * contrast_structure, axis=[1, 2])
    return tf.reduce_mean(tf.reshape(per_channel, [-1, channels]), axis=1)


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
