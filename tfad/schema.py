"""The configuration schema: YAML sections as frozen dataclasses, ``ConfigError`` and the generic checks.

The bottom layer of tfad (docs/architecture.md): no family knowledge. Every hyperparameter lives here with
its default (methods.md). Unknown keys are rejected with the nearest valid name, wrong types and
out-of-range values with the dotted path of the offending key. What depends on the model family (its
defaults, its sections' checks, its architecture) is the family's (``tfad.families``); ``tfad.config``
puts both together.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """An invalid configuration; the message names the key and the problem."""


@dataclass(frozen=True)
class ModelConfig:
    """Which network to train and its size."""

    family: str = "resganad"  # a name of the registry (tfad.families)
    preset: str | None = None  # None: the family's default (ResGANAD line-cpu, GRD-Net crae, ...)
    overrides: dict[str, Any] = field(default_factory=dict)  # any architecture field of the family


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they are read."""

    root: str = ""
    layout: str = "auto"  # auto | mvtec | line
    train_split: str = "train"
    validation_fraction: float = 0.1
    image_size: int = 256
    channels: int = 1
    on_corrupt: str = "skip"  # skip (count and log) | fail (stop naming the file)
    # A packed folder (tfad datasets pack) to train on instead of reading root/train_split; the split into
    # training and validation is made when packing: validation_fraction must be 0 and the validation set,
    # if any, is its own pack (validation_shards).
    shards: str | None = None
    validation_shards: str | None = None


@dataclass(frozen=True)
class SynthesisConfig:
    """Synthetic anomalies P_q (Eq. 8.11)."""

    probability: float = 0.75
    beta_min: float = 0.5
    beta_max: float = 1.0
    max_scale_exponent: int = 6
    texture_dir: str | None = None  # anomaly-source images; random pixels when None


@dataclass(frozen=True)
class AugmentConfig:
    """Geometric augmentation (never horizontal flips)."""

    max_rotation: float = math.pi / 8
    vertical_flip: bool = True


@dataclass(frozen=True)
class LossWeightsConfig:
    """Generator loss weights, Eq. 8.13."""

    adversarial: float = 1.0
    contextual: float = 50.0
    latent: float = 1.0
    noise: float = 3.0
    huber: float = 2.0
    ssim: float = 1.0


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation and bookkeeping."""

    epochs: int = 10
    batch_size: int = 32
    steps_per_epoch: int | None = None  # None: one pass over the training images
    learning_rate: float | None = None  # None: the family's default (ResGANAD 1.5e-4, GRD-Net 1e-4)
    adam_beta_1: float | None = None  # None: the family's default (GANs 0.5, GANomaly's; supervised 0.9)
    restart_epochs: float = 1.0  # ResGANAD: first cosine cycle length, in epochs
    restart_factor: float = 1.0 / 3.0  # ResGANAD: each restart starts at this fraction of the previous rate
    loss_weights: LossWeightsConfig = field(default_factory=LossWeightsConfig)  # ResGANAD
    seed: int = 0
    checkpoint_every_steps: int = 200
    validation_steps: int | None = None
    # Stop after this many epochs without a lower validation total loss and keep the best epoch's weights
    # (0 = off). None: the family's default (GANs 0: their validation loss does not track detection;
    # supervised families 5).
    early_stopping_patience: int | None = None


@dataclass(frozen=True)
class GRDNetConfig:
    """GRD-Net losses, learning-rate plateau and scoring (003 Eq. 8.4-8.9, 9.1, Table 9.3)."""

    adversarial: float = 1.0  # L_gan = adversarial * L_adv + contextual * (l1 * L1 + ssim * (1-SSIM))
    contextual: float = 50.0  #         + latent * L_enc
    latent: float = 1.0
    l1: float = 1.0
    ssim: float = 1.0
    roi_loss: str = "focal-intersection"  # a Table 9.3 variant (tfad.losses.discriminative)
    focal_gamma: float = 2.0
    overlap_weight: float = 1.0  # w of the overlap terms (variants 1, 3, 4)
    plateau_patience_epochs: int = 3  # lr <- lr * plateau_factor after this many epochs without improvement
    plateau_factor: float = math.exp(-0.1)
    score_filter_size: int = 21  # image score = max of the map after this mean filter
    inference_roi: str | None = None  # a mask image (white = inspect) multiplied into every served map


@dataclass(frozen=True)
class SupervisedConfig:
    """The supervised families (``classifier``, ``segmentation``; 003 ch. 7): labelled defects, synthetic
    defects, class weighting, pretrained weights, the segmentation loss and score."""

    # Class names, "good" first. None: from the training data (good + the defect folders / labels.csv
    # defect types, sorted, + "synthetic" when synthetic_probability > 0); tfad fit writes them into the
    # run's config.yaml.
    classes: list[str] | None = None
    # Probability that a good training image is turned into a synthetic defect by P_q (synthesis.*): its
    # class is "synthetic", its mask the Perlin mask. Needed when the training split has no labelled defects.
    synthetic_probability: float = 0.0
    class_weighting: str = "balanced"  # balanced (w_c = N / (K n_c)) | none
    backbone_weights: str | None = None  # classifier: a local weights file, "imagenet" (download), or None
    segmentation_loss: str = "dice+bce"  # segmentation: dice+bce | dice+focal
    focal_gamma: float = 2.0  # dice+focal
    score_filter_size: int = 21  # segmentation: image score = max of the mean-filtered mask


@dataclass(frozen=True)
class BlobConfig:
    """The blob-analysis baseline (``model.family: blob``, docs/blob.md)."""

    parameters: dict[str, Any] = field(default_factory=dict)  # tfad.families.blob.parameters fields
    roi: str | None = None  # a mask image (non-zero = inspect) at any size, resized to the model input
    max_reference_images: int = 256  # background "reference": median of at most this many good images


@dataclass(frozen=True)
class CalibrationConfig:
    """Default threshold policy for ``tfad calibrate`` and run acceptance."""

    policy: str = "max-accuracy"
    false_reject_budget: float | None = None
    run_k: int = 7
    run_n: int = 10


@dataclass(frozen=True)
class Config:
    """A whole ``tfad fit`` configuration."""

    name: str = "model"
    output_dir: str = "runs"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    grdnet: GRDNetConfig = field(default_factory=GRDNetConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    blob: BlobConfig = field(default_factory=BlobConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON serialisable)."""
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> Path:
        """Where ``tfad fit`` writes this run: ``<output_dir>/<name>``."""
        return Path(self.output_dir) / self.name


POLICIES = ("max-accuracy", "max-balanced-accuracy", "no-defect-accepted", "false-reject-budget")


def _check_type(value: Any, annotation: Any, path: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(value, option, path)
            except ConfigError:
                pass
        raise ConfigError(f"{path}: expected {annotation}, got {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_check_type(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if dataclasses.is_dataclass(annotation):
        return _from_dict(annotation, value, path)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true/false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def _from_dict(cls: type, data: Any, path: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown key '{key_path}'{hint}; valid keys here: {', '.join(names)}")
        kwargs[key] = _check_type(value, hints[key], key_path)
    return cls(**kwargs)


def parse(data: Any) -> Config:
    """A Config from a nested dict, its keys and types checked (the values' ranges are not: :func:`check`)."""
    return _from_dict(Config, data, "")


def require(ok: bool, message: str) -> None:
    """ConfigError(``message``) unless ``ok``."""
    if not ok:
        raise ConfigError(message)


def check_name(config: Config) -> None:
    """ConfigError unless ``name`` is usable as a folder name."""
    require(
        config.name.replace("-", "").replace("_", "").isalnum(),
        f"name: use letters, digits, '-' and '_' only, got {config.name!r}",
    )


def check(config: Config, fits_from_shards: bool = True) -> None:
    """Range and cross-field checks of the family-independent sections (data, synthesis, augment,
    training, calibration) of a config whose family defaults are filled in; ``fits_from_shards``: whether
    the configured family can read ``data.shards``. Raises ConfigError naming the key."""
    require(
        config.data.layout in ("auto", "mvtec", "line"),
        f"data.layout: auto, mvtec or line, got {config.data.layout!r}",
    )
    require(
        0.0 <= config.data.validation_fraction < 1.0,
        f"data.validation_fraction must be in [0, 1), got {config.data.validation_fraction}",
    )
    if config.data.shards is not None:
        require(bool(config.data.shards.strip()), "data.shards: give the packed folder, or null")
        require(
            config.data.validation_fraction == 0,
            "data.shards: a packed training set is not split by product at training time; set "
            "data.validation_fraction: 0 and pack the validation products separately as "
            f"data.validation_shards (got validation_fraction {config.data.validation_fraction})",
        )
    require(
        config.data.shards is None or fits_from_shards,
        f"data.shards: the {config.model.family} family fits from image folders (data.root), not from "
        "packed shards",
    )
    require(
        config.data.validation_shards is None or config.data.shards is not None,
        "data.validation_shards needs data.shards (validation from a pack goes with training from one)",
    )
    require(config.data.image_size >= 16, f"data.image_size must be >= 16, got {config.data.image_size}")
    require(config.data.channels in (1, 3), f"data.channels must be 1 or 3, got {config.data.channels}")
    require(
        config.data.on_corrupt in ("skip", "fail"),
        f"data.on_corrupt: skip or fail, got {config.data.on_corrupt!r}",
    )
    require(
        0.0 <= config.synthesis.probability <= 1.0,
        f"synthesis.probability must be in [0, 1], got {config.synthesis.probability}",
    )
    require(
        0.0 <= config.synthesis.beta_min <= config.synthesis.beta_max <= 1.0,
        "synthesis.beta_min <= synthesis.beta_max must both be in [0, 1]",
    )
    require(
        0.0 <= config.augment.max_rotation <= math.pi,
        f"augment.max_rotation (radians) must be in [0, pi], got {config.augment.max_rotation}",
    )
    t = config.training
    require(t.epochs >= 1, f"training.epochs must be >= 1, got {t.epochs}")
    require(t.batch_size >= 1, f"training.batch_size must be >= 1, got {t.batch_size}")
    require(
        t.steps_per_epoch is None or t.steps_per_epoch >= 1, "training.steps_per_epoch must be >= 1 or null"
    )
    require(
        t.learning_rate is None or t.learning_rate > 0,
        f"training.learning_rate must be > 0 (or null for the family default), got {t.learning_rate}",
    )
    require(0 <= t.adam_beta_1 < 1, f"training.adam_beta_1 must be in [0, 1), got {t.adam_beta_1}")
    require(
        t.early_stopping_patience >= 0,
        f"training.early_stopping_patience must be >= 0 (0 = off), got {t.early_stopping_patience}",
    )
    require(t.restart_epochs > 0, f"training.restart_epochs must be > 0, got {t.restart_epochs}")
    require(0 < t.restart_factor <= 1, f"training.restart_factor must be in (0, 1], got {t.restart_factor}")
    require(t.checkpoint_every_steps >= 1, "training.checkpoint_every_steps must be >= 1")
    c = config.calibration
    require(c.policy in POLICIES, f"calibration.policy: one of {POLICIES}, got {c.policy!r}")
    require(
        c.policy != "false-reject-budget"
        or (c.false_reject_budget is not None and 0 <= c.false_reject_budget < 1),
        "calibration.false_reject_budget in [0, 1) is required by the false-reject-budget policy",
    )
    require(1 <= c.run_k <= c.run_n, f"calibration.run_k must be in [1, run_n], got {c.run_k} of {c.run_n}")


def dump_config(config: Config, path: str | Path) -> None:
    """Write ``config`` as YAML (all keys, with defaults filled in)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
