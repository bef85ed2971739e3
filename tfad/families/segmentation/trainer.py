"""The segmentation U-Net's training wrapper: a `keras.Model` with a custom `train_step` (003 ch. 7) on
Dice + BCE (or focal) against the defect masks."""

from __future__ import annotations

import tensorflow as tf

from tfad.losses.supervised import dice_loss, segmentation_loss
from tfad.scoring.discriminative import smoothed_max_score
from tfad.trainers.supervised import SupervisedTrainer


class SegmentationTrainer(SupervisedTrainer):
    """Trains the segmentation U-Net on Dice + BCE (or focal) against the defect masks."""

    tracker_names = ("total_loss", "dice", "score")
    progress_keys = ("total_loss", "dice")
    plot_panels = (
        (("total_loss",), "Dice + pixel loss"),
        (("dice", "score"), "Dice coefficient, mean image score"),
    )

    def __init__(self, networks, loss: str = "dice+bce", gamma: float = 2.0, filter_size: int = 21, **kwargs):
        super().__init__(**kwargs)
        self.networks = networks
        self.unet = networks.unet
        self.loss_kind, self.gamma, self.filter_size = loss, gamma, filter_size

    @property
    def trainable_parameters(self) -> list:  # noqa: D102
        return self.unet.trainable_variables

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Defect probability map ``[N, H, W, 1]`` of ``images`` in [0, 1]."""
        return self.unet(images, training=training)

    def _loss_values(self, batch: dict[str, tf.Tensor], training: bool) -> dict[str, tf.Tensor]:
        probabilities = self(batch["image"], training=training)
        return {
            "total_loss": segmentation_loss(probabilities, batch["mask"], self.loss_kind, self.gamma),
            "dice": 1.0 - dice_loss(probabilities, batch["mask"]),
            "score": tf.reduce_mean(smoothed_max_score(probabilities, self.filter_size)),
        }

    def preview_panels(self, batch: dict[str, tf.Tensor], n: int) -> tuple[list, list[str]]:
        """Image, true mask, predicted map, labelled with the image score."""
        images = batch["image"][:n]
        predicted = self(images, training=False)
        scores = smoothed_max_score(predicted, self.filter_size).numpy()
        columns = [
            ("input", images.numpy(), "gray"),
            ("defect mask", batch["mask"][:n].numpy(), "gray"),
            ("predicted map", predicted.numpy(), "inferno"),
        ]
        return columns, [f"score {s:.3f}" for s in scores]
