"""ResGANAD networks (003 s. 8.2.2.5, ch. 10): the wide residual autoencoder generator and its critic.

Framework-level builders only (functional Keras models); the adversarial training lives in
`tfad.families.resganad.trainer`. The generator is GANomaly's encoder-decoder-encoder:

    z = E1(X*)  ->  X_hat = Dec(z)  ->  z_hat = E2(X_hat)

E1 and E2 are wide residual networks of identical architecture and separate weights; the bottleneck is
dense (flatten -> Dense(latent) -> Dense -> reshape). Inference needs only E1 + Dec.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers

from tfad.networks.blocks import final_bn_relu, image_head, image_stem, residual_critic, residual_stage
from tfad.networks.generator import EncoderDecoderEncoder
from tfad.networks.presets import require_positive_ints, select_preset


@dataclass(frozen=True)
class ResGANADArchitecture:
    """Size knobs of ResGANAD. Stage ``s`` has ``base_width * widening * 2**s`` filters."""

    image_size: int = 256
    channels: int = 1
    stem: str = "space_to_depth"  # "conv": strided 3x3 conv (the thesis); "space_to_depth": pixel-unshuffle
    stem_filters: int = 16
    stem_stride: int = 4
    base_width: int = 16
    widening: int = 1
    stages: int = 4
    blocks_per_stage: int = 1
    convs_per_block: int = 2
    latent_dim: int = 64
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
                "widening",
                "stages",
                "blocks_per_stage",
                "convs_per_block",
                "latent_dim",
                "critic_base_width",
                "critic_stages",
            ),
        )
        if self.stem not in ("conv", "space_to_depth"):
            raise ValueError(f"model.stem must be 'conv' or 'space_to_depth', got {self.stem!r}")
        if self.channels not in (1, 3):
            raise ValueError(f"model.channels must be 1 or 3, got {self.channels}")
        reduction = self.stem_stride * 2**self.stages
        if self.image_size % reduction:
            raise ValueError(
                f"model.image_size {self.image_size} must be divisible by stem_stride * 2**stages = "
                f"{reduction}"
            )
        if self.image_size // 2**self.critic_stages < 1 or self.image_size < 16:
            raise ValueError(
                f"model.image_size {self.image_size} too small for {self.critic_stages} critic stages"
            )

    @property
    def stage_widths(self) -> list[int]:
        """Filters of each encoder stage."""
        return [self.base_width * self.widening * 2**s for s in range(self.stages)]

    @property
    def code_shape(self) -> tuple[int, int, int]:
        """Shape of the last encoder feature map (before the dense bottleneck)."""
        side = self.image_size // (self.stem_stride * 2**self.stages)
        return side, side, self.stage_widths[-1]

    def to_dict(self) -> dict:
        """Plain-dict form for configs and manifests."""
        return asdict(self)


# `thesis`: the documented network (4 stages x 3 blocks x 3 convs, stem stride 1, 16x16x1024 at 256x256);
# the thesis ran it on a GPU. `line-cpu`: sized for a 2-core CPU line PC (see README for FLOPs/accuracy).
# `line-cpu-wide`: the same topology twice as wide, the accuracy reference for `line-cpu`.
PRESETS: dict[str, ResGANADArchitecture] = {
    "thesis": ResGANADArchitecture(
        stem="conv",
        stem_filters=64,
        stem_stride=1,
        base_width=64,
        widening=2,
        stages=4,
        blocks_per_stage=3,
        convs_per_block=3,
        latent_dim=64,
        critic_base_width=32,
        critic_stages=5,
    ),
    "line-cpu": ResGANADArchitecture(),
    "line-cpu-wide": ResGANADArchitecture(stem_filters=16, widening=2),
}


def preset(name: str, **overrides: int) -> ResGANADArchitecture:
    """The named preset with optional overrides; ValueError listing the presets for an unknown name."""
    return select_preset(PRESETS, name, "ResGANAD", overrides)


def build_encoder(arch: ResGANADArchitecture, name: str) -> keras.Model:
    """Wide residual encoder with the dense bottleneck: image -> z ``[latent_dim]``."""
    inputs = keras.Input((arch.image_size, arch.image_size, arch.channels), name=f"{name}_input")
    x = image_stem(inputs, arch.stem, arch.stem_filters, arch.stem_stride, name)
    for s, width in enumerate(arch.stage_widths):
        x = residual_stage(x, width, arch.blocks_per_stage, arch.convs_per_block, f"{name}_s{s}", "down")
    x = final_bn_relu(x, f"{name}_out")
    x = layers.Flatten(name=f"{name}_flatten")(x)
    z = layers.Dense(arch.latent_dim, name=f"{name}_latent")(x)
    return keras.Model(inputs, z, name=name)


def build_decoder(arch: ResGANADArchitecture, name: str = "decoder") -> keras.Model:
    """Mirror of the encoder with transposed convolutions: z -> image in [0, 1] (sigmoid)."""
    inputs = keras.Input((arch.latent_dim,), name=f"{name}_input")
    side, _, width = arch.code_shape
    x = layers.Dense(side * side * width, name=f"{name}_expand")(inputs)
    x = layers.Reshape((side, side, width), name=f"{name}_reshape")(x)
    for s in reversed(range(arch.stages)):
        x = residual_stage(
            x, arch.stage_widths[s], arch.blocks_per_stage, arch.convs_per_block, f"{name}_s{s}", "up"
        )
    x = final_bn_relu(x, f"{name}_out")
    outputs = image_head(x, arch.stem, arch.channels, arch.stem_stride, arch.stem_filters, name)
    return keras.Model(inputs, outputs, name=name)


class ResGANADNetworks(EncoderDecoderEncoder):
    """The four networks of ResGANAD: E1, decoder, E2 and the critic."""

    def __init__(self, arch: ResGANADArchitecture) -> None:
        arch.validate()
        self.arch = arch
        self.encoder = build_encoder(arch, "encoder")
        self.decoder = build_decoder(arch)
        self.encoder2 = build_encoder(arch, "encoder2")
        self.critic = residual_critic(
            arch.image_size, arch.channels, arch.critic_base_width, arch.critic_stages
        )

    def checkpoint_parts(self) -> dict[str, keras.Model]:
        """Every network, by checkpoint name."""
        return self.gan_checkpoint_parts()

    def inference_parts(self) -> dict[str, keras.Model]:
        """The networks the inference path needs (restored from a checkpoint for scoring/export)."""
        return {"encoder": self.encoder, "decoder": self.decoder}

    def build_inference_model(self) -> keras.Model:
        """The inference path E1 -> decoder as one model: image -> reconstruction."""
        inputs = keras.Input((self.arch.image_size, self.arch.image_size, self.arch.channels), name="image")
        return keras.Model(inputs, self.decoder(self.encoder(inputs)), name="reconstructor")

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the inference path, the generator (E1 + decoder + E2) and the critic."""
        return self.gan_parameter_counts()
