"""What every GAN trainer here shares: the GANomaly-style networks, loss trackers and the critic update.

The family trainers (`tfad.families.resganad.trainer`, `tfad.families.grdnet.trainer`) subclass
:class:`AdversarialTrainer` and add their generator losses, optimizers and schedules (keras.io GAN style:
custom ``train_step``, one optimizer per network, metric trackers).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from tfad.losses.reconstruction import critic_loss


def as_log(value: tf.Tensor) -> tf.Tensor:
    """A metric value as a rank-1 log: Keras 3.15's multi-worker reduction is a MEAN over axis 0 and fails
    on scalars (toolchain.md); shape [1] works everywhere and displays the same."""
    return tf.reshape(value, [1])


def replica_gradients(tape: tf.GradientTape, loss: tf.Tensor, variables: list, scale: float) -> list:
    """Gradients of ``loss`` w.r.t. ``variables``, times ``scale``.

    ``scale`` is the trainer's ``gradient_scale``: 1 on one device (the gradients are returned untouched, so
    single-device numerics are exactly those without tf.distribute), ``1 / num_replicas_in_sync`` under a
    strategy. Every loss here is a mean over the replica's local batch and the optimizers all-reduce
    gradients by SUM across replicas, so the scaled sum is the gradient of the mean over the global batch
    (tf.nn.compute_average_loss's convention). Logged losses stay unscaled.
    """
    gradients = tape.gradient(loss, variables)
    if scale == 1.0:
        return gradients
    return [None if g is None else g * scale for g in gradients]


class AdversarialTrainer(keras.Model):
    """Base of the GAN trainers: E1, decoder, E2 and the critic of ``networks``; Mean trackers named by
    ``tracker_names``; :meth:`critic_step`."""

    tracker_names: tuple[str, ...] = ()
    #: Multiplies every gradient (see :func:`replica_gradients`); ``tfad fit`` sets 1 / replicas under a
    #: strategy before the first step is traced.
    gradient_scale: float = 1.0

    def __init__(self, networks, **kwargs) -> None:
        super().__init__(**kwargs)
        self.networks = networks
        self.encoder = networks.encoder
        self.decoder = networks.decoder
        self.encoder2 = networks.encoder2
        self.critic = networks.critic
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self.tracker_names}
        self.built = True  # the functional sub-models are built at construction

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """Loss trackers, reset at each epoch."""
        return list(self._trackers.values())

    def critic_step(self, perturbed: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        """One critic update, real X vs the current reconstruction of X* (generator frozen); its loss."""
        reconstruction = self.decoder(self.encoder(perturbed, training=False), training=False)
        with tf.GradientTape() as tape:
            _, real_logits = self.critic(target, training=True)
            _, fake_logits = self.critic(reconstruction, training=True)
            loss = critic_loss(real_logits, fake_logits)
        variables = self.critic.trainable_variables
        gradients = replica_gradients(tape, loss, variables, self.gradient_scale)
        self.critic_optimizer.apply_gradients(zip(gradients, variables, strict=True))
        return loss

    def validation_critic_loss(self, perturbed: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
        """The critic loss without an update (inference mode)."""
        reconstruction = self.decoder(self.encoder(perturbed, training=False), training=False)
        _, real_logits = self.critic(target, training=False)
        _, fake_logits = self.critic(reconstruction, training=False)
        return critic_loss(real_logits, fake_logits)

    supervised = False  # batches come from tfad.training.inputs.training_dataset (P_q)

    def preview_panels(self, batch: dict[str, tf.Tensor], n: int) -> tuple[list, list[str]]:
        """The training plot of a few samples: columns ``(title, images, colormap)`` and one label per row
        (input X*, clean X, reconstruction, heatmap; labelled with the score)."""
        perturbed, clean = batch["image"][:n], batch["target"][:n]
        preview = self.preview(perturbed)
        columns = [
            ("input X*", perturbed.numpy(), "gray"),
            ("clean X", clean.numpy(), "gray"),
            ("reconstruction", preview["reconstruction"], "gray"),
            ("heatmap", preview["heatmap"], "inferno"),
        ]
        return columns, [f"{preview['score_name']} {s:.3f}" for s in preview["score"]]

    def update_trackers(self, **values: tf.Tensor) -> dict[str, tf.Tensor]:
        """Add this step's values to the trackers; return every tracker's running mean as a log."""
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: as_log(tracker.result()) for name, tracker in self._trackers.items()}
