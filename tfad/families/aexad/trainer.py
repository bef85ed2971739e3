"""AE-XAD's training wrapper (000 s. 5.6; methods.md): the per-pixel AE-XAD loss on labelled batches.

Batches come from :func:`tfad.training.inputs.supervised_dataset` (``image``, ``class``, ``mask``): good
images (mask empty: every pixel is normal), the few labelled defects with their masks, and, with
``supervised.synthetic_probability`` > 0, P_q synthetic defects with their Perlin masks. A labelled defect
without a mask cannot say which pixels to push away, and learning it as normal would teach the decoder to
reconstruct the defect: it is left out of the loss (weight 0). The optimizer is the seed's: AdamW (weight
decay 1e-5), cosine annealing of the learning rate down to 1e-6 over the planned steps, gradients clipped
to global norm 1.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfad.losses.aexad import aexad_loss, normalised_error
from tfad.trainers.supervised import SupervisedTrainer

WEIGHT_DECAY = 1e-5
MIN_LEARNING_RATE = 1e-6
CLIP_NORM = 1.0


def image_weights(classes: tf.Tensor, masks: tf.Tensor) -> tf.Tensor:
    """``[N]``: 0 for a defect image (class > 0) whose mask is empty, 1 otherwise."""
    has_mask = tf.reduce_max(tf.cast(masks, tf.float32), axis=[1, 2, 3]) > 0
    return tf.cast(tf.logical_or(classes <= 0, has_mask), tf.float32)


class AEXADTrainer(SupervisedTrainer):
    """Trains the decoder (and, with ``train_encoder``, the encoder) of
    :class:`~tfad.families.aexad.networks.AEXADNetworks` on the AE-XAD loss."""

    tracker_names = ("total_loss", "labelled_pixel_share")
    progress_keys = ("total_loss",)
    plot_panels = (
        (("total_loss",), "AE-XAD loss"),
        (("labelled_pixel_share",), "anomalous pixel share of the batches"),
    )

    def __init__(self, networks: Any, scaling: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.networks = networks
        self.scaling = scaling

    @property
    def trainable_parameters(self) -> list:  # noqa: D102
        return self.networks.trainable_variables()

    def compile_with_adam(self, learning_rate: float, beta_1: float = 0.9, total_steps: int = 1) -> None:
        """AdamW with cosine annealing over ``total_steps`` and gradient clipping (built here, so a checkpoint
        restores its state before the first step)."""
        keras.Model.compile(self)
        self.schedule = keras.optimizers.schedules.CosineDecay(
            learning_rate, max(1, total_steps), alpha=min(1.0, MIN_LEARNING_RATE / learning_rate)
        )
        self.optimizer_ = keras.optimizers.AdamW(
            self.schedule, beta_1=beta_1, weight_decay=WEIGHT_DECAY, global_clipnorm=CLIP_NORM
        )
        self.optimizer_.build(self.trainable_parameters)

    def learning_rate(self, step: int) -> float:
        """The learning rate at global ``step``."""
        return float(self.schedule(step))

    def _loss_values(self, batch: dict[str, tf.Tensor], training: bool) -> dict[str, tf.Tensor]:
        x = batch["image"]
        masks = tf.cast(batch["mask"] > 0, tf.float32)
        weights = image_weights(batch["class"], masks)
        reconstruction = self.networks.reconstruct(x, training=training)
        loss = aexad_loss(x, reconstruction, masks, self.scaling, weights)
        return {"total_loss": loss, "labelled_pixel_share": tf.reduce_mean(masks)}

    def preview_panels(self, batch: dict[str, tf.Tensor], n: int) -> tuple[list, list[str]]:
        """Input, reconstruction and normalised error, labelled with the error's maximum."""
        images = batch["image"][:n]
        reconstruction = self.networks.reconstruct(images)
        error = normalised_error(images, reconstruction, self.scaling)
        columns = [
            ("input", images.numpy(), "gray"),
            ("reconstruction", reconstruction.numpy(), "gray"),
            ("normalised error", error.numpy(), "inferno"),
        ]
        return columns, [f"max error {float(e):.3f}" for e in tf.reduce_max(error, axis=[1, 2, 3])]
