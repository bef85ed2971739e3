"""Supervised U-Net segmentation (003 ch. 7): image -> defect probability map, trained on pixel masks.

Framework-level builders only; the training step lives in `tfad.trainers.supervised`. The network is the
U-Net of `tfad.networks.blocks.unet` (shared with GRD-Net's discriminative network) on the image alone.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers

from tfad.networks.blocks import unet
from tfad.networks.presets import require_positive_ints, select_preset

DEFECT_PRIOR = 0.01  # initial defect probability of every pixel


@dataclass(frozen=True)
class SegmentationArchitecture:
    """Size knobs of the segmentation U-Net. Level ``d`` has ``base_width * 2**d`` filters."""

    image_size: int = 256
    channels: int = 1
    stem_stride: int = 4
    base_width: int = 16
    depth: int = 4

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent knob."""
        require_positive_ints(self, ("image_size", "channels", "stem_stride", "base_width", "depth"))
        if self.channels not in (1, 3):
            raise ValueError(f"model.channels must be 1 or 3, got {self.channels}")
        reduction = self.stem_stride * 2 ** (self.depth - 1)
        if self.image_size % reduction:
            raise ValueError(
                f"model.image_size {self.image_size} must be divisible by stem_stride * 2**(depth - 1) "
                f"= {reduction}"
            )

    def to_dict(self) -> dict:
        """Plain-dict form for configs and manifests."""
        return asdict(self)


# "unet": pixel-unshuffled by 4, widths 16..128, sized for the 2-core line PC (inference GFLOP per patch:
# README "Presets"); "unet-full": full resolution, widths 32..256 (GPU-sized).
PRESETS: dict[str, SegmentationArchitecture] = {
    "unet": SegmentationArchitecture(),
    "unet-full": SegmentationArchitecture(stem_stride=1, base_width=32, depth=4),
}


def preset(name: str, **overrides: int) -> SegmentationArchitecture:
    """The named preset with optional overrides; ValueError listing the presets for an unknown name."""
    return select_preset(PRESETS, name, "segmentation", overrides)


class SegmentationNetworks:
    """The one network of the family: the U-Net ``image -> mask probability``."""

    def __init__(self, arch: SegmentationArchitecture) -> None:
        arch.validate()
        self.arch = arch
        self.unet = unet(
            arch.image_size,
            arch.channels,
            arch.stem_stride,
            arch.base_width,
            arch.depth,
            DEFECT_PRIOR,
            "unet",
        )

    def checkpoint_parts(self) -> dict[str, keras.Model]:
        """Every network, by checkpoint name."""
        return {"unet": self.unet}

    def inference_parts(self) -> dict[str, keras.Model]:
        """The networks the inference path needs."""
        return {"unet": self.unet}

    def build_inference_model(self) -> keras.Model:
        """Image -> ``{"anomaly_map": P(defect) per pixel}`` (the score function's input)."""
        size, channels = self.arch.image_size, self.arch.channels
        inputs = keras.Input((size, size, channels), name="image")
        mask = self.unet(inputs)
        return keras.Model(
            inputs, {"anomaly_map": layers.Identity(name="anomaly_map")(mask)}, name="segmentation"
        )

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the inference path."""
        return {"inference": int(self.unet.count_params())}
