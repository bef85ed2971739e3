"""GANomaly networks (003 s. 8.2.2.1; Akcay et al. 2018): the encoder-decoder-encoder generator and the
discriminator, DCGAN-style (plain 4x4 stride-2 convolutions, :mod:`tfad.networks.plain`).

    z = G_E(X)  ->  X_hat = G_D(z)  ->  z_hat = E(X_hat)

E has G_E's architecture and its own weights. Inference runs all three: the score is the latent distance
||z - z_hat||^2, the heatmap |X - X_hat|.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras

from tfad.networks.generator import EncoderDecoderEncoder
from tfad.networks.plain import dcgan_decoder, dcgan_discriminator, dcgan_encoder
from tfad.networks.presets import require_positive_ints, select_preset


@dataclass(frozen=True)
class GANomalyArchitecture:
    """Size knobs of GANomaly. Down-sampling level ``s`` has ``base_width * 2**s`` filters."""

    image_size: int = 256
    channels: int = 1
    stem: str = "space_to_depth"  # "conv": a strided 3x3 conv (the paper's first layer is 4x4, stride 2)
    stem_filters: int = 16
    stem_stride: int = 4
    base_width: int = 32
    stages: int = 4
    latent_dim: int = 100  # the paper's nz

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent knob."""
        require_positive_ints(
            self,
            ("image_size", "channels", "stem_filters", "stem_stride", "base_width", "stages", "latent_dim"),
        )
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

    @property
    def widths(self) -> list[int]:
        """Filters of each down-sampling level."""
        return [self.base_width * 2**s for s in range(self.stages)]

    def to_dict(self) -> dict:
        """Plain-dict form for configs and manifests."""
        return asdict(self)


# `line`: sized for a 2-core CPU line PC (0.28 GFLOP per 256x256 grayscale patch for G_E + G_D + E:
# tests/families/test_baseline_families.py); `paper`: the paper's DCGAN widths (ndf 64, doubling per level
# down to 4x4) at 256x256, ~17.4 GFLOP and ~144 M parameters per patch (analytic): GPU-sized, for reference.
PRESETS: dict[str, GANomalyArchitecture] = {
    "line": GANomalyArchitecture(),
    "paper": GANomalyArchitecture(stem="conv", stem_filters=64, stem_stride=2, base_width=128, stages=5),
}


def preset(name: str, **overrides: int | str) -> GANomalyArchitecture:
    """The named preset with optional overrides; ValueError listing the presets for an unknown name."""
    return select_preset(PRESETS, name, "GANomaly", overrides)


class GANomalyNetworks(EncoderDecoderEncoder):
    """GANomaly's four networks: G_E (``encoder``), G_D (``decoder``), E (``encoder2``) and the
    discriminator (``critic``), named as the GAN trainer base (:mod:`tfad.trainers.adversarial`) expects."""

    def __init__(self, arch: GANomalyArchitecture) -> None:
        arch.validate()
        self.arch = arch
        common = (arch.image_size, arch.channels, arch.stem, arch.stem_filters, arch.stem_stride, arch.widths)
        self.encoder = dcgan_encoder(*common, arch.latent_dim, "encoder")
        self.decoder = dcgan_decoder(*common, arch.latent_dim, "decoder")
        self.encoder2 = dcgan_encoder(*common, arch.latent_dim, "encoder2")
        self.critic = dcgan_discriminator(*common, "critic")

    def checkpoint_parts(self) -> dict[str, keras.Model]:
        """Every network, by checkpoint name."""
        return self.gan_checkpoint_parts()

    def inference_parts(self) -> dict[str, keras.Model]:
        """The networks the score needs: the whole generator (the latent distance needs E)."""
        return {"encoder": self.encoder, "decoder": self.decoder, "encoder2": self.encoder2}

    def build_inference_model(self) -> keras.Model:
        """Image -> ``{"reconstruction": X_hat, "latent": z, "latent_reconstruction": z_hat}``."""
        size, channels = self.arch.image_size, self.arch.channels
        inputs = keras.Input((size, size, channels), name="image")
        z = self.encoder(inputs)
        reconstruction = self.decoder(z)
        z_hat = self.encoder2(reconstruction)
        outputs = {"reconstruction": reconstruction, "latent": z, "latent_reconstruction": z_hat}
        return keras.Model(inputs, outputs, name="ganomaly")

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the inference path (the generator) and the discriminator."""
        return {
            "inference": int(self.build_inference_model().count_params()),
            "critic": int(self.critic.count_params()),
        }
