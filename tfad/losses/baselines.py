"""Losses of the comparison baselines GANomaly and DRAEM (003 s. 8.2.2.1, 8.2.2.3; docs/baselines.md).

Built on the package's primitives: GANomaly's feature matching and encoder L2 are
:mod:`tfad.losses.reconstruction`'s (shared with ResGANAD and GRD-Net), DRAEM's SSIM is its separable SSIM
and its focal loss :func:`tfad.losses.discriminative.focal_loss` (GRD-Net's). All take NHWC float32
batches and return scalar means over the batch.
"""

from __future__ import annotations

import tensorflow as tf

from tfad.losses.discriminative import focal_loss
from tfad.losses.reconstruction import feature_matching_loss, latent_loss, ssim


def l1_loss(target: tf.Tensor, reconstruction: tf.Tensor) -> tf.Tensor:
    """Mean absolute error over every pixel and channel (GANomaly's contextual loss)."""
    return tf.reduce_mean(tf.abs(tf.convert_to_tensor(target, tf.float32) - reconstruction))


def l2_loss(target: tf.Tensor, reconstruction: tf.Tensor) -> tf.Tensor:
    """Mean squared error over every pixel and channel (DRAEM's L2 reconstruction term)."""
    return tf.reduce_mean(tf.square(tf.convert_to_tensor(target, tf.float32) - reconstruction))


def ganomaly_generator_losses(
    target: tf.Tensor,
    reconstruction: tf.Tensor,
    real_features: tf.Tensor,
    fake_features: tf.Tensor,
    z: tf.Tensor,
    z_hat: tf.Tensor,
    adversarial: float = 1.0,
    contextual: float = 50.0,
    latent: float = 1.0,
) -> dict[str, tf.Tensor]:
    """GANomaly's generator loss and its terms:

        L_G = adversarial * L_adv + contextual * L_con + latent * L_enc      (the paper: 1, 50, 1)

    L_adv = L2 between the discriminator's features of X and X_hat (feature matching), L_con = L1(X, X_hat),
    L_enc = L2(z, z_hat). Returns ``{"generator_loss", "adv_loss", "con_loss", "enc_loss"}``.
    """
    adv = feature_matching_loss(real_features, fake_features)
    con = l1_loss(target, reconstruction)
    enc = latent_loss(z, z_hat)
    total = adversarial * adv + contextual * con + latent * enc
    return {"generator_loss": total, "adv_loss": adv, "con_loss": con, "enc_loss": enc}


def draem_losses(
    target: tf.Tensor,
    reconstruction: tf.Tensor,
    anomaly_map: tf.Tensor,
    mask: tf.Tensor,
    ssim_weight: float = 1.0,
    focal_gamma: float = 2.0,
) -> dict[str, tf.Tensor]:
    """DRAEM's joint loss and its terms:

        L = L2(X, X_rec) + ssim_weight * (1 - SSIM(X, X_rec)) + FL(A, M)    (the paper: weight 1, gamma 2)

    X the clean image, X_rec the reconstruction of its corrupted copy, A the discriminative map in [0, 1],
    M the synthetic anomaly mask. Returns ``{"total_loss", "l2_loss", "ssim_loss", "focal_loss"}``.
    """
    l2 = l2_loss(target, reconstruction)
    ssim_term = tf.reduce_mean(1.0 - ssim(target, reconstruction))
    focal = focal_loss(anomaly_map, mask, focal_gamma)
    total = l2 + ssim_weight * ssim_term + focal
    return {"total_loss": total, "l2_loss": l2, "ssim_loss": ssim_term, "focal_loss": focal}
