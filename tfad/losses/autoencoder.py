"""Losses of the plain convolutional autoencoder (seed 004, methods.md): MSE + SSIM and the masked loss of
the self-supervised variant (seed 004 Eq. 4, after Bauer et al.).

NHWC float32 batches in [0, 1]; every function returns the mean over the batch of a per-image value, so a
replica's loss is a local mean (``tfad.trainers.adversarial.replica_gradients`` scales it to the global
batch).
"""

from __future__ import annotations

import tensorflow as tf

from tfad.losses.reconstruction import ssim


def mse_ssim_loss(
    target: tf.Tensor, reconstruction: tf.Tensor, mse_weight: float = 0.1, ssim_weight: float = 0.9
) -> tf.Tensor:
    """``mse_weight * MSE(X, X_hat) + ssim_weight * (1 - SSIM(X, X_hat))`` (seed 004 Eq. 1 as a loss;
    its best configuration, h2, has alpha = 0.1: 0.1 MSE + 0.9 (1 - SSIM)). SSIM is
    :func:`tfad.losses.reconstruction.ssim` (11x11 Gaussian window, VALID region)."""
    mse = tf.reduce_mean(tf.square(target - reconstruction))
    return mse_weight * mse + ssim_weight * tf.reduce_mean(1.0 - ssim(target, reconstruction))


def masked_reconstruction_loss(
    target: tf.Tensor, reconstruction: tf.Tensor, mask: tf.Tensor, corrupted_weight: float = 0.9
) -> tf.Tensor:
    """Seed 004 Eq. 4, per image, mean over the batch:

        (1 - lambda) / |M_bar|_1 * |M_bar (f(X*) - X)|^2  +  lambda / |M|_1 * |M (f(X*) - X)|^2

    with ``lambda`` = ``corrupted_weight``, ``M`` the corruption mask (``[N, H, W, 1]`` or ``[N, H, W, C]``,
    values in [0, 1]; broadcast over channels) and ``M_bar = 1 - M``: the squared error averaged over the
    clean pixels and, separately, over the corrupted ones, so a small corrupted patch weighs ``lambda``
    however few pixels it has. An image without corruption (empty mask) contributes only its clean term;
    the norms count channels as the seed's ``h x w x 3`` mask does.
    """
    error = tf.square(reconstruction - target)
    mask = tf.broadcast_to(tf.cast(mask, error.dtype), tf.shape(error))
    clean = 1.0 - mask
    axes = [1, 2, 3]
    clean_term = tf.math.divide_no_nan(tf.reduce_sum(clean * error, axes), tf.reduce_sum(clean, axes))
    corrupted_term = tf.math.divide_no_nan(tf.reduce_sum(mask * error, axes), tf.reduce_sum(mask, axes))
    return tf.reduce_mean((1.0 - corrupted_weight) * clean_term + corrupted_weight * corrupted_term)
