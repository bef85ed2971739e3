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

from tfad.losses import reconstruction as losses
from tfad.models.resganad import ResGANADNetworks
from tfad.scoring.reconstruction import ssim_score


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


def _as_log(value: tf.Tensor) -> tf.Tensor:
    # Rank-1 logs: Keras 3.15's multi-worker reduction is a MEAN over axis 0 and fails on scalars
    # (toolchain.md); shape [1] works everywhere and displays the same.
    return tf.reshape(value, [1])


class ResGANADTrainer(keras.Model):
    """Trains the ResGANAD networks; ``call`` returns the reconstruction (inference path E1 -> decoder)."""

    def __init__(
        self, networks: ResGANADNetworks, weights: ResGANADLossWeights | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.networks = networks
        self.encoder = networks.encoder
        self.decoder = networks.decoder
        self.encoder2 = networks.encoder2
        self.critic = networks.critic
        self.loss_weights_ = weights or ResGANADLossWeights()
        self._trackers = {
            name: keras.metrics.Mean(name=name)
            for name in (
                "critic_loss",
                "generator_loss",
                "adv_loss",
                "con_loss",
                "enc_loss",
                "nse_loss",
                "score",
            )
        }
        self.built = True  # the functional sub-models are built at construction

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

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """Loss trackers, reset by Keras at each epoch."""
        return list(self._trackers.values())

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
        parts["score"] = tf.reduce_mean(ssim_score(target, reconstruction))
        return total, parts

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One critic update then one generator update."""
        perturbed, target = batch["image"], batch["target"]
        reconstruction = self.decoder(self.encoder(perturbed, training=False), training=False)
        with tf.GradientTape() as tape:
            _, real_logits = self.critic(target, training=True)
            _, fake_logits = self.critic(reconstruction, training=True)
            critic_loss = losses.critic_loss(real_logits, fake_logits)
        variables = self.critic.trainable_variables
        self.critic_optimizer.apply_gradients(
            zip(tape.gradient(critic_loss, variables), variables, strict=True)
        )

        with tf.GradientTape() as tape:
            generator_loss, parts = self._generator_losses(batch, training=True)
        variables = self.networks.generator_variables
        self.generator_optimizer.apply_gradients(
            zip(tape.gradient(generator_loss, variables), variables, strict=True)
        )
        return self._update_trackers(critic_loss=critic_loss, generator_loss=generator_loss, **parts)

    def test_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Validation: generator losses and the mean score on the (perturbed) validation batch."""
        generator_loss, parts = self._generator_losses(batch, training=False)
        _, real_logits = self.critic(batch["target"], training=False)
        _, fake_logits = self.critic(self(batch["image"]), training=False)
        return self._update_trackers(
            critic_loss=losses.critic_loss(real_logits, fake_logits), generator_loss=generator_loss, **parts
        )

    def _update_trackers(self, **values: tf.Tensor) -> dict[str, tf.Tensor]:
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: _as_log(tracker.result()) for name, tracker in self._trackers.items()}
