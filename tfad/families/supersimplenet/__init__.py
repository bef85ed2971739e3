"""The SuperSimpleNet family (001; methods.md): a discriminative model trained on frozen pretrained features.

The shared EfficientNet-Lite0 (``tfad.backbones``, the embedding family's backbone) gives stride-8 and
stride-16 features, resized to one grid and concatenated; a 1x1 adaptor, Perlin-masked Gaussian noise in
feature space as the synthetic anomalies, a segmentation head (the anomaly map) and a classification head
(the image score) are trained with a custom ``train_step``. Three regimes (``supersimplenet.regime``):
unsupervised (good images), supervised (plus labelled defect masks), weak (plus image labels only; the map
is a CAM). The backbone's features can be cached on disk (``supersimplenet.cache_features``), so CPU training
runs the heads only.

This folder: ``presets`` (architecture knobs), ``networks`` (backbone features, adaptor, heads, inference
model), ``folding`` (the inference model's adaptor and heads in their folded, faster form), ``trainer`` (the
``keras.Model`` with the ``train_step``), ``feature_cache`` (the cache and the streams read from it). This
module is the family's entry in the registry (``tfad.families``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from tfad.families.base import ModelFamily
from tfad.schema import Config
from tfad.trainers.supervised_config import check_supervised_section


class SuperSimpleNetFamily(ModelFamily):
    """SuperSimpleNet on the shared pretrained backbone (001)."""

    name = "supersimplenet"
    title = "SuperSimpleNet"
    # Sized for the slowest PC kind: supervised `line` would miss the 450 ms cycle there, `line-fast` holds
    # 4 stations x 1/s and detects as well on magnetic_tile (docs/performance.md, README).
    default_preset = "line-fast"
    default_learning_rate = 2e-4  # the heads' (the adaptor: half), as the paper
    default_adam_beta_1 = 0.9
    outputs = ("score", "heatmap")

    def uses_labels(self, config: Config) -> bool:  # noqa: D102
        return config.supersimplenet.regime != "unsupervised"

    def with_defaults(self, config: Config) -> Config:
        """The base defaults, and ``supersimplenet.score`` by the regime when the config leaves it null: the
        map's max unsupervised, the classification head with labels (README's magnetic_tile figures:
        0.862 vs 0.619 unsupervised; 0.972 vs 0.882 supervised, 0.966 vs 0.772 weak)."""
        config = super().with_defaults(config)
        section = config.supersimplenet
        if section.score is None:
            score = "map-max" if section.regime == "unsupervised" else "classification"
            config = dataclasses.replace(config, supersimplenet=dataclasses.replace(section, score=score))
        return config

    def validate_config(self, config: Config) -> None:  # noqa: D102
        if config.model.family == self.name and self.uses_labels(config):
            check_supervised_section(config)

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.families.supersimplenet.presets import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.networks.presets import select_preset

        return select_preset(self.presets(), name, "supersimplenet", overrides)

    def data_knobs(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {**super().data_knobs(config), "regime": config.supersimplenet.regime}

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.families.supersimplenet.networks import SuperSimpleNetNetworks

        # training starts from the package's ImageNet weights; a restored run gets them from its checkpoint
        return SuperSimpleNetNetworks(arch, pretrained=config is not None)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        from tfad.families.supersimplenet.trainer import SuperSimpleNetTrainer

        s, t = config.supersimplenet, config.training
        trainer = SuperSimpleNetTrainer(networks, s.regime, s.noise_sigma, s.perlin_threshold, t.seed)
        trainer.compile_with_adam(
            t.learning_rate, t.adam_beta_1, steps_per_epoch * t.epochs,
            clip_norm=1.0 if s.regime == "supervised" else None,  # the paper clips in the supervised regime
        )  # fmt: skip
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.families.supersimplenet.networks import score_images

        score = config.supersimplenet.score
        return lambda images: score_images(inference_model, images, score)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        arch = self.architecture(config)
        weak = arch.regime == "weak"
        if config.supersimplenet.score == "map-max":
            name = f"max of the blurred {'CAM' if weak else 'segmentation map'} logits"
        else:
            name = "logit of the classification head" + (" (mean of the CAM)" if weak else "")
        return {
            "name": name,
            "higher_is_anomalous": True,
            "heatmap": f"sigmoid of the {'CAM' if weak else 'segmentation map'}, upsampled to the image and "
            f"Gaussian-blurred (sigma {arch.blur_sigma})",
            "backbone": f"{arch.backbone} ImageNet, input {arch.backbone_input_size}, taps {arch.taps}",
            "regime": arch.regime,
        }

    def manifest_extras(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {"supersimplenet": dataclasses.asdict(config.supersimplenet)}
