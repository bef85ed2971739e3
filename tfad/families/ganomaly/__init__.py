"""The GANomaly baseline (003 s. 8.2.2.1; Akcay et al. 2018): one of the thesis's comparison points.

An encoder-decoder-encoder generator (G_E -> G_D -> E) and a discriminator, DCGAN-style, trained on good
images with adversarial (feature matching), contextual (L1) and encoder (L2) losses; the score is the
latent distance ||z - z_hat||^2, the heatmap |X - X_hat| (docs/baselines.md).

This folder: ``networks`` (architecture, presets, the four networks), ``trainer`` (the GAN ``train_step``
with two Adams), ``scoring`` (the score function the SavedModel runs). This module is the family's entry in
the registry (``tfad.families``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tfad.families.base import ModelFamily


class GANomalyFamily(ModelFamily):
    """GANomaly: encoder-decoder-encoder GAN, latent-distance score (003 s. 8.2.2.1)."""

    name = "ganomaly"
    title = "GANomaly"
    default_preset = "line"
    default_learning_rate = 2e-4  # the paper's (Adam, beta_1 0.5: the base's default)

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.families.ganomaly.networks import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.families.ganomaly.networks import preset

        return preset(name, **overrides)

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.families.ganomaly.networks import GANomalyNetworks

        return GANomalyNetworks(arch)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        from tfad.families.ganomaly.trainer import GANomalyTrainer

        trainer = GANomalyTrainer(networks, config.ganomaly)
        trainer.compile_with_adam(config.training.learning_rate, config.training.adam_beta_1)
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.families.ganomaly.scoring import score_images

        return lambda images: score_images(inference_model, images)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {
            "name": "latent distance mean((z - z_hat)^2), z = G_E(X), z_hat = E(G_D(z))",
            "patch_score": "latent",
            "higher_is_anomalous": True,
            "heatmap": "|X - X_hat| (mean over channels, not normalised)",
        }

    def manifest_extras(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {"ganomaly": dataclasses.asdict(config.ganomaly)}
