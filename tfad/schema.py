"""The configuration schema: YAML sections as frozen dataclasses, ``ConfigError`` and the generic checks.

The bottom layer of tfad (docs/architecture.md): no family knowledge. Every hyperparameter lives here with
its default (methods.md). Unknown keys are rejected with the nearest valid name, wrong types and
out-of-range values with the dotted path of the offending key. What depends on the model family (its
defaults, its sections' checks, its architecture) is the family's (``tfad.families``); ``tfad.config``
puts both together.

A key's valid values are declared once, beside the key: a :class:`Rule` in the field's metadata (written
with :func:`_key` / :func:`_path`). :func:`check` applies every rule, :func:`check_paths` the file and
folder ones, so a key added with its rule needs no further checking code; what a rule cannot say (one key
against another) is written out in :func:`check`.
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


#: File suffixes read as images where a folder of images is configured (``synthesis.texture_dir``).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")

PathKind = typing.Literal["file", "dir", "image-dir"]


@dataclass(frozen=True)
class Rule:
    """The values a config key accepts beyond its type; ``None`` (the key's "default"/"off") always passes.

    Bounds apply to numbers, ``choices`` to any value. A ``path`` key must name an existing file, folder, or
    folder holding an image (``image-dir``) when ``tfad fit`` starts (:func:`check_paths`), unless its value
    is one of its ``keywords`` (e.g. ``imagenet``).
    """

    ge: float | None = None  # value >= ge
    gt: float | None = None  # value > gt
    le: float | None = None  # value <= le
    lt: float | None = None  # value < lt
    choices: tuple[Any, ...] = ()
    odd: bool = False
    non_empty: bool = False  # a string that must not be "" (an optional path: null says "none")
    path: PathKind | None = None
    keywords: tuple[str, ...] = ()  # values of a path key that are not paths

    def range_text(self) -> str:
        """The bounds in words: ``in [0, 1)``, ``>= 1``, ..."""
        low = high = ""
        if self.ge is not None or self.gt is not None:
            low = f"[{_number(self.ge)}" if self.ge is not None else f"({_number(self.gt)}"
        if self.le is not None or self.lt is not None:
            high = f"{_number(self.le)}]" if self.le is not None else f"{_number(self.lt)})"
        if low and high:
            return f"in {low}, {high}"
        if low:
            return f"{'>=' if self.ge is not None else '>'} {low[1:]}"
        return f"{'<=' if self.le is not None else '<'} {high[:-1]}"

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value``, to follow the key's name (None: nothing). Its type is
        :func:`check_type`'s, a path's existence :func:`check_paths`'."""
        if value is None:
            return None
        if self.choices and value not in self.choices:
            return f": one of {', '.join(map(str, self.choices))}, got {value!r}"
        if isinstance(value, str) and not value.strip() and self.non_empty:
            return " must not be empty" + (" (give a path, or null for none)" if self.path else "")
        if isinstance(value, int | float) and not isinstance(value, bool):
            # written so that NaN fails every bound (check_type rejects it anyway)
            within = (
                (self.ge is None or value >= self.ge)
                and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le)
                and (self.lt is None or value < self.lt)
            )
            if not within:
                return f" must be {self.range_text()}, got {value}"
            if self.odd and value % 2 != 1:
                return f" must be an odd integer, got {value}"
        return None


def _number(x: float | None) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _key(default: Any, **rule: Any) -> Any:
    """A dataclass field with ``default`` and the :class:`Rule` of its valid values."""
    return field(default=default, metadata={"rule": Rule(**rule)})


def _path(kind: PathKind, **rule: Any) -> Any:
    """An optional path key (default None) that, when set, must name an existing ``kind`` (never "")."""
    return _key(None, path=kind, non_empty=True, **rule)


#: Probability keys: [0, 1].
_FRACTION = {"ge": 0.0, "le": 1.0}

#: The seed reaches numpy (np.random.seed: [0, 2**32)) and TensorFlow.
_SEED = {"ge": 0, "le": 2**32 - 1}

POLICIES = ("max-accuracy", "max-balanced-accuracy", "no-defect-accepted", "false-reject-budget")


@dataclass(frozen=True)
class ModelConfig:
    """Which network to train and its size."""

    family: str = "resganad"  # a name of the registry (tfad.families; checked by tfad.config)
    preset: str | None = None  # None: the family's default (ResGANAD line-cpu, GRD-Net crae, ...)
    overrides: dict[str, Any] = field(default_factory=dict)  # any architecture field of the family


@dataclass(frozen=True)
class DataConfig:
    """Where the images are and how they are read."""

    root: str = _key("", path="dir")  # "" is allowed until tfad fit reads the folders (check_paths)
    layout: str = _key("auto", choices=("auto", "mvtec", "line"))
    train_split: str = _key("train", non_empty=True)
    validation_fraction: float = _key(0.1, ge=0.0, lt=1.0)
    image_size: int = _key(256, ge=16)
    channels: int = _key(1, choices=(1, 3))
    # skip (count and log) | fail (stop naming the file)
    on_corrupt: str = _key("skip", choices=("skip", "fail"))
    # A packed folder (tfad datasets pack) to train on instead of reading root/train_split; the split into
    # training and validation is made when packing: validation_fraction must be 0 and the validation set,
    # if any, is its own pack (validation_shards).
    shards: str | None = _path("dir")
    validation_shards: str | None = _path("dir")


@dataclass(frozen=True)
class SynthesisConfig:
    """Synthetic anomalies P_q (Eq. 8.11)."""

    probability: float = _key(0.75, **_FRACTION)
    beta_min: float = _key(0.5, **_FRACTION)
    beta_max: float = _key(1.0, **_FRACTION)
    max_scale_exponent: int = _key(6, ge=1, le=10)  # tfad.synthesis.anomalies' range
    texture_dir: str | None = _path("image-dir")  # anomaly-source images; random pixels when None


@dataclass(frozen=True)
class AugmentConfig:
    """Geometric augmentation (never horizontal flips)."""

    max_rotation: float = _key(math.pi / 8, ge=0.0, le=math.pi)  # radians
    vertical_flip: bool = True


@dataclass(frozen=True)
class LossWeightsConfig:
    """Generator loss weights, Eq. 8.13."""

    adversarial: float = _key(1.0, ge=0.0)
    contextual: float = _key(50.0, ge=0.0)
    latent: float = _key(1.0, ge=0.0)
    noise: float = _key(3.0, ge=0.0)
    huber: float = _key(2.0, ge=0.0)
    ssim: float = _key(1.0, ge=0.0)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation and bookkeeping."""

    epochs: int = _key(10, ge=1)
    batch_size: int = _key(32, ge=1)
    steps_per_epoch: int | None = _key(None, ge=1)  # None: one pass over the training images
    # None: the family's default (ResGANAD 1.5e-4, GRD-Net 1e-4)
    learning_rate: float | None = _key(None, gt=0.0)
    # None: the family's default (GANs 0.5, GANomaly's; supervised 0.9)
    adam_beta_1: float | None = _key(None, ge=0.0, lt=1.0)
    restart_epochs: float = _key(1.0, gt=0.0)  # ResGANAD: first cosine cycle length, in epochs
    # ResGANAD: each restart starts at this fraction of the previous rate
    restart_factor: float = _key(1.0 / 3.0, gt=0.0, le=1.0)
    loss_weights: LossWeightsConfig = field(default_factory=LossWeightsConfig)  # ResGANAD
    seed: int = _key(0, **_SEED)
    checkpoint_every_steps: int = _key(200, ge=1)
    # None: the whole validation set. At least 1: validation streams repeat, and take(-1) never ends.
    validation_steps: int | None = _key(None, ge=1)
    # Stop after this many epochs without a lower validation total loss and keep the best epoch's weights
    # (0 = off). None: the family's default (GANs 0: their validation loss does not track detection;
    # supervised families 5).
    early_stopping_patience: int | None = _key(None, ge=0)


#: Patch scores of the reconstruction models (tfad.scoring.reconstruction): ``ssim`` = 1-SSIM over the
#: patch (Eq. 8.14), ``map-max`` = max of a mean-filtered per-pixel map.
PATCH_SCORES = ("ssim", "map-max")


@dataclass(frozen=True)
class ResGANADConfig:
    """ResGANAD's patch score (Eq. 8.14 or the map-max score; docs/evaluation.md). The heatmap is always the
    min-max |X - X_hat|."""

    # ssim: 1 - SSIM(X, X_hat) over the whole patch; map-max: max of score_map after the mean filter
    patch_score: str = _key("ssim", choices=PATCH_SCORES)
    # map-max's per-pixel map: the local 1-SSIM (SSIM's 11x11 windows) or |X - X_hat|, mean over channels
    score_map: str = _key("ssim", choices=("ssim", "abs-error"))
    score_filter_size: int = _key(21, ge=1, odd=True)  # map-max: the mean filter before the max


@dataclass(frozen=True)
class GRDNetConfig:
    """GRD-Net losses, learning-rate plateau and scoring (003 Eq. 8.4-8.9, 9.1, Table 9.3)."""

    adversarial: float = _key(1.0, ge=0.0)  # L_gan = adversarial * L_adv + contextual * (l1 * L1 +
    contextual: float = _key(50.0, ge=0.0)  #         ssim * (1-SSIM)) + latent * L_enc
    latent: float = _key(1.0, ge=0.0)
    l1: float = _key(1.0, ge=0.0)
    ssim: float = _key(1.0, ge=0.0)
    roi_loss: str = "focal-intersection"  # a Table 9.3 variant (tfad.losses.discriminative; family-checked)
    focal_gamma: float = _key(2.0, ge=0.0)
    overlap_weight: float = _key(1.0, ge=0.0)  # w of the overlap terms (variants 1, 3, 4)
    # lr <- lr * plateau_factor after this many epochs without improvement
    plateau_patience_epochs: int = _key(3, ge=1)
    plateau_factor: float = _key(math.exp(-0.1), gt=0.0, le=1.0)
    # map-max: max of the anomaly map after the mean filter; ssim: 1 - SSIM(X, generator's X_hat)
    patch_score: str = _key("map-max", choices=PATCH_SCORES)
    score_filter_size: int = _key(21, ge=1, odd=True)  # map-max: score = max of the map after this filter
    inference_roi: str | None = _path("file")  # a mask image (white = inspect) multiplied into served maps


@dataclass(frozen=True)
class SupervisedConfig:
    """The supervised families (``classifier``, ``segmentation``; 003 ch. 7): labelled defects, synthetic
    defects, class weighting, pretrained weights, the segmentation loss and score."""

    # Class names, "good" first. None: from the training data (good + the defect folders / labels.csv
    # defect types, sorted, + "synthetic" when synthetic_probability > 0); tfad fit writes them into the
    # run's config.yaml. Checked by the supervised families (tfad.trainers.supervised_config).
    classes: list[str] | None = None
    # Probability that a good training image is turned into a synthetic defect by P_q (synthesis.*): its
    # class is "synthetic", its mask the Perlin mask. Needed when the training split has no labelled defects.
    synthetic_probability: float = _key(0.0, **_FRACTION)
    class_weighting: str = _key("balanced", choices=("balanced", "none"))  # balanced: w_c = N / (K n_c)
    # classifier: a local weights file, "imagenet" (download), or None
    backbone_weights: str | None = _path("file", keywords=("imagenet",))
    segmentation_loss: str = _key("dice+bce", choices=("dice+bce", "dice+focal"))  # segmentation
    focal_gamma: float = _key(2.0, ge=0.0)  # dice+focal
    score_filter_size: int = _key(21, ge=1, odd=True)  # segmentation: image score = max of the filtered mask


@dataclass(frozen=True)
class SuperSimpleNetConfig:
    """SuperSimpleNet (``model.family: supersimplenet``; 001, methods.md): regime and feature-space noise."""

    # unsupervised: good images + feature noise; supervised: + labelled defect masks; weak: + image labels
    # only (a GAP head whose CAM is the map). The supervised regimes read labelled defects like the
    # supervised families (supervised.classes).
    regime: str = _key("unsupervised", choices=("unsupervised", "supervised", "weak"))
    # std of the feature-space noise relative to each channel's std (tfad.synthesis.feature_noise: the
    # paper's absolute 0.015 suits WideResNet-50 features only)
    noise_sigma: float = _key(1.0, gt=0.0, le=10.0)
    perlin_threshold: float = _key(0.2, ge=-1.0, lt=1.0)  # Perlin noise > this: perturbed cells
    # patch score: the classification head's logit (the paper's) or the max of the blurred map's logits;
    # null: by the regime (map-max unsupervised, classification with labels: measured on magnetic_tile)
    score: str | None = _key(None, choices=("map-max", "classification"))
    # Compute the frozen backbone's features once and train on them (no rotation/flip augmentation then);
    # one device and image folders only (otherwise the image streams are used)
    cache_features: bool = True


@dataclass(frozen=True)
class GANomalyConfig:
    """GANomaly baseline (``model.family: ganomaly``; docs/baselines.md): the generator loss weights."""

    adversarial: float = _key(1.0, ge=0.0)  # L_G = adversarial * L_adv + contextual * L1 + latent * L_enc
    contextual: float = _key(50.0, ge=0.0)  # (the paper's 1, 50, 1)
    latent: float = _key(1.0, ge=0.0)


@dataclass(frozen=True)
class DRAEMConfig:
    """DRAEM baseline (``model.family: draem``; docs/baselines.md): loss and score."""

    ssim: float = _key(1.0, ge=0.0)  # L = L2 + ssim * (1 - SSIM) + focal loss (the paper's lambda = 1)
    focal_gamma: float = _key(2.0, ge=0.0)
    score_filter_size: int = _key(21, ge=1, odd=True)  # score = max of the map after this mean filter


@dataclass(frozen=True)
class AutoencoderConfig:
    """The plain convolutional autoencoder (``model.family: autoencoder``; seed 004, methods.md): training
    variant, loss weights and the patch score's alpha (docs/autoencoder.md)."""

    # plain: clean image in and out, MSE + SSIM loss; self-supervised: P_q-corrupted image in (synthesis.*),
    # the clean one as target, the masked loss (seed 004 Eq. 4)
    variant: str = _key("plain", choices=("plain", "self-supervised"))
    # plain: loss = mse_weight * MSE + ssim_weight * (1 - SSIM) (seed 004's best: alpha 0.1; not both 0)
    mse_weight: float = _key(0.1, ge=0.0)
    ssim_weight: float = _key(0.9, ge=0.0)
    # self-supervised: lambda of Eq. 4, the corrupted pixels' share of the loss (the clean ones: 1 - lambda)
    corrupted_weight: float = _key(0.9, **_FRACTION)
    # patch score = score_alpha * MSE + (1 - score_alpha) * (1 - SSIM) (seed 004 Eq. 1)
    score_alpha: float = _key(0.1, **_FRACTION)


@dataclass(frozen=True)
class AEXADConfig:
    """AE-XAD (``model.family: aexad``; 000, methods.md, docs/aexad.md): the loss's scaling and the score."""

    # F of the loss (x - x~)^2 / (F - x)^2 (the seed's 2): anomalous pixels are pushed towards it. Above 1,
    # so the denominator is never 0 for pixels in [0, 1]
    scaling: float = _key(2.0, gt=1.0, le=100.0)
    # sigma (pixels) of the Gaussian filter of the error map; 0 = off
    blur_sigma: float = _key(4.0, ge=0.0, le=64.0)
    # patch score: max or mean of the filtered error map, or area = share of its mean + std binarisation
    score: str = _key("max", choices=("max", "mean", "area"))


@dataclass(frozen=True)
class BlobConfig:
    """The blob-analysis baseline (``model.family: blob``, docs/blob.md)."""

    # tfad.families.blob.parameters fields (the blob family checks them, each named blob.parameters.<name>)
    parameters: dict[str, Any] = field(default_factory=dict)
    roi: str | None = _path("file")  # a mask image (non-zero = inspect), any size, resized to the model input
    # background "reference": median of at most this many good images
    max_reference_images: int = _key(256, ge=1)


@dataclass(frozen=True)
class CalibrationConfig:
    """Default threshold policy for ``tfad calibrate`` and run acceptance."""

    policy: str = _key("max-accuracy", choices=POLICIES)
    false_reject_budget: float | None = _key(None, ge=0.0, lt=1.0)  # required by policy false-reject-budget
    n_sigma_k: float = _key(3.0, ge=0.0)  # k of policy n-sigma (mean + k * std of good scores)
    run_k: int = _key(7, ge=1)  # at most run_n (check)
    run_n: int = _key(10, ge=1)


@dataclass(frozen=True)
class Config:
    """A whole ``tfad fit`` configuration."""

    name: str = "model"  # a folder name (check_name)
    output_dir: str = _key("runs", non_empty=True)  # "" would put the run in the working directory
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    synthesis: SynthesisConfig = field(default_factory=SynthesisConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    resganad: ResGANADConfig = field(default_factory=ResGANADConfig)
    grdnet: GRDNetConfig = field(default_factory=GRDNetConfig)
    supervised: SupervisedConfig = field(default_factory=SupervisedConfig)
    supersimplenet: SuperSimpleNetConfig = field(default_factory=SuperSimpleNetConfig)
    ganomaly: GANomalyConfig = field(default_factory=GANomalyConfig)
    draem: DRAEMConfig = field(default_factory=DRAEMConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    aexad: AEXADConfig = field(default_factory=AEXADConfig)
    blob: BlobConfig = field(default_factory=BlobConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON serialisable)."""
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> Path:
        """Where ``tfad fit`` writes this run: ``<output_dir>/<name>``."""
        return Path(self.output_dir) / self.name


def check_type(value: Any, annotation: Any, path: str) -> Any:
    """``value`` as the type ``annotation`` (an int is a float where a float is expected); ConfigError
    naming ``path`` when it is not of that type. Numbers must be finite: no key means NaN or infinity."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        if float in options and isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        for option in options:
            if option is type(None):
                continue
            try:
                return check_type(value, option, path)
            except ConfigError:
                pass
        raise ConfigError(f"{path}: expected {_type_name(annotation)}, got {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is list:
        (item,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [check_type(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
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
        if not math.isfinite(value):
            raise ConfigError(f"{path}: expected a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    return value


def _type_name(annotation: Any) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    options = typing.get_args(annotation)
    return " or ".join(names.get(option, str(option)) for option in options)


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
        kwargs[key] = check_type(value, hints[key], key_path)
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


def rules(section: Any, path: str = "") -> typing.Iterator[tuple[str, Any, Rule]]:
    """(Dotted key, value, rule) of every key of the dataclass instance ``section`` (and its sections)
    that declares a :class:`Rule`."""
    for f in dataclasses.fields(section):
        key, value = f"{path}{f.name}", getattr(section, f.name)
        if dataclasses.is_dataclass(value):
            yield from rules(value, key + ".")
        elif "rule" in f.metadata:
            yield key, value, f.metadata["rule"]


def check_rules(section: Any, path: str = "") -> None:
    """ConfigError naming the first key of ``section`` whose value breaks its :class:`Rule`."""
    for key, value, rule in rules(section, path):
        problem = rule.problem(value)
        if problem:
            raise ConfigError(f"{key}{problem}")


def check(config: Config, fits_from_shards: bool = True) -> None:
    """Every key's :class:`Rule` (all sections, also those the configured family does not read) and the
    cross-field checks of the family-independent sections, on a config whose family defaults are filled
    in; ``fits_from_shards``: whether the configured family can read ``data.shards``. Raises ConfigError
    naming the key. Files and folders are :func:`check_paths`'."""
    check_rules(config)
    if config.data.shards is not None:
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
    require(
        config.synthesis.beta_min <= config.synthesis.beta_max,
        f"synthesis.beta_min {config.synthesis.beta_min} must be <= synthesis.beta_max "
        f"{config.synthesis.beta_max}",
    )
    c = config.calibration
    require(
        c.policy != "false-reject-budget" or c.false_reject_budget is not None,
        "calibration.false_reject_budget in [0, 1) is required by the false-reject-budget policy",
    )
    require(c.run_k <= c.run_n, f"calibration.run_k must be in [1, run_n], got {c.run_k} of {c.run_n}")


def check_paths(config: Config) -> None:
    """The files and folders the config names exist (``tfad fit`` runs this before it writes anything, so a
    typo does not end a run half-way): every ``path`` key's, and ``data.root`` unless ``data.shards`` is
    set. Every path key is checked, also those the configured family does not read.

    Raises:
        FileNotFoundError: a missing path, its message naming the key.
        ConfigError: a file where a folder is expected or the reverse, a folder without images, or an empty
            ``data.root``.
    """
    require(
        bool(config.data.root) or config.data.shards is not None,
        "data.root is empty: set it to the data set folder (or train from data.shards)",
    )
    for key, value, rule in rules(config):
        if rule.path is None or not value or value in rule.keywords:
            continue
        path = Path(value)
        if not path.exists():
            raise FileNotFoundError(2, f"{key}: no such {'file' if rule.path == 'file' else 'folder'}", value)
        if rule.path == "file":
            require(path.is_file(), f"{key}: expected a file, got the folder {value}")
            continue
        require(path.is_dir(), f"{key}: expected a folder, got the file {value}")
        if rule.path == "image-dir":
            require(
                any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.rglob("*")),
                f"{key}: {value} holds no image ({', '.join(IMAGE_SUFFIXES)})",
            )


def check_entries(
    build: typing.Callable[[dict[str, Any]], Any],
    values: dict[str, Any],
    path: str,
    otherwise: str | None = None,
) -> None:
    """ConfigError naming ``path.<name>``, the entry of the mapping ``values`` that ``build`` rejects
    (ValueError/TypeError), for the keys below a mapping key (``model.overrides``, ``blob.parameters``)
    whose valid values are a family's.

    To blame: the entries without which the rest passes; else (several bad entries) one rejected on its
    own; else ``path`` ("together"). When ``build({})`` fails too, the problem is not the entries' and the
    message starts with ``otherwise`` (e.g. the data keys an architecture does not take)."""

    def problem(entries: dict[str, Any]) -> Exception | None:
        try:
            build(entries)
        except (TypeError, ValueError) as err:
            return err
        return None

    err = problem(values)
    if err is None:
        return
    # every entry without which the rest passes (a conflict between two entries names both)
    culprits = [name for name in values if problem({k: v for k, v in values.items() if k != name}) is None]
    if culprits:
        raise ConfigError(f"{' / '.join(f'{path}.{name}' for name in culprits)}: {err}") from err
    if problem({}) is None:
        for name, value in values.items():
            alone = problem({name: value})
            if alone is not None:
                raise ConfigError(f"{path}.{name}: {alone}") from alone
        raise ConfigError(f"{path} (together): {err}") from err
    raise ConfigError(f"{otherwise or path}: {err}") from err


def dump_config(config: Config, path: str | Path) -> None:
    """Write ``config`` as YAML (all keys, with defaults filled in)."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
