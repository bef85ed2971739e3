"""SuperSimpleNet's architecture knobs and presets (001; methods.md, "SimpleNet / SuperSimpleNet").

The paper's network on a WideResNet-50 at 256x256 (layers 2+3 upscaled to stride 4, 1024 hidden channels,
a 5x5 128-channel classification block) costs tens of GFLOP per image; here it runs on the shared
EfficientNet-Lite0 (``tfad.backbones``) with the heads sized for a 2-core CPU. Every knob can be set with
``model.overrides``; ``regime`` comes from ``supersimplenet.regime``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tfad.backbones import STRIDE_TAPS, flops_per_image
from tfad.backbones.features import FEATURE_TAPS, check_taps, tap_list
from tfad.networks.presets import require_positive_ints

REGIMES = ("unsupervised", "supervised", "weak")
BACKBONES = ("efficientnet-lite0",)
TAPS = FEATURE_TAPS


@dataclass(frozen=True)
class SuperSimpleNetArchitecture:
    """Features, adaptor and heads of a SuperSimpleNet model."""

    image_size: int = 256  # the model input (data.image_size)
    channels: int = 1  # data.channels; grey is replicated to the backbone's 3 channels
    regime: str = "unsupervised"  # supersimplenet.regime: "weak" has a GAP classification head and a CAM map
    backbone: str = "efficientnet-lite0"
    backbone_input_size: int = 128  # the backbone's cost grows with its square: the main speed knob
    taps: str = "stride8,stride16"  # SSN's "layer 2 + layer 3"
    upscale: int = 2  # the grid is this many times finer than the finest tap (SSN: 2)
    local_average: int = 3  # k x k mean of the features (SSN's neighbourhood aggregation)
    segmentation_hidden: int = 256  # hidden 1x1 channels of the segmentation head (SSN: 1024)
    classification_channels: int = 32  # channels of the classification head's conv block (SSN: 128)
    classification_kernel: int = 3  # its kernel size (SSN: 5)
    blur_sigma: float = 4.0  # Gaussian blur of the map at image size (pixels), as SSN; 0 = off

    def validate(self) -> None:
        """ValueError naming the first bad knob."""
        if self.regime not in REGIMES:
            raise ValueError(f"regime: one of {REGIMES}, got {self.regime!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone: one of {BACKBONES}, got {self.backbone!r}")
        require_positive_ints(
            self,
            (
                "image_size",
                "backbone_input_size",
                "upscale",
                "local_average",
                "segmentation_hidden",
                "classification_channels",
                "classification_kernel",
            ),
        )
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        check_taps(self.taps, self.backbone_input_size)
        for name in ("local_average", "classification_kernel"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"{name} must be odd, got {getattr(self, name)}")
        if not isinstance(self.blur_sigma, int | float) or not 0 <= self.blur_sigma <= 64:
            raise ValueError(f"blur_sigma must be in [0, 64], got {self.blur_sigma!r}")

    def tap_list(self) -> list[str]:
        """The tapped stages, finest first."""
        return tap_list(self.taps)

    @property
    def grid_size(self) -> int:
        """Cells per side of the feature grid the heads see."""
        finest = int(self.tap_list()[0].removeprefix("stride"))
        return self.backbone_input_size // finest * self.upscale

    @property
    def feature_channels(self) -> int:
        """Channels of the concatenated backbone features (D)."""
        from tfad.backbones.efficientnet_lite import _block_specs

        specs = _block_specs()
        return sum(specs[STRIDE_TAPS[t]][1] for t in self.tap_list())

    def gflops(self) -> dict[str, float]:
        """Analytic GFLOP per image (multiply-add = 2) of the backbone and the unfolded adaptor and heads, as
        training runs them; the served graph folds the adaptor into the heads and runs the segmentation
        head's hidden layer at the taps' resolutions, so it does fewer."""
        cells, d = self.grid_size**2, self.feature_channels
        heads = 2 * cells * d * d  # adaptor
        if self.regime != "weak":
            heads += 2 * cells * (d * self.segmentation_hidden + self.segmentation_hidden)
            cls_in = d + 1
        else:
            cls_in = d
        heads += 2 * cells * cls_in * self.classification_kernel**2 * self.classification_channels
        backbone = flops_per_image(self.backbone_input_size, tuple(self.tap_list()))
        return {"backbone": backbone / 1e9, "heads": heads / 1e9, "total": (backbone + heads) / 1e9}

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return asdict(self)


PRESETS: dict[str, SuperSimpleNetArchitecture] = {
    # The backbone at half resolution (a quarter of its cost), a 32x32 grid: localises better than
    # `line-fast` (magnetic_tile supervised pixel AUROC 0.900 against 0.876) on a PC with the time for it.
    "line": SuperSimpleNetArchitecture(),
    # The default, for the slowest PC kind (2.45 GHz AVX2): the backbone at 96, a 24x24 grid, 0.56x the
    # FLOPs of `line` (magnetic_tile, supervised: image AUROC 0.982 against 0.977, pixel 0.876 against 0.900).
    "line-fast": SuperSimpleNetArchitecture(backbone_input_size=96),
    # The backbone at full resolution, a 32x32 grid (stride 8 of the image), wider heads.
    "accurate": SuperSimpleNetArchitecture(
        backbone_input_size=256, upscale=1, segmentation_hidden=512, classification_channels=64
    ),
}
