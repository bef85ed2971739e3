"""Training wrappers of the supervised families (003 ch. 7): a `keras.Model` with a custom `train_step`.

Batches come from :func:`tfad.training.inputs.supervised_dataset`: ``image``, ``class`` (0 = good),
``mask`` (0/1 defect pixels) and ``synthetic`` (made by P_q). Both trainers use one Adam optimizer at a
constant learning rate; ``tfad fit``'s early stopping keeps the epoch with the lowest validation loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfad.losses.supervised import dice_loss, segmentation_loss, weighted_cross_entropy
from tfad.training.adversarial import as_log, replica_gradients


def balanced_class_weights(counts: Sequence[float]) -> np.ndarray:
    """``w_c = N / (K n_c)`` (scikit-learn's "balanced"): every class carries the same total weight.

    A class with no samples gets weight 0 (it never appears in a batch anyway).
    """
    counts = np.asarray(counts, np.float64)
    total, k = counts.sum(), len(counts)
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, total / (k * np.maximum(counts, 1e-12)), 0.0)
    return weights.astype(np.float32)


class SupervisedTrainer(keras.Model):
    """What both supervised trainers share: trackers, one Adam, the fit-driver hooks."""

    needs_roi = False
    supervised = True
    tracker_names: tuple[str, ...] = ()
    #: Multiplies every gradient (``tfad.training.adversarial.replica_gradients``); 1 / replicas under a
    #: strategy.
    gradient_scale: float = 1.0

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._trackers = {name: keras.metrics.Mean(name=name) for name in self.tracker_names}
        self.built = True

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """Loss trackers, reset at each epoch."""
        return list(self._trackers.values())

    def compile_with_adam(self, learning_rate: float, beta_1: float = 0.9) -> None:
        """Compile with one Adam over every trainable variable (built here, so a checkpoint can restore its
        state before the first step)."""
        super().compile()
        self.optimizer_ = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=beta_1)
        self.optimizer_.build(self.trainable_parameters)

    @property
    def trainable_parameters(self) -> list:
        """The variables the optimizer updates."""
        raise NotImplementedError

    def checkpoint_items(self) -> dict:
        """Everything a resumed run needs: networks and the optimizer."""
        return {**self.networks.checkpoint_parts(), "optimizer": self.optimizer_}

    def learning_rate(self, step: int) -> float:
        """The (constant) learning rate."""
        return float(keras.ops.convert_to_numpy(self.optimizer_.learning_rate))

    def end_epoch(self, row: dict) -> None:
        """Nothing: early stopping is the fit driver's."""

    def update_trackers(self, **values: tf.Tensor) -> dict[str, tf.Tensor]:
        """Add this step's values to the trackers; return every tracker's running mean as a log."""
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: as_log(tracker.result()) for name, tracker in self._trackers.items()}

    def _apply(self, tape: tf.GradientTape, loss: tf.Tensor) -> None:
        variables = self.trainable_parameters
        gradients = replica_gradients(tape, loss, variables, self.gradient_scale)
        self.optimizer_.apply_gradients(zip(gradients, variables, strict=True))

    def _loss_values(self, batch: dict[str, tf.Tensor], training: bool) -> dict[str, tf.Tensor]:
        """The step's logged values; ``"total_loss"`` is the one optimised."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One Adam step on ``total_loss``."""
        with tf.GradientTape() as tape:
            values = self._loss_values(batch, training=True)
        self._apply(tape, values["total_loss"])
        return self.update_trackers(**values)

    def test_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Validation losses (inference mode)."""
        return self.update_trackers(**self._loss_values(batch, training=False))


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
        from tfad.scoring.gradcam import grad_cam

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
        from tfad.scoring.discriminative import smoothed_max_score

        probabilities = self(batch["image"], training=training)
        return {
            "total_loss": segmentation_loss(probabilities, batch["mask"], self.loss_kind, self.gamma),
            "dice": 1.0 - dice_loss(probabilities, batch["mask"]),
            "score": tf.reduce_mean(smoothed_max_score(probabilities, self.filter_size)),
        }

    def preview_panels(self, batch: dict[str, tf.Tensor], n: int) -> tuple[list, list[str]]:
        """Image, true mask, predicted map, labelled with the image score."""
        from tfad.scoring.discriminative import smoothed_max_score

        images = batch["image"][:n]
        predicted = self(images, training=False)
        scores = smoothed_max_score(predicted, self.filter_size).numpy()
        columns = [
            ("input", images.numpy(), "gray"),
            ("defect mask", batch["mask"][:n].numpy(), "gray"),
            ("predicted map", predicted.numpy(), "inferno"),
        ]
        return columns, [f"score {s:.3f}" for s in scores]
