"""The plain autoencoder's training wrapper: a ``keras.Model`` with a custom ``train_step`` (seed 004).

Batches come from ``tfad.training.inputs.training_dataset`` (``image`` = X*, P_q applied; ``target`` = the
clean X; ``noise_mask`` = M). Two variants (``autoencoder.variant``):

- ``plain``: the clean image in, the same image out: ``mse_weight * MSE + ssim_weight * (1 - SSIM)``
  (seed 004 Eq. 1; the P_q draw of the batch is not used);
- ``self-supervised``: the corrupted X* in, the clean X as target, the masked loss of seed 004 Eq. 4
  (``1 - lambda`` on the clean pixels, ``lambda`` on the corrupted ones): the network learns to replace
  what does not look normal, so a real defect is repaired, not copied, and shows in the error.

One Adam optimizer at a constant learning rate over the encoder and the decoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
import tensorflow as tf

from tfad.families.autoencoder.networks import AutoencoderNetworks
from tfad.losses.autoencoder import masked_reconstruction_loss, mse_ssim_loss
from tfad.losses.reconstruction import ssim
from tfad.trainers.adversarial import as_log, replica_gradients

VARIANTS = ("plain", "self-supervised")


@dataclass(frozen=True)
class AutoencoderLoss:
    """The training loss: the variant and its weights (``autoencoder.*``)."""

    variant: str = "plain"
    mse_weight: float = 0.1  # plain
    ssim_weight: float = 0.9  # plain
    corrupted_weight: float = 0.9  # self-supervised: lambda of Eq. 4

    def to_dict(self) -> dict:
        """Plain-dict form."""
        return asdict(self)


class AutoencoderTrainer(keras.Model):
    """Trains :class:`~tfad.families.autoencoder.networks.AutoencoderNetworks`; ``call`` returns the
    reconstruction."""

    needs_roi = False  # batches carry no ROI
    supervised = False  # P_q batches of good images (tfad.training.inputs.training_dataset)
    progress_keys = ("total_loss",)
    tracker_names = ("total_loss", "mse", "ssim_loss")
    plot_panels = (
        (("total_loss",), "training loss"),
        (("mse", "ssim_loss"), "MSE and 1-SSIM of the clean target"),
    )
    #: Multiplies every gradient (:func:`tfad.trainers.adversarial.replica_gradients`); ``tfad fit`` sets
    #: 1 / replicas under a strategy.
    gradient_scale: float = 1.0

    def __init__(self, networks: AutoencoderNetworks, loss: AutoencoderLoss | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.networks = networks
        # attributes, not a list: tf.train.Checkpoint tracks attribute-held layers only
        self.encoder = networks.encoder
        self.decoder = networks.decoder
        self.objective = loss or AutoencoderLoss()
        if self.objective.variant not in VARIANTS:
            raise ValueError(f"autoencoder.variant: one of {VARIANTS}, got {self.objective.variant!r}")
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self.tracker_names}
        self.built = True  # the functional sub-models are built at construction

    def compile_with_adam(self, learning_rate: float, beta_1: float = 0.9) -> None:
        """Compile with one Adam over the encoder and the decoder (built here, so that a checkpoint can
        restore its state before the first step)."""
        super().compile()
        self.optimizer_ = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1)
        self.optimizer_.build(self.networks.trainable_variables)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """Loss trackers, reset at each epoch."""
        return list(self._trackers.values())

    def checkpoint_items(self) -> dict:
        """Everything a resumed run needs: both networks and the optimizer."""
        return {**self.networks.checkpoint_parts(), "optimizer": self.optimizer_}

    def learning_rate(self, step: int) -> float:
        """The (constant) learning rate."""
        return float(keras.ops.convert_to_numpy(self.optimizer_.learning_rate))

    def end_epoch(self, row: dict) -> None:
        """Nothing: the learning rate is constant and early stopping is the fit driver's."""

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Reconstruction X_hat of ``images`` ``[N, H, W, C]`` in [0, 1]."""
        return self.decoder(self.encoder(images, training=training), training=training)

    def _inputs(self, batch: dict[str, tf.Tensor]) -> tf.Tensor:
        # plain: the clean image is the input; self-supervised: the corrupted one
        return batch["target"] if self.objective.variant == "plain" else batch["image"]

    def _loss_values(self, batch: dict[str, tf.Tensor], training: bool) -> dict[str, tf.Tensor]:
        c = self.objective
        target = batch["target"]
        reconstruction = self(self._inputs(batch), training=training)
        if c.variant == "plain":
            total = mse_ssim_loss(target, reconstruction, c.mse_weight, c.ssim_weight)
        else:
            mask = batch["noise_mask"]
            total = masked_reconstruction_loss(target, reconstruction, mask, c.corrupted_weight)
        return {
            "total_loss": total,
            "mse": tf.reduce_mean(tf.square(target - reconstruction)),
            "ssim_loss": tf.reduce_mean(1.0 - ssim(target, reconstruction)),
        }

    def update_trackers(self, **values: tf.Tensor) -> dict[str, tf.Tensor]:
        """Add this step's values to the trackers; return every tracker's running mean as a log."""
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: as_log(tracker.result()) for name, tracker in self._trackers.items()}

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One Adam step on the variant's loss."""
        with tf.GradientTape() as tape:
            values = self._loss_values(batch, training=True)
        variables = self.networks.trainable_variables
        gradients = replica_gradients(tape, values["total_loss"], variables, self.gradient_scale)
        self.optimizer_.apply_gradients(zip(gradients, variables, strict=True))
        return self.update_trackers(**values)

    def test_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Validation losses (inference mode) on the validation batch (P_q applied as in training)."""
        return self.update_trackers(**self._loss_values(batch, training=False))

    def preview_panels(self, batch: dict[str, tf.Tensor], n: int) -> tuple[list, list[str]]:
        """The training plot of a few samples: the network's input, the clean X, the reconstruction, the
        heatmap; each row labelled with its 1-SSIM."""
        from tfad.scoring.reconstruction import minmax_heatmap, ssim_score

        inputs, clean = self._inputs(batch)[:n], batch["target"][:n]
        reconstruction = self(inputs, training=False)
        columns = [
            ("input", inputs.numpy(), "gray"),
            ("clean X", clean.numpy(), "gray"),
            ("reconstruction", reconstruction.numpy(), "gray"),
            ("heatmap", minmax_heatmap(inputs, reconstruction).numpy(), "inferno"),
        ]
        return columns, [f"1-SSIM {s:.3f}" for s in ssim_score(inputs, reconstruction).numpy()]
