"""The model families ``tfad fit`` trains, and how each is built, trained and scored.

One entry per ``model.family``. Everything family-specific that the shared machinery (``tfad fit``, run
loading, scoring, export) needs goes through :class:`ModelFamily`, so adding a family touches this file, its
networks (``tfad.models``), its losses, its trainer (``tfad.training``) and its score function
(``tfad.scoring``) - not the CLI, calibration, evaluation or the servers.

Every family's serving contract is the same: uint8 images ``[N, H, W, C]`` in, ``score`` [N] (higher = more
anomalous) and ``heatmap`` [N, H, W] out, plus family-specific extras (``reconstruction`` [N, H, W, C] of
the reconstruction models, ``probabilities`` [N, K] of the classifier). The TensorFlow families export a
SavedModel with that signature; the blob-analysis baseline (no TensorFlow) exports its parameters and runs
in the Python server only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from tfad.families.base import ModelFamily
from tfad.families.embedding import EmbeddingFamily
from tfad.schema import Config, ConfigError, require


class ResGANADFamily(ModelFamily):
    """ResGANAD: wide residual autoencoder GAN, 1-SSIM score (003 s. 8.2.2.5)."""

    name = "resganad"
    title = "ResGANAD"
    default_preset = "line-cpu"
    default_learning_rate = 1.5e-4

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.models.resganad import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.models.resganad import preset

        return preset(name, **overrides)

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.models.resganad import ResGANADNetworks

        return ResGANADNetworks(arch)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        import keras

        from tfad.training.resganad import ResGANADLossWeights, ResGANADTrainer

        t = config.training
        lw = t.loss_weights

        def schedule():
            return keras.optimizers.schedules.CosineDecayRestarts(
                t.learning_rate,
                first_decay_steps=max(1, round(t.restart_epochs * steps_per_epoch)),
                t_mul=1.0,
                m_mul=t.restart_factor,
                alpha=0.0,
            )

        trainer = ResGANADTrainer(
            networks,
            ResGANADLossWeights(lw.adversarial, lw.contextual, lw.latent, lw.noise, lw.huber, lw.ssim),
        )
        trainer.compile(
            generator_optimizer=keras.optimizers.Adam(schedule(), beta_1=t.adam_beta_1),
            critic_optimizer=keras.optimizers.Adam(schedule(), beta_1=t.adam_beta_1),
        )
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.scoring.reconstruction import score_images

        return lambda images: score_images(inference_model, images)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {
            "name": "1-ssim",
            "higher_is_anomalous": True,
            "heatmap": "per-image min-max normalised |X - X_hat|",
        }


class GRDNetFamily(ModelFamily):
    """GRD-Net: residual GANomaly + discriminative U-Net with ROI focal loss (003 s. 8.2.2.4, ch. 9)."""

    name = "grdnet"
    title = "GRD-Net"
    default_preset = "crae"
    default_learning_rate = 1e-4

    def presets(self) -> dict[str, Any]:  # noqa: D102
        from tfad.models.grdnet import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.models.grdnet import preset

        return preset(name, **overrides)

    def validate_config(self, config: Config) -> None:  # noqa: D102
        from tfad.losses.discriminative import ROI_LOSS_VARIANTS

        g = config.grdnet
        require(
            g.roi_loss in ROI_LOSS_VARIANTS,
            f"grdnet.roi_loss: one of {ROI_LOSS_VARIANTS}, got {g.roi_loss!r}",
        )
        require(g.focal_gamma >= 0, f"grdnet.focal_gamma must be >= 0, got {g.focal_gamma}")
        require(g.plateau_patience_epochs >= 1, "grdnet.plateau_patience_epochs must be >= 1")
        require(0 < g.plateau_factor <= 1, f"grdnet.plateau_factor must be in (0, 1], got {g.plateau_factor}")
        require(
            g.score_filter_size >= 1 and g.score_filter_size % 2 == 1,
            f"grdnet.score_filter_size must be a positive odd integer, got {g.score_filter_size}",
        )

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.models.grdnet import GRDNetNetworks

        return GRDNetNetworks(arch)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        from tfad.training.grdnet import GRDNetTrainer

        trainer = GRDNetTrainer(networks, config.grdnet)
        trainer.compile_with_adam(config.training.learning_rate, config.training.adam_beta_1)
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.scoring.discriminative import score_anomaly_map

        roi = inference_roi(config)
        size = config.grdnet.score_filter_size
        return lambda images: score_anomaly_map(inference_model, images, size, roi)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {
            "name": f"max of the {config.grdnet.score_filter_size}x{config.grdnet.score_filter_size} "
            "mean-filtered anomaly map",
            "higher_is_anomalous": True,
            "heatmap": "anomaly map A of the discriminative U-Net in [0, 1]"
            + (" times the inference ROI" if config.grdnet.inference_roi else ""),
            "inference_roi": config.grdnet.inference_roi,
        }


def check_supervised_section(config: Config) -> None:
    """ConfigError naming a bad value of the ``supervised`` section (read by both supervised families)."""
    sv = config.supervised
    require(
        0.0 <= sv.synthetic_probability <= 1.0,
        f"supervised.synthetic_probability must be in [0, 1], got {sv.synthetic_probability}",
    )
    require(
        sv.class_weighting in ("balanced", "none"),
        f"supervised.class_weighting: balanced or none, got {sv.class_weighting!r}",
    )
    require(
        sv.segmentation_loss in ("dice+bce", "dice+focal"),
        f"supervised.segmentation_loss: dice+bce or dice+focal, got {sv.segmentation_loss!r}",
    )
    require(sv.focal_gamma >= 0, f"supervised.focal_gamma must be >= 0, got {sv.focal_gamma}")
    require(
        sv.score_filter_size >= 1 and sv.score_filter_size % 2 == 1,
        f"supervised.score_filter_size must be a positive odd integer, got {sv.score_filter_size}",
    )
    if sv.classes is not None:
        require(
            len(sv.classes) >= 2 and sv.classes[0] == "good" and len(set(sv.classes)) == len(sv.classes),
            f"supervised.classes: at least two distinct names, 'good' first, got {sv.classes}",
        )


def inference_roi(config: Any):
    """The configured GRD-Net inference ROI as a 0/1 ``[H, W]`` float array at model size, or None.

    Raises FileNotFoundError / CorruptImageError naming the file.
    """
    path = config.grdnet.inference_roi
    if not path:
        return None
    from pathlib import Path

    from tfad.data.decode import load_binary_mask

    if not Path(path).is_file():
        raise FileNotFoundError(2, "grdnet.inference_roi mask not found", str(path))
    size = config.data.image_size
    return load_binary_mask(path, (size, size), None)[..., 0].astype("float32")


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
        from tfad.models.classifier import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.models.classifier import preset

        return preset(name, **overrides)

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.models.classifier import ClassifierNetworks

        if config is not None:  # training: from scratch or pretrained weights
            return ClassifierNetworks(arch, backbone_weights=config.supervised.backbone_weights)
        # restoring a trained run: the same structure (a grey input replicated for 3-channel pretrained
        # weights, or not) without needing the weights file again
        return ClassifierNetworks(arch, replicate_grey=bool((build or {}).get("replicates_grey", False)))

    def build_record(self, networks: Any) -> dict[str, Any]:  # noqa: D102
        return {"replicates_grey": bool(networks.replicates_grey)}

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        from tfad.training.fit import class_counts
        from tfad.training.supervised import ClassifierTrainer, balanced_class_weights

        classes = config.supervised.classes
        if config.supervised.class_weighting == "balanced":
            weights = balanced_class_weights(class_counts(config, records))
        else:
            weights = [1.0] * len(classes)
        trainer = ClassifierTrainer(networks, classes, weights)
        trainer.compile_with_adam(config.training.learning_rate, config.training.adam_beta_1)
        return trainer

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        from tfad.scoring.gradcam import score_classifier

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
        from tfad.models.segmentation import PRESETS

        return PRESETS

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.models.segmentation import preset

        return preset(name, **overrides)

    def networks(self, arch: Any, config: Any = None, build: dict | None = None) -> Any:  # noqa: D102
        from tfad.models.segmentation import SegmentationNetworks

        return SegmentationNetworks(arch)

    def trainer(self, networks: Any, config: Any, steps_per_epoch: int, records: Any) -> Any:  # noqa: D102
        from tfad.training.supervised import SegmentationTrainer

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


BLOB_DIR = "blob"  # the fitted blob analyzer of a blob-analysis run (tfad.models.blob)


class BlobFamily(ModelFamily):
    """The classic blob-analysis baseline (003 s. 4.2), scikit-image, no TensorFlow (docs/blob.md)."""

    name = "blob"
    title = "blob analysis"
    default_preset = "standard"
    trainable = False
    tensorflow = False
    outputs = ("score", "heatmap")

    def validate_config(self, config: Config) -> None:  # noqa: D102
        require(
            config.blob.max_reference_images >= 1,
            f"blob.max_reference_images must be >= 1, got {config.blob.max_reference_images}",
        )
        if config.model.family == self.name:
            from tfad.models.blob import BlobParameters

            try:
                BlobParameters.from_dict(config.blob.parameters)
            except ValueError as err:
                raise ConfigError(f"blob.parameters: {err}") from err

    def presets(self) -> dict[str, Any]:  # noqa: D102
        return {"standard": BlobArchitecture()}

    def preset(self, name: str, **overrides: Any) -> Any:  # noqa: D102
        from tfad.models.presets import select_preset

        return select_preset(self.presets(), name, "blob", overrides)

    def fit_without_training(  # noqa: D102
        self, config: Any, records: list, train: list, validation: list, run_dir: Any
    ) -> dict[str, Any]:
        # The analyzer (the reference image of ``background: reference``) is fitted on every good image of
        # the training split (no validation is needed), streamed; saved under ``run_dir/blob``.
        import numpy as np

        from tfad.data.pipeline import make_dataset
        from tfad.data.records import LABEL_GOOD

        analyzer = self.new_analyzer(config)
        if analyzer.params.background == "reference":
            good = [r for r in records if r.label == LABEL_GOOD]
            size = config.data.image_size
            dataset = make_dataset(
                good, (size, size), channels=config.data.channels, batch_size=32, name="blob-reference"
            )
            batches = (np.round(b["image"].numpy() * 255).astype(np.uint8) for b in dataset)
            analyzer.fit(batches, max_reference_images=config.blob.max_reference_images)
        analyzer.save(run_dir / BLOB_DIR)
        return {
            "parameters": analyzer.params.to_dict(),
            **dict(getattr(analyzer, "reference_stats", {}) or {}),
        }

    def load_fitted(self, run_dir: Any, config: Any, info: dict[str, Any]) -> Any:  # noqa: D102
        from tfad.models.blob import BlobAnalyzer

        if info.get("status") != "finished" or not (run_dir / BLOB_DIR).is_dir():
            raise FileNotFoundError(2, "the run was not fitted yet (run tfad fit)", str(run_dir / BLOB_DIR))
        return BlobAnalyzer.load(run_dir / BLOB_DIR)

    def new_analyzer(self, config: Any) -> Any:
        """An unfitted :class:`tfad.models.blob.BlobAnalyzer` from the config (ROI resized to the input)."""
        from tfad.models.blob import BlobAnalyzer, BlobParameters

        roi = None
        if config.blob.roi:
            from pathlib import Path

            from tfad.data.decode import load_binary_mask

            if not Path(config.blob.roi).is_file():
                raise FileNotFoundError(2, "blob.roi mask not found", str(config.blob.roi))
            size = config.data.image_size
            roi = load_binary_mask(config.blob.roi, (size, size), None)[..., 0]
        params = BlobParameters.from_dict(config.blob.parameters)
        return BlobAnalyzer(params, config.data.image_size, config.data.channels, roi=roi)

    def score_function(self, inference_model: Any, config: Any) -> Callable[[Any], dict]:  # noqa: D102
        return inference_model  # the BlobAnalyzer: uint8 images -> {"score", "heatmap"} (numpy)

    def score_description(self, config: Any) -> dict[str, Any]:  # noqa: D102
        return {
            "name": "largest surviving blob's area x mean contrast (0 when no blob survives)",
            "higher_is_anomalous": True,
            "heatmap": "contrast on the surviving blobs' pixels, 0 elsewhere (not renormalised)",
        }


@dataclass(frozen=True)
class BlobArchitecture:
    """The blob family's input size (its parameters are ``blob.parameters``)."""

    image_size: int = 256
    channels: int = 1

    def validate(self) -> None:
        """ValueError naming a bad input size or channel count."""
        if self.image_size < 16:
            raise ValueError(f"image_size must be >= 16, got {self.image_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return asdict(self)


_FAMILIES: dict[str, ModelFamily] = {
    f.name: f
    for f in (
        ResGANADFamily(),
        GRDNetFamily(),
        ClassifierFamily(),
        SegmentationFamily(),
        BlobFamily(),
        EmbeddingFamily(),
    )
}


def names() -> tuple[str, ...]:
    """Every ``model.family`` name, in the registry's order."""
    return tuple(_FAMILIES)


def family(name: str) -> ModelFamily:
    """The family entry for ``model.family`` ``name``; ValueError listing the families."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; choose one of {sorted(_FAMILIES)}") from None
