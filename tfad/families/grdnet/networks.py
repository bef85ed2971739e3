"""GRD-Net networks (003 s. 8.2.2.4, ch. 9): a residual GANomaly generator plus a discriminative U-Net.

Framework-level builders only; the training step lives in `tfad.families.grdnet.trainer`.

    z = E1(X*)  ->  X_hat = Dec(z)  ->  z_hat = E2(X_hat)          (reconstructive GAN, with a critic)
    A = U(concat(X_hat, X*))                                         (discriminative U-Net, anomaly map)

Each encoder stage has two residual blocks (stride 1, then stride 2). The bottleneck is either
convolutional (``"conv"``, the thesis's "CRAE": a 1x1 conv to ``code_channels`` at 8x8 for 256x256 inputs,
i.e. 32x8x8) or dense (``"dense"``, "DRAE": flatten -> Dense(``dense_dim`` = 2048)). Inference needs
E1 + decoder + U-Net; E2 and the critic only serve training.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers

from tfad.networks.blocks import (
    final_bn_relu,
    image_head,
    image_stem,
    residual_critic,
    residual_stage,
    unet,
)
from tfad.networks.generator import EncoderDecoderEncoder
from tfad.networks.presets import require_positive_ints, select_preset

BOTTLENECKS = ("conv", "dense")
ANOMALY_PRIOR = 0.01  # initial anomaly probability of every pixel of the U-Net's map


@dataclass(frozen=True)
class GRDNetArchitecture:
    """Size knobs of GRD-Net. Encoder stage ``s`` has ``base_width * 2**s`` filters."""

    image_size: int = 256
    channels: int = 1
    bottleneck: str = "conv"  # "conv" (CRAE, 32x8x8) | "dense" (DRAE, 2048)
    stem: str = "space_to_depth"
    stem_filters: int = 16
    stem_stride: int = 4
    base_width: int = 16
    stages: int = 3
    code_channels: int = 32
    dense_dim: int = 2048
    unet_stem_stride: int = 4
    unet_base_width: int = 8
    unet_depth: int = 4
    critic_base_width: int = 16
    critic_stages: int = 4

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent knob."""
        require_positive_ints(
            self,
            (
                "image_size",
                "channels",
                "stem_filters",
                "stem_stride",
                "base_width",
                "stages",
                "code_channels",
                "dense_dim",
                "unet_stem_stride",
                "unet_base_width",
                "unet_depth",
                "critic_base_width",
                "critic_stages",
            ),
        )
        if self.bottleneck not in BOTTLENECKS:
            raise ValueError(f"model.bottleneck must be one of {BOTTLENECKS}, got {self.bottleneck!r}")
        if self.stem not in ("conv", "space_to_depth"):
            raise ValueError(f"model.stem must be 'conv' or 'space_to_depth', got {self.stem!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"model.channels must be 1 or 3, got {self.channels}")
        reduction = self.stem_stride * 2**self.stages
        if self.image_size % reduction:
            raise ValueError(
                f"model.image_size {self.image_size} must be divisible by stem_stride * 2**stages "
                f"= {reduction}"
            )
        unet_reduction = self.unet_stem_stride * 2 ** (self.unet_depth - 1)
        if self.image_size % unet_reduction:
            raise ValueError(
                f"model.image_size {self.image_size} must be divisible by unet_stem_stride * "
                f"2**(unet_depth - 1) = {unet_reduction}"
            )
        if self.image_size // 4 < 2 ** (self.critic_stages - 1):
            raise ValueError(
                f"model.image_size {self.image_size} too small for {self.critic_stages} critic stages"
            )

    @property
    def stage_widths(self) -> list[int]:
        """Filters of each encoder stage."""
        return [self.base_width * 2**s for s in range(self.stages)]

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        """Shape of the last encoder feature map (before the bottleneck)."""
        side = self.image_size // (self.stem_stride * 2**self.stages)
        return side, side, self.stage_widths[-1]

    @property
    def code_shape(self) -> tuple[int, ...]:
        """Shape of the latent code z."""
        side, _, _ = self.feature_shape
        return (side, side, self.code_channels) if self.bottleneck == "conv" else (self.dense_dim,)

    def to_dict(self) -> dict:
        """Plain-dict form for configs and manifests."""
        return asdict(self)


# CPU presets (the default; a two-cycle line): pixel-unshuffle stems, encoder widths 16..64, U-Net at quarter
# resolution with widths 8..64. The thesis presets keep full-resolution stems and wider nets (GPU-sized).
PRESETS: dict[str, GRDNetArchitecture] = {
    "crae": GRDNetArchitecture(),
    "drae": GRDNetArchitecture(bottleneck="dense"),
    "thesis-crae": GRDNetArchitecture(
        stem="conv",
        stem_filters=32,
        stem_stride=1,
        base_width=32,
        stages=5,
        unet_stem_stride=1,
        unet_base_width=64,
        unet_depth=4,
        critic_base_width=32,
        critic_stages=5,
    ),
    "thesis-drae": GRDNetArchitecture(
        bottleneck="dense",
        stem="conv",
        stem_filters=32,
        stem_stride=1,
        base_width=32,
        stages=5,
        unet_stem_stride=1,
        unet_base_width=64,
        unet_depth=4,
        critic_base_width=32,
        critic_stages=5,
    ),
}


def preset(name: str, **overrides: int | str) -> GRDNetArchitecture:
    """The named preset with optional overrides; ValueError listing the presets for an unknown name."""
    return select_preset(PRESETS, name, "GRD-Net", overrides)


def build_encoder(arch: GRDNetArchitecture, name: str) -> keras.Model:
    """Residual encoder with the chosen bottleneck: image -> z ``arch.code_shape``."""
    inputs = keras.Input((arch.image_size, arch.image_size, arch.channels), name=f"{name}_input")
    x = image_stem(inputs, arch.stem, arch.stem_filters, arch.stem_stride, name)
    for s, width in enumerate(arch.stage_widths):
        x = residual_stage(x, width, 2, 2, f"{name}_s{s}", "down")
    x = final_bn_relu(x, f"{name}_out")
    if arch.bottleneck == "conv":
        z = layers.Conv2D(arch.code_channels, 1, name=f"{name}_code")(x)
    else:
        z = layers.Dense(arch.dense_dim, name=f"{name}_code")(layers.Flatten(name=f"{name}_flatten")(x))
    return keras.Model(inputs, z, name=name)


def build_decoder(arch: GRDNetArchitecture, name: str = "decoder") -> keras.Model:
    """Mirror of the encoder: z -> image in [0, 1] (sigmoid)."""
    inputs = keras.Input(arch.code_shape, name=f"{name}_input")
    side, _, width = arch.feature_shape
    if arch.bottleneck == "conv":
        x = layers.Conv2D(width, 1, name=f"{name}_expand")(inputs)
    else:
        x = layers.Dense(side * side * width, name=f"{name}_expand")(inputs)
        x = layers.Reshape((side, side, width), name=f"{name}_reshape")(x)
    for s in reversed(range(arch.stages)):
        x = residual_stage(x, arch.stage_widths[s], 2, 2, f"{name}_s{s}", "up")
    x = final_bn_relu(x, f"{name}_out")
    outputs = image_head(x, arch.stem, arch.channels, arch.stem_stride, arch.stem_filters, name)
    return keras.Model(inputs, outputs, name=name)


def build_unet(arch: GRDNetArchitecture, name: str = "unet") -> keras.Model:
    """The discriminative U-Net: concat(X_hat, X) ``[H, W, 2C]`` -> anomaly map A ``[H, W, 1]`` in (0, 1)."""
    return unet(
        arch.image_size,
        2 * arch.channels,
        arch.unet_stem_stride,
        arch.unet_base_width,
        arch.unet_depth,
        ANOMALY_PRIOR,
        name,
    )


class GRDNetNetworks(EncoderDecoderEncoder):
    """The five networks of GRD-Net: E1, decoder, E2, the critic and the discriminative U-Net."""

    def __init__(self, arch: GRDNetArchitecture) -> None:
        arch.validate()
        self.arch = arch
        self.encoder = build_encoder(arch, "encoder")
        self.decoder = build_decoder(arch)
        self.encoder2 = build_encoder(arch, "encoder2")
        self.critic = residual_critic(
            arch.image_size, arch.channels, arch.critic_base_width, arch.critic_stages
        )
        self.unet = build_unet(arch)

    def checkpoint_parts(self) -> dict[str, keras.Model]:
        """Every network, by checkpoint name."""
        return {**self.gan_checkpoint_parts(), "unet": self.unet}

    def inference_parts(self) -> dict[str, keras.Model]:
        """The networks the inference path needs (restored from a checkpoint for scoring/export)."""
        return {"encoder": self.encoder, "decoder": self.decoder, "unet": self.unet}

    def build_inference_model(self) -> keras.Model:
        """Image -> ``{"reconstruction": X_hat, "anomaly_map": A}`` (E1 -> decoder -> U-Net) as one model."""
        size, channels = self.arch.image_size, self.arch.channels
        inputs = keras.Input((size, size, channels), name="image")
        reconstruction = self.decoder(self.encoder(inputs))
        anomaly_map = self.unet(layers.Concatenate(name="unet_input")([reconstruction, inputs]))
        return keras.Model(
            inputs, {"reconstruction": reconstruction, "anomaly_map": anomaly_map}, name="grdnet"
        )

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the inference path, the generator, the critic and the U-Net."""
        return {**self.gan_parameter_counts(), "unet": int(self.unet.count_params())}
