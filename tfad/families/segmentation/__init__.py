"""The supervised U-Net segmentation family (003 ch. 7): a defect probability map trained on pixel masks.

This folder: ``networks`` (architecture, presets, the U-Net of ``tfad.networks.blocks``), ``trainer`` (the
``keras.Model`` on Dice + BCE or focal). Its score, the maximum of the mean-filtered map, is shared with
GRD-Net (``tfad.scoring.discriminative``). This module is the family's entry in the registry
(``tfad.families``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tfad.families.base import ModelFamily
from tfad.schema import Config
from tfad.trainers.supervised_config import check_supervised_section


class SegmentationFamily(ModelFamily):
    """Supervised U-Net segmentation on pixel masks (003 ch. 7)."""

    name = "segmentation"
    title = "U-Net segmentation"
    default_preset = "unet"
    default_learning_rate = 1e-3
    default_adam_beta_1 = 0.9
    default_early_stopping_patience = 5
    supervised = True
    outputs = ("score", "heatmap")

    def validate_config(self, config: Config) -> None:  # noqa: D102
        check_supervised_section(config)

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.families.segmentation.networks import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.families.segmentation.networks import preset

        return preset(name, **overrides)

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.families.segmentation.networks import SegmentationNetworks

        return SegmentationNetworks(arch)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        from tfad.families.segmentation.trainer import SegmentationTrainer

        sv = config.supervised
        trainer = SegmentationTrainer(networks, sv.segmentation_loss, sv.focal_gamma, sv.score_filter_size)
        trainer.compile_with_adam(config.training.learning_rate, config.training.adam_beta_1)
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.scoring.discriminative import score_anomaly_map

        size = config.supervised.score_filter_size
        return lambda images: score_anomaly_map(inference_model, images, size)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        size = config.supervised.score_filter_size
        return {
            "name": f"max of the {size}x{size} mean-filtered defect probability map",
            "higher_is_anomalous": True,
            "heatmap": "the U-Net's defect probability per pixel",
        }
