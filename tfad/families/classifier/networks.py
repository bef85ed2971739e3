"""Supervised classifier networks (003 ch. 7, appendix A): a CNN backbone plus a softmax head over classes.

Framework-level builders only; training lives in `tfad.training`, Grad-CAM and the serving contract in
`tfad.families.classifier.gradcam`. The classifier is split at the Grad-CAM layer:

    A = backbone(X)          X [H, W, C] in [0, 1] -> the last conv feature map A [h, w, k] (h = H / 32)
    logits = head(A)         GlobalAveragePooling2D -> Dropout -> Dense(num_classes) (no softmax)

Class 0 is "good" (the package's label convention); the other classes are defect classes (e.g. glass
defect, particle/cake defect). Backbones (the thesis's): ``resnet18`` (written here: Keras has none),
``mobilenetv3-small`` / ``mobilenetv3-large`` / ``resnet50v2`` (``keras.applications``). Every backbone takes
images in [0, 1]; the application's own input scaling is a layer inside the model.

Pretrained weights (``backbone_weights`` / ``weights``): ``None`` trains from scratch; a local file path
loads that file (the weights of the feature network: a ``.weights.h5`` file of :func:`build_resnet18`'s
model, or any file ``keras.applications`` accepts as ``weights=`` for the application, e.g. its ImageNet
``*_no_top*.h5`` copied to an offline machine, or ``backbone.save_weights(...)`` of a backbone built here);
``"imagenet"`` is the framework's download (applications only, and only where the machine is online).
Pretrained resnet18 weights (e.g. converted from torchvision) must expect images in [0, 1]: the model has
no mean/std normalisation layer.

Grey input (``channels == 1``): trained from scratch, the network takes 1 channel directly (cheaper stem).
With pretrained weights of a 3-channel network, the grey channel is replicated to 3 inside the model (a
``grey_to_rgb`` layer) and the 3-channel network is built; a file saved from a 1-channel network (a grey
backbone trained here) is loaded into the 1-channel network as is. The structure built is
``ClassifierNetworks.replicates_grey``; rebuild with ``replicate_grey=True`` to restore a checkpoint of a
replicating backbone without the original weights file.

Presets (GFLOP per 256x256x1 patch, from scratch, ``tfad.networks.flops.count_flops`` of the inference model):
``resnet18`` 4.53 (the thesis backbone, base_width 64, GPU-sized), ``resnet18-small`` 0.30 (base_width 16,
for the 2-core line PC), ``mobilenetv3-small`` 0.134, ``mobilenetv3-large`` 0.549, ``resnet50v2`` 8.89.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
from keras import layers

from tfad.networks.presets import require_positive_ints, select_preset

BACKBONES = ("resnet18", "mobilenetv3-small", "mobilenetv3-large", "resnet50v2")
OUTPUT_STRIDE = 32  # every backbone halves the resolution five times: the feature map is H/32 x W/32
# names of the two nested models inside build_inference_model()'s model (score_classifier finds them by name)
BACKBONE_NAME, HEAD_NAME = "backbone", "head"
GREY_TO_RGB = "grey_to_rgb"  # the layer that replicates a grey image to 3 channels (pretrained grey nets)
IMAGENET = "imagenet"

# BatchNormalization of resnet18: PyTorch's defaults (momentum 0.9, eps 1e-5), as the rest of the package.
_BN = dict(momentum=0.9, epsilon=1e-5)


@dataclass(frozen=True)
class ClassifierArchitecture:
    """Size knobs of the supervised classifier (backbone + GAP/dropout/dense head)."""

    image_size: int = 256
    channels: int = 1  # 1 (grey) or 3
    num_classes: int = 2  # softmax classes; class 0 is "good" by the package's convention
    backbone: str = "resnet18"  # one of BACKBONES
    base_width: int = 64  # resnet18 only: stage widths base_width * (1, 2, 4, 8)
    alpha: float = 1.0  # mobilenetv3 width multiplier (keras.applications' alpha)
    dropout: float = 0.2  # before the dense head

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent knob."""
        require_positive_ints(self, ("image_size", "channels", "num_classes", "base_width"))
        if self.backbone not in BACKBONES:
            raise ValueError(f"model.backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"model.channels must be 1 or 3, got {self.channels}")
        if self.num_classes < 2:
            raise ValueError(f"model.num_classes must be >= 2 (class 0 = good), got {self.num_classes}")
        if self.image_size < OUTPUT_STRIDE or self.image_size % OUTPUT_STRIDE:
            raise ValueError(
                f"model.image_size {self.image_size} must be >= {OUTPUT_STRIDE} and divisible by "
                f"{OUTPUT_STRIDE} (the backbone's output stride)"
            )
        if not _is_real(self.alpha) or not (self.alpha > 0 and math.isfinite(self.alpha)):
            raise ValueError(f"model.alpha must be a positive number, got {self.alpha!r}")
        if not _is_real(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be a number in [0, 1), got {self.dropout!r}")

    @property
    def feature_side(self) -> int:
        """Side h = w of the feature map A (the Grad-CAM resolution)."""
        return self.image_size // OUTPUT_STRIDE

    @property
    def stage_widths(self) -> list[int]:
        """resnet18's stage widths (``base_width * (1, 2, 4, 8)``)."""
        return [self.base_width * m for m in (1, 2, 4, 8)]

    def to_dict(self) -> dict:
        """Plain-dict form for configs and manifests."""
        return asdict(self)


def _is_real(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# Presets: inference GFLOP per 256x256x1 patch, from scratch (1-channel stems; a replicated grey input costs
# the 3-channel stem on top), by count_flops(ClassifierNetworks(preset(name)).build_inference_model()),
# multiply-add = 2. Grad-CAM adds only the head's backward pass (GAP + Dense: negligible).
#   resnet18           4.53   the thesis backbone (base_width 64); GPU-sized: a 60-patch product is 272 GFLOP,
#                             1.7 s on the 2-core line PC even at 100 % of its 157 GFLOP/s peak
#   resnet18-small     0.30   base_width 16 (widths 16..128): inside the line PC's 0.05-0.5 GFLOP/patch budget
#   mobilenetv3-small  0.134  keras.applications.MobileNetV3Small, alpha 1.0
#   mobilenetv3-large  0.549  keras.applications.MobileNetV3Large, alpha 1.0
#   resnet50v2         8.89   keras.applications.ResNet50V2
# (Depthwise convolutions reach a far lower share of a CPU's peak than dense ones: time MobileNets.)
PRESETS: dict[str, ClassifierArchitecture] = {
    "resnet18": ClassifierArchitecture(),
    "resnet18-small": ClassifierArchitecture(base_width=16),
    "mobilenetv3-small": ClassifierArchitecture(backbone="mobilenetv3-small"),
    "mobilenetv3-large": ClassifierArchitecture(backbone="mobilenetv3-large"),
    "resnet50v2": ClassifierArchitecture(backbone="resnet50v2"),
}


def preset(name: str, **overrides) -> ClassifierArchitecture:
    """The named preset with optional overrides; ValueError listing the presets for an unknown name."""
    return select_preset(PRESETS, name, "classifier", overrides)


# ----------------------------------------------------------------------------------------------- resnet18
def _conv(x, filters: int, kernel: int, stride: int, name: str):
    """Conv without bias (BN follows) with PyTorch/He et al. padding (kernel // 2 on every side), so a
    strided convolution samples the same pixels as the reference implementation (TF "same" pads
    asymmetrically for even sizes)."""
    if stride > 1 and kernel > 1:
        x = layers.ZeroPadding2D(kernel // 2, name=f"{name}_pad")(x)
        padding = "valid"
    else:
        padding = "same"
    return layers.Conv2D(
        filters,
        kernel,
        strides=stride,
        padding=padding,
        use_bias=False,
        kernel_initializer="he_normal",
        name=name,
    )(x)


def _basic_block(x, filters: int, stride: int, name: str):
    """He et al. 2016 basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, + shortcut, ReLU. The shortcut is the
    identity, or a 1x1 (strided) conv + BN projection where the shape changes."""
    y = _conv(x, filters, 3, stride, f"{name}_conv1")
    y = layers.BatchNormalization(**_BN, name=f"{name}_bn1")(y)
    y = layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(y, filters, 3, 1, f"{name}_conv2")
    y = layers.BatchNormalization(**_BN, name=f"{name}_bn2")(y)
    if stride != 1 or x.shape[-1] != filters:
        x = _conv(x, filters, 1, stride, f"{name}_proj")
        x = layers.BatchNormalization(**_BN, name=f"{name}_proj_bn")(x)
    y = layers.Add(name=f"{name}_add")([x, y])
    return layers.ReLU(name=f"{name}_out")(y)


def _resnet18_features(x, base_width: int):
    x = _conv(x, base_width, 7, 2, "conv1")
    x = layers.BatchNormalization(**_BN, name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    # zero padding before the max-pool equals PyTorch's -inf padding here: its input is >= 0 (after ReLU)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for stage, multiple in enumerate((1, 2, 4, 8), start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            x = _basic_block(x, base_width * multiple, stride, f"layer{stage}_block{block}")
    return x


def build_resnet18(
    image_size: int, channels: int, base_width: int = 64, name: str = "resnet18"
) -> keras.Model:
    """ResNet-18 (He et al. 2016) feature extractor: image ``[H, W, C]`` in [0, 1] -> ``[H/32, W/32, 8 w]``.

    7x7/2 stem conv (``base_width`` filters) + BN + ReLU + 3x3/2 max-pool, then 4 stages of 2 basic blocks
    with widths ``base_width * (1, 2, 4, 8)`` (stages 2-4 stride their first block, with a 1x1 conv + BN
    projection shortcut): 20 convolutions (17 on the main path, 3 projections). The output is the last
    stage's feature map after its final ReLU (layer ``layer4_block1_out``, the Grad-CAM layer); no pooling
    or classifier. At 224x224x3 with ``base_width`` 64 it is torchvision's ``resnet18`` without ``fc``
    (11.18 M trainable parameters, 1.82 G multiply-adds). No input normalisation: images in [0, 1] go
    straight into the stem (its BN absorbs the scale). Seeded initialisation is the caller's business
    (``keras.utils.set_random_seed``).
    """
    inputs = keras.Input((image_size, image_size, channels), name="image")
    return keras.Model(inputs, _resnet18_features(inputs, base_width), name=name)


# ----------------------------------------------------------------------------------------------- backbones
def _weights_source(weights: str | Path | None) -> str | None:
    """None, "imagenet" or an existing file's path; FileNotFoundError naming a missing file."""
    if weights is None or weights == IMAGENET:
        return weights
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(2, "classifier backbone weights file not found", str(path))
    return str(path)


class _WeightsDoNotFit(Exception):
    """Loading a weights file into a candidate structure failed (the file does not fit it)."""


def _build_structure(arch: ClassifierArchitecture, source: str | None, replicate: bool) -> keras.Model:
    size = arch.image_size
    inputs = keras.Input((size, size, arch.channels), name="image")
    x = layers.Concatenate(axis=-1, name=GREY_TO_RGB)([inputs, inputs, inputs]) if replicate else inputs
    net_channels = 3 if replicate else arch.channels
    is_file = source not in (None, IMAGENET)
    try:
        if arch.backbone == "resnet18":
            model = keras.Model(inputs, _resnet18_features(x, arch.base_width), name=BACKBONE_NAME)
            if is_file:
                model.load_weights(source)
            return model
        # The application is built on top of our input (input_tensor=...): one flat functional model whose
        # weighted layers are exactly the application's, so the application's own weight files load into
        # it, and so do files saved from a backbone built here (the extra layers hold no weights).
        common = dict(
            input_shape=(size, size, net_channels),
            include_top=False,
            weights=source,
            pooling=None,
        )
        if arch.backbone.startswith("mobilenetv3"):
            # include_preprocessing: the application rescales [0, 255] -> [-1, 1] itself
            x = layers.Rescaling(255.0, name="input_to_0_255")(x)
            application = (
                keras.applications.MobileNetV3Small
                if arch.backbone == "mobilenetv3-small"
                else keras.applications.MobileNetV3Large
            )
            model = application(input_tensor=x, alpha=arch.alpha, include_preprocessing=True, **common)
        else:
            # ResNet50V2 expects [-1, 1] (keras.applications.resnet_v2.preprocess_input, mode "tf")
            x = layers.Rescaling(2.0, offset=-1.0, name="input_to_pm1")(x)
            model = keras.applications.ResNet50V2(input_tensor=x, **common)
        # The package's BatchNorm momentum (0.9, tfad.networks.blocks) instead of the applications' 0.999
        # (MobileNetV3) / 0.99 (ResNet50V2): with those the moving statistics that inference uses lag the
        # training ones by hundreds to thousands of steps, far longer than a line's training budget.
        for layer in model.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.momentum = _BN["momentum"]
        # the same layers (and weights), re-wrapped with a single (not list) input like every tfad model
        return keras.Model(inputs, model.output, name=BACKBONE_NAME)
    except Exception as error:  # any failure while loading a file means "does not fit"
        if not is_file:
            raise
        raise _WeightsDoNotFit(f"{type(error).__name__}: {_first_lines(str(error))}") from error


def _first_lines(message: str, limit: int = 400) -> str:
    message = message.split("Target variable:")[0]  # Keras appends the variable's values
    message = " ".join(line.strip() for line in message.strip().splitlines()[:4] if line.strip())
    return message if len(message) <= limit else message[: limit - 3] + "..."


def build_backbone(
    arch: ClassifierArchitecture, weights: str | Path | None = None, *, replicate_grey: bool | None = None
) -> keras.Model:
    """The backbone: image ``[H, W, C]`` in [0, 1] -> last conv feature map A ``[H/32, W/32, k]``.

    ``resnet18``: :func:`build_resnet18` (``base_width``). The others: ``keras.applications``
    MobileNetV3Small / MobileNetV3Large (``alpha``, ``include_preprocessing``: a ``[0, 1] -> [0, 255]``
    rescaling layer is put in front) / ResNet50V2 (a ``[0, 1] -> [-1, 1]`` rescaling layer), with
    ``include_top=False, pooling=None``; A is the application's last conv map (576 / 960 / 2048 channels).
    Every BatchNormalization layer uses momentum 0.9 (the package's; the applications default to 0.999 /
    0.99, whose inference statistics lag training by thousands of steps).

    Args:
        weights: ``None`` (from scratch), a local weights file (see the module docstring), or
            ``"imagenet"`` (the framework's download; keras.applications backbones, online machines only).
        replicate_grey: the grey-input structure. ``None`` (automatic): with ``channels == 1``, replicate the
            grey channel to a 3-channel network for ImageNet weights, and for a weights file that fits the
            3-channel network; otherwise (from scratch, or a file of a 1-channel network) build 1 channel.
            ``True`` / ``False`` force the structure (e.g. ``True`` to rebuild a replicating backbone for a
            checkpoint restore without its original weights file).

    Raises:
        FileNotFoundError: ``weights`` names a missing file.
        ValueError: a bad architecture knob, ``"imagenet"`` for resnet18, ``replicate_grey`` with 3
            channels, or a weights file that does not fit the backbone (naming the file and the problem).
    """
    arch.validate()
    source = _weights_source(weights)
    if source == IMAGENET and arch.backbone == "resnet18":
        raise ValueError(
            "backbone weights 'imagenet': Keras has no ResNet18 download; pass a .weights.h5 file of "
            "build_resnet18(image_size, 3) instead"
        )
    if replicate_grey and arch.channels != 1:
        raise ValueError(f"replicate_grey needs model.channels 1, got {arch.channels}")
    if arch.channels == 3:
        candidates = [False]
    elif replicate_grey is not None:
        candidates = [bool(replicate_grey)]
    elif source is None:
        candidates = [False]
    elif source == IMAGENET:
        candidates = [True]
    else:
        candidates = [True, False]  # a 3-channel (ImageNet-style) file, else a grey network's file
    problems = []
    for replicate in candidates:
        try:
            # Keras warns about every group it cannot match while a file fails to load: noise for a
            # candidate structure that is rejected anyway; the warnings of the one that loads are re-issued.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model = _build_structure(arch, source, replicate)
            for warning in caught:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
            return model
        except _WeightsDoNotFit as problem:
            structure = "3-channel network fed the replicated grey" if replicate else "1-channel network"
            if arch.channels == 3:
                structure = "3-channel network"
            problems.append(f"as a {structure}: {problem}")
    raise ValueError(
        f"backbone weights file {source} does not fit the {arch.backbone} backbone "
        f"(image_size {arch.image_size}, channels {arch.channels}"
        + (f", base_width {arch.base_width}" if arch.backbone == "resnet18" else "")
        + (f", alpha {arch.alpha}" if arch.backbone.startswith("mobilenetv3") else "")
        + "); "
        + "; ".join(problems)
    )


def build_head(feature_shape: tuple[int, int, int], num_classes: int, dropout: float) -> keras.Model:
    """A ``[h, w, k]`` -> logits ``[num_classes]``: GlobalAveragePooling2D -> Dropout -> Dense, no softmax."""
    inputs = keras.Input(tuple(feature_shape), name="features")
    x = layers.GlobalAveragePooling2D(name="head_pool")(inputs)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    logits = layers.Dense(num_classes, name="head_logits")(x)
    return keras.Model(inputs, logits, name=HEAD_NAME)


class ClassifierNetworks:
    """backbone (image -> feature map A, the Grad-CAM layer) + head (A -> logits).

    ``backbone_weights``: see :func:`build_backbone` (``None`` = from scratch); ``replicate_grey`` likewise.
    """

    def __init__(
        self,
        arch: ClassifierArchitecture,
        backbone_weights: str | Path | None = None,
        *,
        replicate_grey: bool | None = None,
    ) -> None:
        arch.validate()
        self.arch = arch
        self.backbone = build_backbone(arch, backbone_weights, replicate_grey=replicate_grey)
        self.head = build_head(tuple(self.backbone.output.shape[1:]), arch.num_classes, arch.dropout)

    @property
    def replicates_grey(self) -> bool:
        """Whether the backbone replicates a grey input to a 3-channel network (pretrained grey nets)."""
        return any(layer.name == GREY_TO_RGB for layer in self.backbone.layers)

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """Shape ``(h, w, k)`` of the feature map A."""
        return tuple(int(d) for d in self.backbone.output.shape[1:])

    def checkpoint_parts(self) -> dict[str, keras.Model]:
        """Every network, by checkpoint name."""
        return {"backbone": self.backbone, "head": self.head}

    def inference_parts(self) -> dict[str, keras.Model]:
        """The networks the inference path needs (all of them)."""
        return {"backbone": self.backbone, "head": self.head}

    def build_inference_model(self) -> keras.Model:
        """Image ``[H, W, C]`` in [0, 1] -> ``{"features": A, "logits": logits}``: one functional model
        calling ``self.backbone`` and ``self.head`` (shared weights)."""
        size, channels = self.arch.image_size, self.arch.channels
        inputs = keras.Input((size, size, channels), name="image")
        features = self.backbone(inputs)
        logits = self.head(features)
        return keras.Model(inputs, {"features": features, "logits": logits}, name="classifier")

    def parameter_counts(self) -> dict[str, int]:
        """Parameters (including BN statistics) of the inference path, the backbone and the head."""
        backbone, head = int(self.backbone.count_params()), int(self.head.count_params())
        return {"inference": backbone + head, "backbone": backbone, "head": head}

    @property
    def trainable_variables(self) -> list:
        """Trainable variables of the backbone and the head."""
        return list(self.backbone.trainable_variables) + list(self.head.trainable_variables)
