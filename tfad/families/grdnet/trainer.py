"""GRD-Net training wrapper: a `keras.Model` with a custom `train_step` and three optimizers.

Each step first updates the critic (real X vs reconstruction X_hat), then the generator (E1, decoder, E2)
and the discriminative U-Net together on L_tot = L_gan + L_FL (Eq. 8.9), each with its own optimizer:

    L_gan = w_adv * L_adv + w_con * (w_l1 * L1 + w_ssim * (1 - SSIM)) + w_enc * L_enc       (Eq. 8.4-8.6)
    L_FL  = the ROI focal loss variant of Table 9.3 on A = U(concat(X_hat, X*)) against the P_q mask M

The focal loss also reaches the generator through X_hat (as in DRAEM, whose reconstructive and
discriminative networks are trained jointly). The learning rate of all three optimizers follows the
thesis's plateau rule (Eq. 9.1): after ``plateau_patience_epochs`` epochs without a lower monitored loss,
lr <- lr * e^-0.1. Its state is checkpointed, so a resumed run continues the schedule.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import tensorflow as tf

from tfad.families.grdnet.networks import GRDNetNetworks
from tfad.losses import reconstruction as losses
from tfad.losses.discriminative import roi_focal_loss
from tfad.schema import GRDNetConfig
from tfad.scoring.discriminative import smoothed_max_score
from tfad.trainers.adversarial import AdversarialTrainer, replica_gradients


class GRDNetTrainer(AdversarialTrainer):
    """Trains the GRD-Net networks; ``call`` returns ``{"reconstruction", "anomaly_map"}``."""

    needs_roi = True  # batches carry "roi" (ones where the data has no ROI mask)
    progress_keys = ("total_loss", "critic_loss")
    plot_panels = (
        (("total_loss", "generator_loss", "focal_loss"), "L_tot = L_gan + L_FL"),
        (("con_loss", "adv_loss", "enc_loss"), "generator loss terms"),
        (("critic_loss", "score"), "critic loss, mean image score"),
    )

    tracker_names = (
        "critic_loss",
        "total_loss",
        "generator_loss",
        "adv_loss",
        "con_loss",
        "enc_loss",
        "focal_loss",
        "score",
    )

    def __init__(self, networks: GRDNetNetworks, options: GRDNetConfig | None = None, **kwargs) -> None:
        super().__init__(networks, **kwargs)
        self.unet = networks.unet
        self.options = options or GRDNetConfig()
        # Plateau state (checkpointed): current lr, best monitored loss, epochs without improvement.
        self.lr_variable = tf.Variable(0.0, trainable=False, dtype=tf.float32, name="learning_rate")
        self.plateau_best = tf.Variable(math.inf, trainable=False, dtype=tf.float32, name="plateau_best")
        self.plateau_wait = tf.Variable(0, trainable=False, dtype=tf.int64, name="plateau_wait")

    def compile_with_adam(self, learning_rate: float, beta_1: float = 0.5) -> None:
        """Compile with one Adam per network (critic, generator, U-Net) sharing the plateau learning rate.

        The optimizers are built here, so that a checkpoint can restore their state before the first step.
        """
        self.lr_variable.assign(learning_rate)

        def adam() -> keras.optimizers.Optimizer:
            return keras.optimizers.Adam(learning_rate=lambda: self.lr_variable, beta_1=beta_1)

        super().compile()
        self.critic_optimizer, self.generator_optimizer, self.unet_optimizer = adam(), adam(), adam()
        self.critic_optimizer.build(self.critic.trainable_variables)
        self.generator_optimizer.build(self.networks.generator_variables)
        self.unet_optimizer.build(self.unet.trainable_variables)

    def checkpoint_items(self) -> dict:
        """Everything a resumed run needs: networks, optimizers, plateau state."""
        return {
            **self.networks.checkpoint_parts(),
            "critic_optimizer": self.critic_optimizer,
            "generator_optimizer": self.generator_optimizer,
            "unet_optimizer": self.unet_optimizer,
            "learning_rate": self.lr_variable,
            "plateau_best": self.plateau_best,
            "plateau_wait": self.plateau_wait,
        }

    def learning_rate(self, step: int) -> float:
        """The current learning rate (the same for the three optimizers)."""
        return float(self.lr_variable.numpy())

    def end_epoch(self, row: dict) -> None:
        """The plateau rule on the epoch's validation total loss (training loss without validation)."""
        monitored = row.get("val_total_loss", row.get("train_total_loss"))
        if monitored is None:
            return
        if monitored < float(self.plateau_best.numpy()):
            self.plateau_best.assign(monitored)
            self.plateau_wait.assign(0)
            return
        self.plateau_wait.assign_add(1)
        if int(self.plateau_wait.numpy()) >= self.options.plateau_patience_epochs:
            self.lr_variable.assign(self.lr_variable * self.options.plateau_factor)
            self.plateau_wait.assign(0)

    def call(self, images: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        """``{"reconstruction": X_hat, "anomaly_map": A}`` of ``images`` ``[N, H, W, C]`` in [0, 1]."""
        reconstruction = self.decoder(self.encoder(images, training=training), training=training)
        anomaly_map = self.unet(tf.concat([reconstruction, images], axis=-1), training=training)
        return {"reconstruction": reconstruction, "anomaly_map": anomaly_map}

    def preview(self, images: tf.Tensor) -> dict[str, np.ndarray]:
        """Reconstruction, heatmap (A) and score of a few validation images, for the training plots."""
        out = self(images, training=False)
        score = smoothed_max_score(out["anomaly_map"], self.options.score_filter_size)
        return {
            "reconstruction": out["reconstruction"].numpy(),
            "heatmap": out["anomaly_map"].numpy()[..., 0],
            "score": score.numpy(),
            "score_name": "score",
        }

    def _compute_losses(
        self, batch: dict[str, tf.Tensor], training: bool
    ) -> tuple[tf.Tensor, tf.Tensor, dict]:
        o = self.options
        perturbed, target = batch["image"], batch["target"]
        z = self.encoder(perturbed, training=training)
        reconstruction = self.decoder(z, training=training)
        z_hat = self.encoder2(reconstruction, training=training)
        real_features, _ = self.critic(target, training=training)
        fake_features, _ = self.critic(reconstruction, training=training)
        adv = losses.feature_matching_loss(real_features, fake_features)
        con = losses.l1_ssim_loss(target, reconstruction, o.l1, o.ssim)
        enc = losses.latent_loss(z, z_hat)
        generator_loss = o.adversarial * adv + o.contextual * con + o.latent * enc
        anomaly_map = self.unet(tf.concat([reconstruction, perturbed], axis=-1), training=training)
        focal = roi_focal_loss(
            anomaly_map, batch["noise_mask"], batch["roi"], o.roi_loss, o.focal_gamma, o.overlap_weight
        )
        parts = {
            "generator_loss": generator_loss,
            "adv_loss": adv,
            "con_loss": con,
            "enc_loss": enc,
            "focal_loss": focal,
            "score": tf.reduce_mean(smoothed_max_score(anomaly_map, o.score_filter_size)),
        }
        return generator_loss, focal, parts

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One critic update, then one joint generator + U-Net update on L_tot."""
        critic_loss = self.critic_step(batch["image"], batch["target"])
        generator_variables = self.networks.generator_variables
        unet_variables = self.unet.trainable_variables
        with tf.GradientTape() as tape:
            generator_loss, focal, parts = self._compute_losses(batch, training=True)
            total = generator_loss + focal
        gradients = replica_gradients(tape, total, generator_variables + unet_variables, self.gradient_scale)
        n = len(generator_variables)
        self.generator_optimizer.apply_gradients(zip(gradients[:n], generator_variables, strict=True))
        self.unet_optimizer.apply_gradients(zip(gradients[n:], unet_variables, strict=True))
        return self.update_trackers(critic_loss=critic_loss, total_loss=total, **parts)

    def test_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Validation losses on the (perturbed) validation batch."""
        generator_loss, focal, parts = self._compute_losses(batch, training=False)
        critic_loss = self.validation_critic_loss(batch["image"], batch["target"])
        return self.update_trackers(critic_loss=critic_loss, total_loss=generator_loss + focal, **parts)
