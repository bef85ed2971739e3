"""SuperSimpleNet's training wrapper: a ``keras.Model`` with a custom ``train_step`` (001; methods.md).

Each step takes a batch of normal (and, in the supervised regimes, labelled) images or their cached
backbone features, adapts the features, duplicates the batch and perturbs it with Perlin-masked Gaussian
noise in feature space (:mod:`tfad.synthesis.feature_noise`; half of the masks are empty), and trains the
heads: truncated L1 + focal loss (gamma 4) of the segmentation map against the noise mask (and the labelled
mask), focal loss of the image logit against "has an anomaly". The weak regime (image labels only) trains
the classification logit alone; its map is the CAM. Two optimizers (adaptor; heads), as the paper's two
parameter groups; the learning rates drop x0.4 at 80 % and 90 % of the planned steps.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from tfad.losses.supersimplenet import focal_loss_with_logits, truncated_l1_loss
from tfad.synthesis.feature_noise import perturb
from tfad.trainers.adversarial import as_log, replica_gradients

ADAPTOR_LR_FACTOR = 0.5  # the paper: 1e-4 for the adaptor, 2e-4 for the heads
HEADS_WEIGHT_DECAY = 1e-5
LR_DROP = 0.4


def grid_masks(masks: tf.Tensor, grid: int) -> tf.Tensor:
    """Pixel masks ``[N, H, W, 1]`` -> 0/1 grid masks ``[N, g, g, 1]`` (bilinear, then >= 0.5: a cell is
    anomalous when about half of it is)."""
    resized = tf.image.resize(tf.cast(masks, tf.float32), [grid, grid], method="bilinear")
    return tf.cast(resized >= 0.5, tf.float32)


def step_schedule(learning_rate: float, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    """``learning_rate``, x0.4 after 80 % and again after 90 % of ``total_steps`` (as the paper)."""
    first, second = max(1, int(0.8 * total_steps)), max(2, int(0.9 * total_steps))
    return keras.optimizers.schedules.PiecewiseConstantDecay(
        [first, second], [learning_rate, learning_rate * LR_DROP, learning_rate * LR_DROP**2]
    )


class SuperSimpleNetTrainer(keras.Model):
    """Trains the adaptor and heads of :class:`~tfad.families.supersimplenet.networks.SuperSimpleNetNetworks`.

    Batches: ``{"features", "mask" (grid), "label"}`` from the feature cache, or the image streams of
    ``tfad fit`` (``"target"``: clean images, unsupervised; ``"image"``, ``"class"``, ``"mask"``: labelled).
    """

    needs_roi = False
    progress_keys = ("total_loss", "score_loss")
    #: Multiplies every gradient (``tfad.trainers.adversarial.replica_gradients``).
    gradient_scale: float = 1.0

    def __init__(
        self,
        networks: Any,
        regime: str,
        noise_sigma: float,
        perlin_threshold: float,
        seed: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.networks = networks
        self.regime = regime
        self.supervised = regime != "unsupervised"
        self.noise_sigma, self.perlin_threshold, self.seed = noise_sigma, perlin_threshold, seed
        self.grid = networks.arch.grid_size
        names = ("total_loss", "score_loss") if regime == "weak" else (
            "total_loss", "truncated_l1", "map_focal", "score_loss"
        )  # fmt: skip
        self.tracker_names = names
        self._trackers = {name: keras.metrics.Mean(name=name) for name in names}
        self.test_counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="test_counter")
        self.built = True

    plot_panels = (
        (("total_loss",), "total loss"),
        (("score_loss",), "classification focal loss"),
    )

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        """Loss trackers, reset at each epoch."""
        return list(self._trackers.values())

    def reset_metrics(self) -> None:
        """Reset the trackers and the validation noise counter (the same noise every validation pass)."""
        super().reset_metrics()
        self.test_counter.assign(0)

    def compile_with_adam(
        self, learning_rate: float, beta_1: float, total_steps: int, clip_norm: float | None
    ):
        """Adam for the adaptor, AdamW for the heads, both on :func:`step_schedule` (built here, so a
        checkpoint restores their state before the first step)."""
        super().compile()
        clip = {"global_clipnorm": clip_norm} if clip_norm else {}
        self.adaptor_optimizer = keras.optimizers.Adam(
            step_schedule(learning_rate * ADAPTOR_LR_FACTOR, total_steps), beta_1=beta_1, **clip
        )
        self.heads_optimizer = keras.optimizers.AdamW(
            step_schedule(learning_rate, total_steps), beta_1=beta_1, weight_decay=HEADS_WEIGHT_DECAY, **clip
        )
        self.adaptor_optimizer.build(self.networks.adaptor.trainable_variables)
        self.heads_optimizer.build(self.networks.heads.trainable_variables)

    def checkpoint_items(self) -> dict:
        """Everything a resumed run needs."""
        return {
            **self.networks.checkpoint_parts(),
            "adaptor_optimizer": self.adaptor_optimizer,
            "heads_optimizer": self.heads_optimizer,
        }

    def learning_rate(self, step: int) -> float:
        """The heads' learning rate at global ``step``."""
        return float(self.heads_optimizer.learning_rate(step)) if callable(
            self.heads_optimizer.learning_rate
        ) else float(self.heads_optimizer.learning_rate)  # fmt: skip

    def end_epoch(self, row: dict) -> None:
        """Nothing: the schedule runs on the step counter."""

    def inputs(self, batch: dict[str, tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(backbone features ``[B, g, g, D]``, labelled grid masks ``[B, g, g, 1]``, labels ``[B]``)."""
        if "features" in batch:
            features = tf.cast(batch["features"], tf.float32)
            return features, tf.cast(batch["mask"], tf.float32), tf.cast(batch["label"], tf.float32)
        if "class" in batch:  # labelled images (tfad.training.inputs.supervised_dataset)
            features = self.networks.features(batch["image"])
            masks = grid_masks(batch["mask"], self.grid)
            if self.regime == "weak":  # image labels only: the masks are not used
                masks = tf.zeros_like(masks)
            return features, masks, tf.cast(batch["class"] > 0, tf.float32)
        features = self.networks.features(batch["target"])  # P_q batches: the clean image
        n = tf.shape(features)[0]
        return features, tf.zeros([n, self.grid, self.grid, 1]), tf.zeros([n])

    def loss_values(self, batch: dict[str, tf.Tensor], seed: tf.Tensor, training: bool) -> dict:
        features, masks, labels = self.inputs(batch)
        adapted = self.networks.adaptor(features, training=training)
        # the clean batch twice, each copy with its own Perlin masks (half of them empty)
        adapted, masks, labels = (tf.concat([t, t], axis=0) for t in (adapted, masks, labels))
        noisy = perturb(adapted, masks, seed, self.noise_sigma, self.perlin_threshold)
        out = self.networks.heads(noisy["features"], training=training)
        # a real defect image keeps label 1 even where its mask (weak regime: none) is empty
        target_label = tf.maximum(labels, noisy["label"])
        score_loss = focal_loss_with_logits(out["score_logit"], target_label)
        if self.regime == "weak":
            return {"total_loss": score_loss, "score_loss": score_loss}
        trunc = truncated_l1_loss(out["map_logits"], noisy["mask"])
        map_focal = focal_loss_with_logits(out["map_logits"], noisy["mask"])
        return {
            "total_loss": trunc + map_focal + score_loss,
            "truncated_l1": trunc,
            "map_focal": map_focal,
            "score_loss": score_loss,
        }

    def _log(self, values: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        for name, value in values.items():
            self._trackers[name].update_state(value)
        return {name: as_log(tracker.result()) for name, tracker in self._trackers.items()}

    def train_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """One step of both optimizers on the total loss; the noise is keyed by (seed, step)."""
        seed = tf.stack(
            [tf.constant(self.seed, tf.int64), tf.cast(self.heads_optimizer.iterations, tf.int64)]
        )
        adaptor_vars = self.networks.adaptor.trainable_variables
        heads_vars = self.networks.heads.trainable_variables
        with tf.GradientTape() as tape:
            values = self.loss_values(batch, seed, training=True)
        gradients = replica_gradients(
            tape, values["total_loss"], adaptor_vars + heads_vars, self.gradient_scale
        )
        k = len(adaptor_vars)
        self.adaptor_optimizer.apply_gradients(zip(gradients[:k], adaptor_vars, strict=True))
        self.heads_optimizer.apply_gradients(zip(gradients[k:], heads_vars, strict=True))
        return self._log(values)

    def test_step(self, batch: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        """Validation losses (inference mode), with noise keyed by the batch's position in the pass."""
        seed = tf.stack([tf.constant(self.seed + 1, tf.int64), self.test_counter.assign_add(1)])
        return self._log(self.loss_values(batch, seed, training=False))

    def preview_panels(self, batch: dict[str, tf.Tensor], n: int) -> tuple[list, list[str]]:
        """Image and predicted map, labelled with the image score (for batches of images)."""
        key = "target" if "target" in batch else "image"
        images = batch[key][:n]
        model = self.networks.build_inference_model()
        out = model(images, training=False)
        columns = [("input", images.numpy(), "gray"), ("anomaly map", out["anomaly_map"].numpy(), "inferno")]
        return columns, [f"score {s:.3f}" for s in out["score_logit"].numpy()]

    def fit_streams(self, config: Any, data: Any, dist: Any, val_steps: int, global_step: int) -> Any:
        """``tfad fit``'s streams from the feature cache as ``(train, validation, preview, corrupt counter)``,
        or None for the image streams (:func:`tfad.families.supersimplenet.feature_cache.cached_streams`)."""
        from tfad.families.supersimplenet.feature_cache import cached_streams

        return cached_streams(self, config, data, dist, val_steps, global_step)
