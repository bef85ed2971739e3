"""AE-XAD's architecture knobs and presets (000; methods.md, "AE-XAD (000)").

The seed's encoder is the early blocks of a pretrained ResNet giving a 28x28x64 map of a 224x224 RGB image
(stride 8). Here it is the shared EfficientNet-Lite0 (``tfad.backbones``) on the grey 256x256 patch (grey
replicated to RGB inside the backbone): its stride-4 (24 channels) and stride-8 (40 channels) block outputs,
both on the stride-8 grid and concatenated, give a 32x32x64 map, the seed's map at the package's patch
size. Every knob can be set with ``model.overrides``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from tfad.backbones import flops_per_image
from tfad.backbones.features import FEATURE_TAPS, check_taps, tap_list
from tfad.networks.presets import require_positive_ints

BACKBONES = ("efficientnet-lite0",)
TAPS = FEATURE_TAPS
MIN_DECODER_WIDTH = 8  # the decoder halves its width at each upsampling, down to this


@dataclass(frozen=True)
class AEXADArchitecture:
    """Encoder and two-branch decoder of an AE-XAD model."""

    image_size: int = 256  # the model input (data.image_size)
    channels: int = 1  # data.channels; the reconstruction has as many
    backbone: str = "efficientnet-lite0"
    backbone_input_size: int = 256  # the resolution the encoder sees (its cost grows with its square)
    taps: str = "stride4,stride8"  # 24 + 40 = 64 channels, as the seed's 64-channel map
    train_encoder: bool = False  # the seed's AE-XAD keeps the pretrained encoder frozen (000 s. 4.4.1)
    decoder_width: int = 64  # channels of the trainable branch b2 at the latent grid, halved per upsampling

    def validate(self) -> None:
        """ValueError naming the first bad knob."""
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone: one of {BACKBONES}, got {self.backbone!r}")
        require_positive_ints(self, ("image_size", "backbone_input_size", "decoder_width"))
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        if not isinstance(self.train_encoder, bool):
            raise ValueError(f"train_encoder must be true or false, got {self.train_encoder!r}")
        check_taps(self.taps, self.backbone_input_size)
        ratio = self.image_size / self.grid_size
        if ratio < 2 or ratio != 2 ** round(math.log2(ratio)):
            raise ValueError(
                f"backbone_input_size {self.backbone_input_size} gives a {self.grid_size}x{self.grid_size} "
                f"latent grid; image_size {self.image_size} must be a power-of-two multiple (>= 2) of it"
            )

    def tap_list(self) -> list[str]:
        """The tapped stages, finest first."""
        return tap_list(self.taps)

    @property
    def grid_size(self) -> int:
        """Cells per side of the latent map: the deepest tap's grid (the finer taps are resized to it)."""
        deepest = int(self.tap_list()[-1].removeprefix("stride"))
        return self.backbone_input_size // deepest

    @property
    def latent_channels(self) -> int:
        """Channels of the latent map (the concatenated taps)."""
        from tfad.backbones.efficientnet_lite import STRIDE_TAPS, _block_specs

        specs = _block_specs()
        return sum(specs[STRIDE_TAPS[t]][1] for t in self.tap_list())

    @property
    def upsamplings(self) -> int:
        """x2 upsamplings of the decoder from the latent grid to the image."""
        return round(math.log2(self.image_size // self.grid_size))

    def widths(self) -> list[int]:
        """b2's channels at the latent grid and after each upsampling."""
        return [max(MIN_DECODER_WIDTH, self.decoder_width // 2**i) for i in range(self.upsamplings + 1)]

    def backbone_gflops(self) -> float:
        """Analytic GFLOP of the encoder for one image."""
        return flops_per_image(self.backbone_input_size, tuple(self.tap_list())) / 1e9

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return asdict(self)


PRESETS: dict[str, AEXADArchitecture] = {
    # The encoder at the patch's own resolution: a 32x32x64 latent map, as the seed's 28x28x64 at 224.
    "line": AEXADArchitecture(),
    # The encoder at half resolution (a quarter of its cost): a 16x16x64 latent map, one more upsampling.
    "light": AEXADArchitecture(backbone_input_size=128, decoder_width=64),
}
