"""The DRAEM baseline (003 s. 8.2.2.3; Zavrtanik et al. 2021): one of the thesis's comparison points.

A reconstructive sub-network (a plain autoencoder trained with L2 + SSIM to restore images corrupted by the
package's synthetic anomalies P_q) and a discriminative U-Net on concat(reconstruction, image) trained with
the focal loss to segment the anomaly mask; the score is the maximum of the mean-filtered map, the heatmap
the map (docs/baselines.md). GRD-Net is DRAEM with a GANomaly generator as its reconstructive network.

This folder: ``networks`` (architecture, presets, both sub-networks), ``trainer`` (the ``keras.Model`` with
the joint ``train_step``). The score function is the shared map-max score
(:func:`tfad.scoring.discriminative.score_anomaly_map`). This module is the family's entry in the registry
(``tfad.families``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tfad.families.base import ModelFamily


class DRAEMFamily(ModelFamily):
    """DRAEM: reconstructive autoencoder + discriminative U-Net, map-max score (003 s. 8.2.2.3)."""

    name = "draem"
    title = "DRAEM"
    default_preset = "line"
    default_learning_rate = 1e-4  # the paper's
    default_adam_beta_1 = 0.9  # the paper's Adam (PyTorch's default betas)

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.families.draem.networks import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.families.draem.networks import preset

        return preset(name, **overrides)

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.families.draem.networks import DRAEMNetworks

        return DRAEMNetworks(arch)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        from tfad.families.draem.trainer import DRAEMTrainer

        t = config.training
        trainer = DRAEMTrainer(networks, config.draem)
        trainer.compile_with_adam(t.learning_rate, t.adam_beta_1, steps_per_epoch * t.epochs)
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.scoring.discriminative import score_anomaly_map

        size = config.draem.score_filter_size
        return lambda images: score_anomaly_map(inference_model, images, size)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        size = config.draem.score_filter_size
        return {
            "name": f"max of the {size}x{size} mean-filtered anomaly map",
            "patch_score": "map-max",
            "score_filter_size": size,
            "higher_is_anomalous": True,
            "heatmap": "anomaly map A of the discriminative U-Net in [0, 1]",
        }

    def manifest_extras(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {"draem": dataclasses.asdict(config.draem)}
