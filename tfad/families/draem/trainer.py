"""DRAEM's training wrapper: a ``keras.Model`` with a custom ``train_step`` and one Adam over both
sub-networks (as the paper).

Batches are the P_q batches of ``tfad fit`` (:func:`tfad.training.inputs.training_dataset`): the corrupted
image X* (``image``; the package's synthetic anomalies are DRAEM's anomaly source, random pixels or the
``synthesis.texture_dir`` images), the clean X (``target``) and the mask M (``noise_mask``). The
reconstructive network restores X from X*, the U-Net segments M from concat(X_rec, X*); both learn from

    L = L2(X, X_rec) + w_ssim * (1 - SSIM(X, X_rec)) + FL(A, M)

(:func:`tfad.losses.baselines.draem_losses`), the focal loss reaching the reconstructive network through
X_rec too. The learning rate drops x0.2 at 80 % and 90 % of the planned steps (the paper's schedule).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfad.families.draem.networks import DRAEMNetworks
from tfad.losses.baselines import draem_losses
from tfad.schema import DRAEMConfig
from tfad.scoring.discriminative import smoothed_max_score
from tfad.trainers.adversarial import as_log, replica_gradients

LR_DROP = 0.2


def training_inputs(batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(corrupted image X*, clean image X, anomaly mask M ``[B, H, W, 1]``) of a P_q batch."""
    return batch["image"], batch["target"], batch["noise_mask"]


class DRAEMTrainer(keras.Model):
    """Trains :class:`~tfad.families.draem.networks.DRAEMNetworks`; ``call`` returns ``{"reconstruction",
    "anomaly_map"}``."""

    needs_roi = False
    supervised = False  # batches come from tfad.training.inputs.training_dataset (P_q)
    progress_keys = ("total_loss", "focal_loss")
    plot_panels = (
        (("total_loss",), "L = L2 + SSIM + focal"),
        (("l2_loss", "ssim_loss", "focal_loss"), "loss terms"),
        (("score",), "mean image score"),
    )
    tracker_names = ("total_loss", "l2_loss", "ssim_loss", "focal_loss", "score")
    #: Multiplies every gradient (``tfad.trainers.adversarial.replica_gradients``).
    gradient_scale: float = 1.0

    def __init__(self, networks: DRAEMNetworks, options: DRAEMConfig | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.networks = networks
        # the sub-networks as attributes, so that Keras tracks them (not in a list: docs/architecture.md)
        self.reconstructive = networks.reconstructive
        self.unet = networks.unet
        self.options = options or DRAEMConfig()
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self.tracker_names}
        self.built = True

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """Loss trackers, reset at each epoch."""
        return list(self._trackers.values())

    def compile_with_adam(self, learning_rate: float, beta_1: float, total_steps: int) -> None:
        """One Adam over both sub-networks on the step-drop schedule, built here so that a checkpoint
        restores its state before the first step."""
        super().compile()
        first, second = max(1, int(0.8 * total_steps)), max(2, int(0.9 * total_steps))
        self.schedule = keras.optimizers.schedules.PiecewiseConstantDecay(
            [first, second], [learning_rate, learning_rate * LR_DROP, learning_rate * LR_DROP**2]
        )
        self.optimizer_ = keras.optimizers.Adam(self.schedule, beta_1=beta_1)
        self.optimizer_.build(self.networks.trainable_variables)

    def checkpoint_items(self) -> dict:
        """Everything a resumed run needs: both networks and the optimizer (its schedule runs on its
        iteration counter)."""
        return {**self.networks.checkpoint_parts(), "optimizer": self.optimizer_}

    def learning_rate(self, step: int) -> float:
        """The learning rate at global ``step``."""
        return float(self.schedule(step))

    def end_epoch(self, row: dict) -> None:
        """Nothing: the schedule runs on the step counter."""

    def call(self, images: tf.Tensor, training: bool = False) -> dict[str, tf.Tensor]:
        """``{"reconstruction": X_rec, "anomaly_map": A}`` of ``images`` ``[N, H, W, C]`` in [0, 1]."""
        reconstruction = self.reconstructive(images, training=training)
        anomaly_map = self.unet(tf.concat([reconstruction, images], axis=-1), training=training)
        return {"reconstruction": reconstruction, "anomaly_map": anomaly_map}

    def loss_values(self, batch: dict[str, tf.Tensor], training: bool) -> dict[str, tf.Tensor]:
        """The loss terms of ``batch`` and the mean image score."""
        corrupted, clean, mask = training_inputs(batch)
        out = self(corrupted, training=training)
        o = self.options
        values = draem_losses(clean, out["reconstruction"], out["anomaly_map"], mask, o.ssim, o.focal_gamma)
        values["score"] = tf.reduce_mean(smoothed_max_score(out["anomaly_map"], o.score_filter_size))
        return values

    def _log(self, values: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: as_log(tracker.result()) for name, tracker in self._trackers.items()}

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One joint update of both sub-networks."""
        variables = self.networks.trainable_variables
        with tf.GradientTape() as tape:
            values = self.loss_values(batch, training=True)
        gradients = replica_gradients(tape, values["total_loss"], variables, self.gradient_scale)
        self.optimizer_.apply_gradients(zip(gradients, variables, strict=True))
        return self._log(values)

    def test_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Validation losses (inference mode) on the corrupted validation batch."""
        return self._log(self.loss_values(batch, training=False))

    def preview_panels(self, batch: dict[str, tf.Tensor], n: int) -> tuple[list, list[str]]:
        """Input X*, clean X, reconstruction and map of a few samples, labelled with the image score."""
        corrupted, clean, _ = training_inputs(batch)
        corrupted, clean = corrupted[:n], clean[:n]
        out = self(corrupted, training=False)
        score = smoothed_max_score(out["anomaly_map"], self.options.score_filter_size).numpy()
        columns = [
            ("input X*", corrupted.numpy(), "gray"),
            ("clean X", clean.numpy(), "gray"),
            ("reconstruction", out["reconstruction"].numpy(), "gray"),
            ("anomaly map", np.asarray(out["anomaly_map"])[..., 0], "inferno"),
        ]
        return columns, [f"score {s:.3f}" for s in score]
