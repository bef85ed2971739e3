"""ResGANAD training wrapper: a `keras.Model` with a custom `train_step` (keras.io GAN style).

Each step first updates the critic (real X vs reconstruction X_hat), then the generator (E1, decoder,
E2) with the four losses weighted as in Eq. 8.13:

    L_G = w1 * L_adv + w2 * L_con + w3 * L_enc + w4 * L_nse

Batches are dicts produced by `tfad.training.inputs` (P_q already applied): ``image`` = X*, ``target``
= X, ``noise_mask`` = M, ``noise`` = N, ``beta``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import tensorflow as tf

from tfad.families.resganad.networks import ResGANADNetworks
from tfad.losses import reconstruction as losses
from tfad.trainers.adversarial import AdversarialTrainer, replica_gradients


@dataclass(frozen=True)
class ResGANADLossWeights:
    """Loss weights of Eq. 8.13 (and the Huber/SSIM split of L_con)."""

    adversarial: float = 1.0  # w1
    contextual: float = 50.0  # w2
    latent: float = 1.0  # w3
    noise: float = 3.0  # w4
    huber: float = 2.0  # w_a
    ssim: float = 1.0  # w_b

    def to_dict(self) -> dict:
        """Plain-dict form."""
        return asdict(self)


class ResGANADTrainer(AdversarialTrainer):
    """Trains the ResGANAD networks; ``call`` returns the reconstruction (inference path E1 -> decoder)."""

    needs_roi = False  # batches carry no ROI
    progress_keys = ("generator_loss", "critic_loss")
    plot_panels = (
        (("generator_loss",), "generator loss (Eq. 8.13)"),
        (("con_loss", "nse_loss", "adv_loss", "enc_loss"), "generator loss terms"),
        (("critic_loss", "score"), "critic loss, mean 1-SSIM"),
    )

    tracker_names = ("critic_loss", "generator_loss", "adv_loss", "con_loss", "enc_loss", "nse_loss", "score")

    def __init__(
        self, networks: ResGANADNetworks, weights: ResGANADLossWeights | None = None, **kwargs
    ) -> None:
        super().__init__(networks, **kwargs)
        self.loss_weights_ = weights or ResGANADLossWeights()

    def compile(
        self,
        generator_optimizer: keras.optimizers.Optimizer,
        critic_optimizer: keras.optimizers.Optimizer,
        **kwargs,
    ) -> None:
        """Compile with one optimizer per network (generator, critic).

        The optimizers are built here, so that a checkpoint can restore their state before the first step.
        """
        super().compile(**kwargs)
        self.generator_optimizer = generator_optimizer
        self.critic_optimizer = critic_optimizer
        generator_optimizer.build(self.networks.generator_variables)
        critic_optimizer.build(self.critic.trainable_variables)

    def checkpoint_items(self) -> dict:
        """Everything a resumed run needs: networks and both optimizers (whose schedules run on their
        iteration counters)."""
        return {
            **self.networks.checkpoint_parts(),
            "generator_optimizer": self.generator_optimizer,
            "critic_optimizer": self.critic_optimizer,
        }

    def learning_rate(self, step: int) -> float:
        """The generator's learning rate at global ``step`` (both optimizers follow the same schedule)."""
        schedule = self.generator_optimizer.learning_rate
        return float(schedule(step)) if callable(schedule) else float(schedule)

    def end_epoch(self, row: dict) -> None:
        """Nothing: the cosine schedule runs on the step counter."""

    def preview(self, images: tf.Tensor) -> dict:
        """Reconstruction, heatmap and 1-SSIM of a few validation images, for the training plots."""
        from tfad.scoring.reconstruction import minmax_heatmap, ssim_score

        reconstruction = self(images, training=False)
        return {
            "reconstruction": reconstruction.numpy(),
            "heatmap": minmax_heatmap(images, reconstruction).numpy(),
            "score": ssim_score(images, reconstruction).numpy(),
            "score_name": "1-SSIM",
        }

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Reconstruction X_hat of ``images`` ``[N, H, W, C]`` in [0, 1]."""
        return self.decoder(self.encoder(images, training=training), training=training)

    def _generator_losses(self, batch: dict[str, tf.Tensor], training: bool) -> tuple[tf.Tensor, dict]:
        w = self.loss_weights_
        perturbed, target = batch["image"], batch["target"]
        z = self.encoder(perturbed, training=training)
        reconstruction = self.decoder(z, training=training)
        z_hat = self.encoder2(reconstruction, training=training)
        real_features, _ = self.critic(target, training=training)
        fake_features, _ = self.critic(reconstruction, training=training)
        parts = {
            "adv_loss": losses.feature_matching_loss(real_features, fake_features),
            "con_loss": losses.contextual_loss(target, reconstruction, w.huber, w.ssim),
            "enc_loss": losses.latent_loss(z, z_hat),
            "nse_loss": losses.noise_loss(
                reconstruction, perturbed, batch["noise_mask"], batch["noise"], batch["beta"]
            ),
        }
        total = (
            w.adversarial * parts["adv_loss"]
            + w.contextual * parts["con_loss"]
            + w.latent * parts["enc_loss"]
            + w.noise * parts["nse_loss"]
        )
        parts["score"] = tf.reduce_mean(1.0 - losses.ssim(target, reconstruction))
        return total, parts

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One critic update then one generator update."""
        critic_loss = self.critic_step(batch["image"], batch["target"])
        with tf.GradientTape() as tape:
            generator_loss, parts = self._generator_losses(batch, training=True)
        variables = self.networks.generator_variables
        gradients = replica_gradients(tape, generator_loss, variables, self.gradient_scale)
        self.generator_optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return self.update_trackers(critic_loss=critic_loss, generator_loss=generator_loss, **parts)

    def test_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Validation: generator losses and the mean score on the (perturbed) validation batch."""
        generator_loss, parts = self._generator_losses(batch, training=False)
        critic_loss = self.validation_critic_loss(batch["image"], batch["target"])
        return self.update_trackers(critic_loss=critic_loss, generator_loss=generator_loss, **parts)
