"""The AE-XAD family (000; methods.md, "AE-XAD (000)"; docs/aexad.md): few-shot supervised reconstruction.

A frozen pretrained encoder (the early blocks of the shared EfficientNet-Lite0, ``tfad.backbones``) and a
two-branch decoder (a fixed upsample + tanh branch b1, a trained branch b2, fused as ``b2 + b1 * b2``) are
trained with the AE-XAD per-pixel loss (``tfad.losses.aexad``) on good images and a handful of labelled
defects with masks: normal pixels are reconstructed, anomalous ones pushed towards ``F = 2``. The anomaly
map is the normalised reconstruction error, Gaussian-filtered; the binary map thresholds it at its mean +
std. The run always reads labelled images (like the supervised families: ``supervised.classes``); a
training split without labelled defects needs ``supervised.synthetic_probability`` > 0 (P_q defects with
their Perlin masks stand in).

This folder: ``presets`` (architecture knobs), ``networks`` (encoder, decoder, inference model),
``trainer`` (the ``keras.Model`` with the ``train_step``), ``scoring`` (error map, binarisation, the score
function the SavedModel runs). This module is the family's entry in the registry (``tfad.families``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tfad.families.base import ModelFamily
from tfad.schema import Config
from tfad.trainers.supervised_config import check_supervised_section


class AEXADFamily(ModelFamily):
    """AE-XAD on the shared pretrained backbone (000)."""

    name = "aexad"
    title = "AE-XAD"
    default_preset = "line"
    default_learning_rate = 5e-4  # the seed's (000 s. 5.6)
    default_adam_beta_1 = 0.9
    supervised = True  # few-shot supervised: good images + labelled defect masks
    outputs = ("score", "heatmap", "reconstruction")

    def validate_config(self, config: Config) -> None:  # noqa: D102
        if config.model.family == self.name:
            check_supervised_section(config)

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.families.aexad.presets import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.networks.presets import select_preset

        return select_preset(self.presets(), name, "AE-XAD", overrides)

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.families.aexad.networks import AEXADNetworks

        # training starts from the package's ImageNet weights; a restored run gets them from its checkpoint
        return AEXADNetworks(arch, pretrained=config is not None)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        from tfad.families.aexad.trainer import AEXADTrainer

        t = config.training
        trainer = AEXADTrainer(networks, config.aexad.scaling)
        trainer.compile_with_adam(t.learning_rate, t.adam_beta_1, steps_per_epoch * t.epochs)
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.families.aexad.scoring import score_images

        a = config.aexad
        return lambda images: score_images(inference_model, images, a.score, a.scaling, a.blur_sigma)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        a = config.aexad
        arch = self.architecture(config)
        error = f"(x - x~)^2 / ({a.scaling:g} - x)^2 Gaussian-filtered (sigma {a.blur_sigma:g})"
        names = {
            "max": f"max of the {error}",
            "mean": f"mean of the {error}",
            "area": f"share of the patch where the {error} exceeds its mean + std",
        }
        return {
            "name": names[a.score],
            "patch_score": a.score,
            "higher_is_anomalous": True,
            "heatmap": f"the {error}, clipped to [0, 1]",
            "binary_map": "heatmap > its mean + std (per patch)",
            "backbone": f"{arch.backbone} ImageNet, input {arch.backbone_input_size}, taps {arch.taps}, "
            + ("trained" if arch.train_encoder else "frozen"),
        }

    def manifest_extras(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {"aexad": dataclasses.asdict(config.aexad)}
