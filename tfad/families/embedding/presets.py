"""The embedding family's architecture knobs and presets (methods.md, "Embedding-similarity family").

One architecture for every method: which backbone features (resolution fed to the backbone, stride taps,
channel subset, local averaging), how the normal features are modelled (``method`` and its knobs) and how
the distance map becomes a heatmap and a patch score (Gaussian blur, max). Every knob can be set with
``model.overrides``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tfad.backbones.features import FEATURE_TAPS, check_taps, tap_list
from tfad.networks.presets import require_positive_ints

METHODS = ("padim", "padim-diagonal", "patchcore", "mhbc-patchcore")
BACKBONES = ("efficientnet-lite0",)
TAPS = FEATURE_TAPS


@dataclass(frozen=True)
class EmbeddingArchitecture:
    """Features, normal model and scoring of an embedding-similarity model."""

    method: str = "padim"
    image_size: int = 256  # the model input (data.image_size)
    channels: int = 1  # data.channels; grey is replicated to the backbone's 3 channels
    backbone: str = "efficientnet-lite0"
    # The resolution the backbone sees (the image is resized inside the graph): the backbone's cost grows
    # with its square, so this is the main speed/accuracy knob.
    backbone_input_size: int = 256
    taps: str = (
        "stride8,stride16"  # backbone stages whose outputs are upsampled to the finest and concatenated
    )
    feature_channels: int = 0  # 0: every channel; else a seeded random subset (PaDiM's d)
    local_average: int = 3  # k x k mean of the features (PatchCore's locally aware patch features); 1 = off
    # Grid cells dropped at each border: their features see the padding and are rare in a bank, so the map's
    # maximum lands there for good and defective images alike (PatchCore; toolchain.md). 0 for PaDiM, whose
    # per-position model learns the border.
    border_cells: int = 0
    covariance_eps: float = 0.01  # PaDiM / MhBC: Sigma + eps I
    coreset_fraction: float = 0.01  # PatchCore: share of the training features kept in the bank
    coreset_projection_dim: int = 128  # random projection used by the greedy coreset search
    max_bank_features: int = 0  # PatchCore: cap the bank (0: no cap) before the coreset fraction
    pq_subspaces: int = 0  # PatchCore: product-quantised bank with this many sub-spaces (0: exact bank)
    pq_top_k: int = 16  # PatchCore + PQ: exact re-ranking of the K nearest quantised candidates
    mhbc_centroids: int = 1024  # MhBC-PatchCore: cumulative k-means centroids in the whitened space
    blur_sigma: float = 4.0  # Gaussian blur of the map at image size (pixels); 0 = off
    seed: int = 0  # channel subset, coreset start, k-means

    def validate(self) -> None:
        """ValueError naming the first bad knob."""
        if self.method not in METHODS:
            raise ValueError(f"method: one of {METHODS}, got {self.method!r}")
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone: one of {BACKBONES}, got {self.backbone!r}")
        require_positive_ints(
            self,
            (
                "image_size",
                "backbone_input_size",
                "local_average",
                "coreset_projection_dim",
                "pq_top_k",
                "mhbc_centroids",
            ),
        )
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {self.channels}")
        taps = check_taps(self.taps, self.backbone_input_size)
        finest = int(taps[0].removeprefix("stride"))
        grid = self.backbone_input_size // finest
        for name in ("feature_channels", "border_cells", "pq_subspaces", "seed"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
        if not isinstance(self.max_bank_features, int) or self.max_bank_features < 0:
            raise ValueError(f"max_bank_features must be an integer >= 0, got {self.max_bank_features!r}")
        if 2 * self.border_cells >= grid:
            raise ValueError(f"border_cells {self.border_cells} leaves no cell of the {grid}x{grid} grid")
        if self.local_average % 2 == 0:
            raise ValueError(f"local_average must be odd, got {self.local_average}")
        if not 0 < self.coreset_fraction <= 1:
            raise ValueError(f"coreset_fraction must be in (0, 1], got {self.coreset_fraction}")
        if self.covariance_eps <= 0:
            raise ValueError(f"covariance_eps must be > 0, got {self.covariance_eps}")
        if self.blur_sigma < 0:
            raise ValueError(f"blur_sigma must be >= 0, got {self.blur_sigma}")
        if self.pq_subspaces and self.method != "patchcore":
            raise ValueError("pq_subspaces applies to method patchcore only")

    def tap_list(self) -> list[str]:
        """The tapped stages, finest first."""
        return tap_list(self.taps)

    @property
    def finest_stride(self) -> int:
        """Stride of the feature grid (the finest tap)."""
        return int(self.tap_list()[0].removeprefix("stride"))

    @property
    def grid_size(self) -> int:
        """Cells per side of the scored feature grid (after dropping the border cells)."""
        return self.backbone_input_size // self.finest_stride - 2 * self.border_cells

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return asdict(self)


PRESETS: dict[str, EmbeddingArchitecture] = {
    # PaDiM on a half-resolution backbone pass (a quarter of the backbone's cost), for line PCs that qualify
    # it (benchmarks/qualify_pc.py): finer maps than `line-fast` (magnetic_tile AUPRO 0.733 against 0.645).
    "line": EmbeddingArchitecture(method="padim", backbone_input_size=128, feature_channels=100),
    # The default, sized for the slowest PC kind (2.45 GHz AVX2): the backbone at 96 x 96, 0.56x the FLOPs of
    # `line` (magnetic_tile image AUROC 0.957 against 0.965; README, docs/embedding.md).
    "line-fast": EmbeddingArchitecture(method="padim", backbone_input_size=96, feature_channels=100),
    # The most accurate preset measured on magnetic_tile (README): full-resolution PaDiM.
    "accurate": EmbeddingArchitecture(method="padim", backbone_input_size=256, feature_channels=100),
    "padim": EmbeddingArchitecture(method="padim", feature_channels=100),
    "padim-diagonal": EmbeddingArchitecture(method="padim-diagonal"),
    "patchcore": EmbeddingArchitecture(method="patchcore", border_cells=2, coreset_fraction=0.01),
    "patchcore-pq": EmbeddingArchitecture(
        method="patchcore", border_cells=2, coreset_fraction=0.1, pq_subspaces=19, pq_top_k=16
    ),
    "mhbc-patchcore": EmbeddingArchitecture(method="mhbc-patchcore", feature_channels=100, border_cells=2),
}
