"""GANomaly's training wrapper: the GAN trainer base (:class:`tfad.trainers.adversarial.AdversarialTrainer`)
with GANomaly's generator loss and two Adams (generator, discriminator).

Each step first updates the discriminator (real X vs X_hat, binary cross-entropy), then the generator
(G_E, G_D, E) on

    L_G = w_adv * L_adv + w_con * L1(X, X_hat) + w_enc * L2(z, z_hat)      (the paper: 1, 50, 1)

GANomaly learns to reconstruct the clean images: it trains on the batches' ``target`` (X) and ignores the
synthetic anomalies P_q that the other reconstruction families learn to remove.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from tfad.families.ganomaly.networks import GANomalyNetworks
from tfad.families.ganomaly.scoring import latent_distance
from tfad.losses.baselines import ganomaly_generator_losses
from tfad.schema import GANomalyConfig
from tfad.scoring.reconstruction import abs_error_map
from tfad.trainers.adversarial import AdversarialTrainer, replica_gradients


class GANomalyTrainer(AdversarialTrainer):
    """Trains the GANomaly networks; ``call`` returns ``{"reconstruction", "latent",
    "latent_reconstruction"}``."""

    needs_roi = False
    progress_keys = ("generator_loss", "critic_loss")
    plot_panels = (
        (("generator_loss",), "generator loss L_G"),
        (("adv_loss", "con_loss", "enc_loss"), "generator loss terms"),
        (("critic_loss", "score"), "discriminator loss, mean latent distance"),
    )
    tracker_names = ("critic_loss", "generator_loss", "adv_loss", "con_loss", "enc_loss", "score")

    def __init__(self, networks: GANomalyNetworks, options: GANomalyConfig | None = None, **kwargs) -> None:
        super().__init__(networks, **kwargs)
        self.options = options or GANomalyConfig()

    def compile_with_adam(self, learning_rate: float, beta_1: float = 0.5) -> None:
        """Compile with one Adam for the generator and one for the discriminator (the paper: lr 2e-4,
        beta_1 0.5, constant), built here so that a checkpoint restores their state before the first step."""
        super().compile()
        self.generator_optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1)
        self.critic_optimizer = keras.optimizers.Adam(learning_rate, beta_1=beta_1)
        self.generator_optimizer.build(self.networks.generator_variables)
        self.critic_optimizer.build(self.critic.trainable_variables)

    def checkpoint_items(self) -> dict:
        """Everything a resumed run needs: the four networks and both optimizers."""
        return {
            **self.networks.checkpoint_parts(),
            "generator_optimizer": self.generator_optimizer,
            "critic_optimizer": self.critic_optimizer,
        }

    def learning_rate(self, step: int) -> float:
        """The (constant) learning rate of both optimizers."""
        return float(self.generator_optimizer.learning_rate)

    def end_epoch(self, row: dict) -> None:
        """Nothing: the learning rate is constant, as the paper's."""

    def call(self, images: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        """``{"reconstruction": X_hat, "latent": z, "latent_reconstruction": z_hat}`` of ``images``
        ``[N, H, W, C]`` in [0, 1]."""
        z = self.encoder(images, training=training)
        reconstruction = self.decoder(z, training=training)
        z_hat = self.encoder2(reconstruction, training=training)
        return {"reconstruction": reconstruction, "latent": z, "latent_reconstruction": z_hat}

    def preview(self, images: tf.Tensor) -> dict[str, np.ndarray]:
        """Reconstruction, |X - X_hat| and the latent distance of a few images, for the training plots."""
        out = self(images, training=False)
        return {
            "reconstruction": out["reconstruction"].numpy(),
            "heatmap": abs_error_map(images, out["reconstruction"]).numpy(),
            "score": latent_distance(out["latent"], out["latent_reconstruction"]).numpy(),
            "score_name": "||z - z_hat||^2",
        }

    def preview_panels(self, batch: dict[str, tf.Tensor], n: int) -> tuple[list, list[str]]:
        """The base's panels on clean images (GANomaly never sees X*)."""
        return super().preview_panels({"image": batch["target"], "target": batch["target"]}, n)

    def _generator_losses(self, images: tf.Tensor, training: bool) -> dict[str, tf.Tensor]:
        o = self.options
        out = self(images, training=training)
        real_features, _ = self.critic(images, training=training)
        fake_features, _ = self.critic(out["reconstruction"], training=training)
        parts = ganomaly_generator_losses(
            images, out["reconstruction"], real_features, fake_features, out["latent"],
            out["latent_reconstruction"], o.adversarial, o.contextual, o.latent,
        )  # fmt: skip
        parts["score"] = tf.reduce_mean(latent_distance(out["latent"], out["latent_reconstruction"]))
        return parts

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One discriminator update, then one generator update, on the clean images."""
        images = batch["target"]
        critic_loss = self.critic_step(images, images)
        variables = self.networks.generator_variables
        with tf.GradientTape() as tape:
            parts = self._generator_losses(images, training=True)
        gradients = replica_gradients(tape, parts["generator_loss"], variables, self.gradient_scale)
        self.generator_optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return self.update_trackers(critic_loss=critic_loss, **parts)

    def test_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Validation losses (inference mode) on the clean validation images."""
        images = batch["target"]
        parts = self._generator_losses(images, training=False)
        return self.update_trackers(critic_loss=self.validation_critic_loss(images, images), **parts)
