"""What the training wrappers of the supervised families (003 ch. 7) share: a `keras.Model` base with one
Adam optimizer at a constant learning rate, loss trackers and the fit driver's hooks; class weights.

Batches come from :func:`tfad.training.inputs.supervised_dataset`: ``image``, ``class`` (0 = good),
``mask`` (0/1 defect pixels) and ``synthetic`` (made by P_q). ``tfad fit``'s early stopping keeps the epoch
with the lowest validation loss. The trainers themselves are the families' (``tfad.families.classifier``,
``tfad.families.segmentation``).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from tfad.trainers.adversarial import as_log, replica_gradients


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
    #: Multiplies every gradient (``tfad.trainers.adversarial.replica_gradients``); 1 / replicas under a
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
