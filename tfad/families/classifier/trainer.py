"""The classifier's training wrapper: a `keras.Model` with a custom `train_step` (003 ch. 7) on the
class-weighted cross-entropy, and the expected class counts its weights come from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from tfad.data.records import class_indices
from tfad.families.classifier.gradcam import grad_cam
from tfad.losses.supervised import weighted_cross_entropy
from tfad.schema import Config
from tfad.trainers.supervised import SupervisedTrainer


def class_counts(config: Config, records: Sequence) -> list[float]:
    """Expected samples per class in one pass over ``records`` (synthetic defects taken from the good
    images at ``supervised.synthetic_probability``), for class weighting."""
    names = config.supervised.classes
    counts = np.bincount(class_indices(records, names), minlength=len(names)).astype(np.float64)
    p = config.supervised.synthetic_probability
    if p > 0:
        counts[-1] += p * counts[0]
        counts[0] *= 1 - p
    return counts.tolist()


class ClassifierTrainer(SupervisedTrainer):
    """Trains a backbone + softmax head on class-weighted cross-entropy."""

    tracker_names = ("total_loss", "accuracy", "defect_recall")
    progress_keys = ("total_loss", "accuracy")
    plot_panels = (
        (("total_loss",), "class-weighted cross-entropy"),
        (("accuracy", "defect_recall"), "accuracy, recall of defects (any defect class)"),
    )

    def __init__(
        self, networks, class_names: Sequence[str], class_weights: Sequence[float], **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.networks = networks
        self.backbone, self.head = networks.backbone, networks.head
        self.class_names = list(class_names)
        self.class_weights = tf.constant(np.asarray(class_weights, np.float32))

    @property
    def trainable_parameters(self) -> list:  # noqa: D102
        return self.backbone.trainable_variables + self.head.trainable_variables

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Logits ``[N, K]`` of ``images`` in [0, 1]."""
        return self.head(self.backbone(images, training=training), training=training)

    def _loss_values(self, batch: dict[str, tf.Tensor], training: bool) -> dict[str, tf.Tensor]:
        logits = self(batch["image"], training=training)
        labels = tf.cast(batch["class"], tf.int32)
        predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
        defective = labels != 0
        recall = tf.math.divide_no_nan(
            tf.reduce_sum(tf.cast(defective & (predicted != 0), tf.float32)),
            tf.reduce_sum(tf.cast(defective, tf.float32)),
        )
        return {
            "total_loss": weighted_cross_entropy(logits, labels, self.class_weights),
            "accuracy": tf.reduce_mean(tf.cast(predicted == labels, tf.float32)),
            "defect_recall": recall,
        }

    def preview_panels(self, batch: dict[str, tf.Tensor], n: int) -> tuple[list, list[str]]:
        """Image and Grad-CAM of the most probable defect class, labelled true/predicted class."""
        images = batch["image"][:n]
        logits = self(images, training=False)
        probabilities = tf.nn.softmax(logits).numpy()
        defect_class = np.argmax(probabilities[:, 1:], axis=-1) + 1
        maps, _ = grad_cam(self.backbone, self.head, images, tf.constant(defect_class, tf.int32))
        truth = batch["class"][:n].numpy()
        labels = [
            f"true {self.class_names[t]}\npred {self.class_names[int(np.argmax(p))]} {p.max():.2f}"
            for t, p in zip(truth, probabilities, strict=True)
        ]
        columns = [
            ("input", images.numpy(), "gray"),
            ("Grad-CAM (top defect class)", maps.numpy(), "inferno"),
        ]
        return columns, labels
