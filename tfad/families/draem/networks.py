"""DRAEM networks (003 s. 8.2.2.3; Zavrtanik et al. 2021): the reconstructive sub-network (a plain
autoencoder, :func:`tfad.networks.plain.reconstructive_autoencoder`) and the discriminative U-Net on the
channel-wise concatenation (reconstruction, image) (:func:`tfad.networks.blocks.unet`).

    X_rec = R(X*)        A = U(concat(X_rec, X*))          (training: X* = P_q(X); inference: X* = X)

Inference runs both; the anomaly map A is the heatmap and its mean-filtered maximum the score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import keras
from keras import layers

from tfad.networks.blocks import unet
from tfad.networks.plain import reconstructive_autoencoder
from tfad.networks.presets import require_positive_ints, select_preset

ANOMALY_PRIOR = 0.01  # initial anomaly probability of every pixel of the map (as GRD-Net's U-Net)


@dataclass(frozen=True)
class DRAEMArchitecture:
    """Size knobs of DRAEM. Level ``d`` of either network has ``base_width * 2**d`` filters."""

    image_size: int = 256
    channels: int = 1
    stem_stride: int = 4  # pixel-unshuffle before the reconstructive network (1: full resolution)
    base_width: int = 16
    depth: int = 4
    unet_stem_stride: int = 4
    unet_base_width: int = 8
    unet_depth: int = 4

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent knob."""
        require_positive_ints(
            self,
            (
                "image_size", "channels", "stem_stride", "base_width", "depth", "unet_stem_stride",
                "unet_base_width", "unet_depth",
            ),
        )  # fmt: skip
        if self.channels not in (1, 3):
            raise ValueError(f"model.channels must be 1 or 3, got {self.channels}")
        reduction = self.stem_stride * 2 ** (self.depth - 1)
        if self.image_size % reduction:
            raise ValueError(
                f"model.image_size {self.image_size} must be divisible by stem_stride * 2**(depth - 1) "
                f"= {reduction}"
            )
        unet_reduction = self.unet_stem_stride * 2 ** (self.unet_depth - 1)
        if self.image_size % unet_reduction:
            raise ValueError(
                f"model.image_size {self.image_size} must be divisible by unet_stem_stride * "
                f"2**(unet_depth - 1) = {unet_reduction}"
            )

    def to_dict(self) -> dict:
        """Plain-dict form for configs and manifests."""
        return asdict(self)


# `line`: sized for a 2-core CPU line PC (both networks on pixel-unshuffled input, widths 16..128 and
# 8..64; GFLOP per patch in docs/baselines.md, checked in tests/families/test_baseline_families.py);
# `line-wide`: twice the widths, the accuracy reference for `line`. The paper's networks (widths 128..1024
# and 64..512 at full resolution, > 100 GFLOP per patch) are GPU-sized and not offered.
PRESETS: dict[str, DRAEMArchitecture] = {
    "line": DRAEMArchitecture(),
    "line-wide": DRAEMArchitecture(base_width=32, unet_base_width=16),
}


def preset(name: str, **overrides: int | str) -> DRAEMArchitecture:
    """The named preset with optional overrides; ValueError listing the presets for an unknown name."""
    return select_preset(PRESETS, name, "DRAEM", overrides)


class DRAEMNetworks:
    """DRAEM's two sub-networks: ``reconstructive`` (R) and ``unet`` (the discriminative U)."""

    def __init__(self, arch: DRAEMArchitecture) -> None:
        arch.validate()
        self.arch = arch
        self.reconstructive = reconstructive_autoencoder(
            arch.image_size, arch.channels, arch.stem_stride, arch.base_width, arch.depth
        )
        self.unet = unet(
            arch.image_size,
            2 * arch.channels,
            arch.unet_stem_stride,
            arch.unet_base_width,
            arch.unet_depth,
            ANOMALY_PRIOR,
        )

    @property
    def trainable_variables(self) -> list:
        """Trainable variables of both sub-networks (trained jointly by one optimizer, as the paper)."""
        return self.reconstructive.trainable_variables + self.unet.trainable_variables

    def checkpoint_parts(self) -> dict[str, keras.Model]:
        """Every network, by checkpoint name."""
        return {"reconstructive": self.reconstructive, "unet": self.unet}

    def inference_parts(self) -> dict[str, keras.Model]:
        """The networks the inference path needs: both."""
        return self.checkpoint_parts()

    def build_inference_model(self) -> keras.Model:
        """Image -> ``{"reconstruction": X_rec, "anomaly_map": A}`` as one model."""
        size, channels = self.arch.image_size, self.arch.channels
        inputs = keras.Input((size, size, channels), name="image")
        reconstruction = self.reconstructive(inputs)
        anomaly_map = self.unet(layers.Concatenate(name="unet_input")([reconstruction, inputs]))
        return keras.Model(
            inputs, {"reconstruction": reconstruction, "anomaly_map": anomaly_map}, name="draem"
        )

    def parameter_counts(self) -> dict[str, int]:
        """Parameters of the inference path and of each sub-network."""
        return {
            "inference": int(self.build_inference_model().count_params()),
            "reconstructive": int(self.reconstructive.count_params()),
            "unet": int(self.unet.count_params()),
        }
