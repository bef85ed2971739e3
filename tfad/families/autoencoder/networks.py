"""The plain convolutional autoencoder's networks (seed 004, methods.md): architecture, presets, builders.

    X -> encoder (``stages`` strided convolutions, each halving H and W) -> bottleneck -> decoder
      (``stages`` strided transposed convolutions) -> 3x3 conv + sigmoid -> X_hat in [0, 1]

The bottleneck is a dense latent vector (``bottleneck: dense``, the seed's Model I: flatten -> Dense(latent)
-> Dense -> reshape) or a spatial code (``conv``: a 1x1 convolution to ``latent_dim`` channels and back, the
seed's "volumetric" variant). Too wide a bottleneck lets the network copy its input, defects included (seed
004, s. 6): the presets keep it narrow. Functional Keras models only; training is
:mod:`tfad.families.autoencoder.trainer`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers

from tfad.networks.presets import require_positive_ints, select_preset

BOTTLENECKS = ("dense", "conv")
# BatchNorm momentum 0.9, as tfad.networks.blocks: with Keras's 0.99 the inference statistics lag the
# training ones by hundreds of steps and short CPU trainings serve flat reconstructions.
_BN_MOMENTUM = 0.9
_LEAK = 0.2


@dataclass(frozen=True)
class AutoencoderArchitecture:
    """Size knobs of the plain autoencoder. Stage ``s`` has ``min(base_width * 2**s, max_width)`` filters."""

    image_size: int = 256
    channels: int = 1
    base_width: int = 8
    max_width: int = 128
    stages: int = 5
    kernel_size: int = 4  # even: a stride-2 transposed convolution then covers every output pixel equally
    convs_per_stage: int = 0  # extra stride-1 convolutions after each strided one (encoder and decoder)
    bottleneck: str = "dense"
    latent_dim: int = 128  # dense: the latent vector's size; conv: the code's channels

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent knob."""
        require_positive_ints(
            self, ("image_size", "channels", "base_width", "max_width", "stages", "kernel_size", "latent_dim")
        )
        if not isinstance(self.convs_per_stage, int) or isinstance(self.convs_per_stage, bool):
            raise ValueError(f"model.convs_per_stage must be an integer, got {self.convs_per_stage!r}")
        if self.convs_per_stage < 0:
            raise ValueError(f"model.convs_per_stage must be >= 0, got {self.convs_per_stage}")
        if self.bottleneck not in BOTTLENECKS:
            raise ValueError(f"model.bottleneck must be one of {BOTTLENECKS}, got {self.bottleneck!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"model.channels must be 1 or 3, got {self.channels}")
        if self.max_width < self.base_width:
            raise ValueError(f"model.max_width {self.max_width} must be >= base_width {self.base_width}")
        if self.image_size % 2**self.stages:
            raise ValueError(
                f"model.image_size {self.image_size} must be divisible by 2**stages = {2**self.stages}"
            )

    @property
    def stage_widths(self) -> list[int]:
        """Filters of each encoder stage."""
        return [min(self.base_width * 2**s, self.max_width) for s in range(self.stages)]

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """Shape of the last encoder feature map (before the bottleneck)."""
        side = self.image_size // 2**self.stages
        return side, side, self.stage_widths[-1]

    def to_dict(self) -> dict:
        """Plain-dict form for configs and manifests."""
        return asdict(self)


# `line`: sized for a 2-core CPU line PC (0.186 GFLOP per 256x256 grayscale patch, the inference path,
# tfad.networks.flops; ResGANAD line-cpu is 0.126). `wide`: the same topology twice as wide (0.707 GFLOP),
# the accuracy reference for `line`. `seed`: the seed's Architecture 3 sizes (C_base 64, z 128, six
# down-sampling stages; plain convolutions instead of its residual blocks), 20.5 GFLOP: a GPU model.
PRESETS: dict[str, AutoencoderArchitecture] = {
    "line": AutoencoderArchitecture(),
    "wide": AutoencoderArchitecture(base_width=16, max_width=256),
    "seed": AutoencoderArchitecture(base_width=64, max_width=512, stages=6, convs_per_stage=1),
}


def preset(name: str, **overrides: object) -> AutoencoderArchitecture:
    """The named preset with optional overrides; ValueError listing the presets for an unknown name."""
    return select_preset(PRESETS, name, "autoencoder", overrides)


def _conv_block(x: keras.KerasTensor, conv: layers.Layer, name: str) -> keras.KerasTensor:
    # conv -> BN -> LeakyReLU (no bias: BatchNorm's offset replaces it)
    x = conv(x)
    x = layers.BatchNormalization(momentum=_BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.LeakyReLU(_LEAK, name=f"{name}_act")(x)


def _refine(x: keras.KerasTensor, arch: AutoencoderArchitecture, width: int, name: str) -> keras.KerasTensor:
    # the stride-1 convolutions of a stage
    for i in range(arch.convs_per_stage):
        conv = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"{name}_refine{i}")
        x = _conv_block(x, conv, f"{name}_refine{i}")
    return x


def build_encoder(arch: AutoencoderArchitecture, name: str = "encoder") -> keras.Model:
    """Strided convolutions and the bottleneck: image -> code (``[latent_dim]`` or ``[h, w, latent_dim]``)."""
    x = inputs = keras.Input((arch.image_size, arch.image_size, arch.channels), name=f"{name}_input")
    for s, width in enumerate(arch.stage_widths):
        conv = layers.Conv2D(
            width, arch.kernel_size, strides=2, padding="same", use_bias=False, name=f"{name}_s{s}_down"
        )
        x = _conv_block(x, conv, f"{name}_s{s}_down")
        x = _refine(x, arch, width, f"{name}_s{s}")
    if arch.bottleneck == "dense":
        x = layers.Flatten(name=f"{name}_flatten")(x)
        code = layers.Dense(arch.latent_dim, name=f"{name}_latent")(x)
    else:
        code = layers.Conv2D(arch.latent_dim, 1, name=f"{name}_latent")(x)
    return keras.Model(inputs, code, name=name)


def build_decoder(arch: AutoencoderArchitecture, name: str = "decoder") -> keras.Model:
    """The encoder's mirror with strided transposed convolutions: code -> image in [0, 1] (sigmoid)."""
    side, _, width = arch.code_shape
    if arch.bottleneck == "dense":
        x = inputs = keras.Input((arch.latent_dim,), name=f"{name}_input")
        x = layers.Dense(side * side * width, name=f"{name}_expand")(x)
        x = layers.Reshape((side, side, width), name=f"{name}_reshape")(x)
        x = layers.LeakyReLU(_LEAK, name=f"{name}_expand_act")(x)
    else:
        x = inputs = keras.Input((side, side, arch.latent_dim), name=f"{name}_input")
        x = _conv_block(x, layers.Conv2D(width, 1, use_bias=False, name=f"{name}_expand"), f"{name}_expand")
    widths = arch.stage_widths
    for s in reversed(range(arch.stages)):
        x = _refine(x, arch, widths[s], f"{name}_s{s}")
        out_width = widths[s - 1] if s > 0 else arch.base_width
        conv = layers.Conv2DTranspose(
            out_width, arch.kernel_size, strides=2, padding="same", use_bias=False, name=f"{name}_s{s}_up"
        )
        x = _conv_block(x, conv, f"{name}_s{s}_up")
    outputs = layers.Conv2D(arch.channels, 3, padding="same", activation="sigmoid", name=f"{name}_image")(x)
    return keras.Model(inputs, outputs, name=name)


class AutoencoderNetworks:
    """The encoder and the decoder (each a Keras model held as an attribute, so checkpoints track it)."""

    def __init__(self, arch: AutoencoderArchitecture) -> None:
        arch.validate()
        self.arch = arch
        self.encoder = build_encoder(arch)
        self.decoder = build_decoder(arch)

    @property
    def trainable_variables(self) -> list:
        """Trainable variables of the encoder and the decoder."""
        return self.encoder.trainable_variables + self.decoder.trainable_variables

    def checkpoint_parts(self) -> dict[str, keras.Model]:
        """Every network, by checkpoint name."""
        return {"encoder": self.encoder, "decoder": self.decoder}

    def inference_parts(self) -> dict[str, keras.Model]:
        """The networks the inference path needs (both)."""
        return self.checkpoint_parts()

    def build_inference_model(self) -> keras.Model:
        """Encoder -> decoder as one model: image -> reconstruction."""
        inputs = keras.Input((self.arch.image_size, self.arch.image_size, self.arch.channels), name="image")
        return keras.Model(inputs, self.decoder(self.encoder(inputs)), name="reconstructor")

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the inference path (= everything trained)."""
        return {"inference": int(self.build_inference_model().count_params())}
