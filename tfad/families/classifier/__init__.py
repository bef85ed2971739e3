"""The supervised classifier family (003 ch. 7, appendix A): defect classes, Grad-CAM explanations.

This folder: ``networks`` (architecture, presets, backbones and the softmax head), ``trainer`` (the
``keras.Model`` on class-weighted cross-entropy, class counts), ``gradcam`` (Grad-CAM and the score
function the SavedModel runs). This module is the family's entry in the registry (``tfad.families``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tfad.families.base import ModelFamily
from tfad.schema import Config
from tfad.trainers.supervised_config import check_supervised_section


class ClassifierFamily(ModelFamily):
    """Supervised classifier over defect classes with Grad-CAM explanations (003 ch. 7, appendix A)."""

    name = "classifier"
    title = "classifier"
    default_preset = "mobilenetv3-small"
    default_learning_rate = 1e-3
    default_adam_beta_1 = 0.9
    default_early_stopping_patience = 5
    supervised = True
    outputs = ("score", "heatmap", "probabilities", "predicted_class")

    def validate_config(self, config: Config) -> None:  # noqa: D102
        check_supervised_section(config)

    def data_knobs(self, config: Any) -> dict[str, Any]:  # noqa: D102
        classes = config.supervised.classes
        # before tfad fit reads the data the classes may be unknown: 2 validates the other knobs
        return {**super().data_knobs(config), "num_classes": len(classes) if classes else 2}

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.families.classifier.networks import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.families.classifier.networks import preset

        return preset(name, **overrides)

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.families.classifier.networks import ClassifierNetworks

        if config is not None:  # training: from scratch or pretrained weights
            return ClassifierNetworks(arch, backbone_weights=config.supervised.backbone_weights)
        # restoring a trained run: the same structure (a grey input replicated for 3-channel pretrained
        # weights, or not) without needing the weights file again
        return ClassifierNetworks(arch, replicate_grey=bool((build or {}).get("replicates_grey", False)))

    def build_record(self, networks: Any) -> dict[str, Any]:  # noqa: D102
        return {"replicates_grey": bool(networks.replicates_grey)}

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        from tfad.families.classifier.trainer import ClassifierTrainer, class_counts
        from tfad.trainers.supervised import balanced_class_weights

        classes = config.supervised.classes
        if config.supervised.class_weighting == "balanced":
            weights = balanced_class_weights(class_counts(config, records))
        else:
            weights = [1.0] * len(classes)
        trainer = ClassifierTrainer(networks, classes, weights)
        trainer.compile_with_adam(config.training.learning_rate, config.training.adam_beta_1)
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.families.classifier.gradcam import score_classifier

        return lambda images: score_classifier(inference_model, images)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {
            "name": "1 - p(good) (softmax)",
            "higher_is_anomalous": True,
            "heatmap": "Grad-CAM of the most probable defect class on the backbone's last conv layer, "
            "upsampled and divided by its maximum",
        }

    def manifest_extras(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {"classes": list(config.supervised.classes)}
