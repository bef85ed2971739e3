"""Losses of the reconstruction GANs (ResGANAD Eq. 8.10-8.13; GANomaly feature matching).

All functions take NHWC float32 batches in [0, 1] and return scalar means over the batch.
"""

from __future__ import annotations

import tensorflow as tf

SSIM_FILTER_SIZE = 11  # tf.image.ssim's default; images must be at least this large


def ssim(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Per-image SSIM ``[N]`` of two batches in [0, 1] (Gaussian window 11, sigma 1.5)."""
    return tf.image.ssim(x, y, max_val=1.0, filter_size=SSIM_FILTER_SIZE)


def huber(x: tf.Tensor, y: tf.Tensor, delta: float = 1.0) -> tf.Tensor:
    """Mean Huber loss over all pixels (``keras.losses.Huber`` semantics)."""
    error = tf.abs(x - y)
    quadratic = tf.minimum(error, delta)
    return tf.reduce_mean(0.5 * quadratic**2 + delta * (error - quadratic))


def contextual_loss(target: tf.Tensor, reconstruction: tf.Tensor, huber_weight: float = 2.0,
                    ssim_weight: float = 1.0) -> tf.Tensor:
    """L_con = w_a * Huber(X, X_hat) + w_b * (1 - SSIM(X, X_hat)), X the clean target."""
    return huber_weight * huber(target, reconstruction) + ssim_weight * tf.reduce_mean(
        1.0 - ssim(target, reconstruction)
    )


def noise_loss(reconstruction: tf.Tensor, perturbed: tf.Tensor, noise_mask: tf.Tensor, noise: tf.Tensor,
               beta: tf.Tensor) -> tf.Tensor:
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
