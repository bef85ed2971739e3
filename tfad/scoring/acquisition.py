"""The acquisition check: is a patch an image of a product at all? (numpy only)

A lamp failure gives a dark noisy frame, a saturated sensor a near-white one, a covered or defocused lens a
flat grey one. None of these is exactly uniform, so the blank-patch rule misses them, and a model that never
saw one may score it as normal (``benchmarks/blank_frames.py``). The check does not ask the model: ``tfad
calibrate`` records, per region, the range of the good calibration images' mean grey level and their lowest
pixel standard deviation (:func:`fit_acquisition_check`), widened so that lighting drift passes and a failed
acquisition does not; ``tfad export`` writes the limits into the manifest (``"acquisition_check"``); both
servers answer a patch outside them REJECT_INCOMPLETE / ACQUISITION_CHECK without running the model, and
``tfad predict`` / ``tfad eval`` apply the same rule (docs/serving.md, fail-safe rule 8).

The statistics are those of the patch as the model gets it (after any resize), every channel pooled
(:func:`tfad.data.decode.pixel_statistics`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from tfad.data.decode import blank_images, pixel_statistics

if TYPE_CHECKING:
    from tfad.scoring.table import ScoreTable

__all__ = [
    "ACQUISITION_RULE",
    "LIKELY_CAUSE",
    "AcquisitionCheck",
    "AcquisitionLimits",
    "PatchGate",
    "fit_acquisition_check",
    "stopped",
    "weak_limits",
]

# How far the limits reach beyond the good images: halfway from their darkest mean to black and from their
# brightest to white, and half their lowest contrast. On magnetic_tile (good means 49-222, std >= 9.5) that
# leaves a dark frame (mean < 25), a saturated one (mean > 238) or a flat one (std < 4.8) outside.
# what the servers' detail and tfad predict's reason add after the failed condition
LIKELY_CAUSE = "(a lamp, exposure, focus or grab failure?)"
ACQUISITION_RULE = (
    "a patch fails when its mean grey level is below half the darkest good calibration image's mean of its "
    "region, or above halfway from the brightest one's to 255, or when its pixel standard deviation is below "
    "half the lowest of the good images' (all channels pooled; regions not listed use the limits of all good "
    "images)"
)


@dataclass(frozen=True)
class AcquisitionLimits:
    """A patch passes when ``mean_min <= mean <= mean_max`` and ``std >= std_min``."""

    mean_min: float
    mean_max: float
    std_min: float

    def __post_init__(self) -> None:
        _check_limits(
            {"mean_min": self.mean_min, "mean_max": self.mean_max, "std_min": self.std_min},
            "acquisition limits",
        )

    def failure(self, mean: float, std: float) -> str | None:
        """The first condition the patch fails, as the servers word it, or None when it passes."""
        if mean < self.mean_min:
            return f"mean gray {mean:.1f} is below {self.mean_min:.1f}"
        if mean > self.mean_max:
            return f"mean gray {mean:.1f} is above {self.mean_max:.1f}"
        if std < self.std_min:
            return f"pixel standard deviation {std:.2f} is below {self.std_min:.2f}"
        return None

    def to_dict(self) -> dict:
        """The limits object of the manifest block."""
        return {"mean_min": self.mean_min, "mean_max": self.mean_max, "std_min": self.std_min}

    @classmethod
    def from_dict(cls, block: object, where: str) -> AcquisitionLimits:
        """Parse one limits object; ``ValueError`` naming ``where`` (e.g. ``acquisition_check.default``)."""
        if not isinstance(block, dict):
            raise ValueError(f"{where} must be an object with mean_min, mean_max and std_min")
        values = _check_limits({key: block.get(key) for key in ("mean_min", "mean_max", "std_min")}, where)
        return cls(*values)


def _check_limits(values: dict[str, object], where: str) -> list[float]:
    """The three limits as floats, or ``ValueError`` naming ``where`` and the field (cc/manifest.cc's)."""
    out = []
    for key, value in values.items():
        try:  # a JSON integer too large for a float overflows here: not a finite number either
            finite = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
        except OverflowError:
            finite = False
        if not finite:
            raise ValueError(f"{where}.{key} must be a finite number")
        out.append(float(value))
    if not (0.0 <= out[0] <= out[1] <= 255.0 and out[2] >= 0.0):
        raise ValueError(f"{where} must have 0 <= mean_min <= mean_max <= 255 and std_min >= 0")
    return out


@dataclass(frozen=True)
class AcquisitionCheck:
    """Per-region :class:`AcquisitionLimits`, and the ``default`` for regions not listed."""

    regions: dict[str, AcquisitionLimits]
    default: AcquisitionLimits

    def named_limits(self) -> list[tuple[str, AcquisitionLimits]]:
        """Each region's limits in name order, then ``("default", ...)``: for printing and reports."""
        return [*sorted(self.regions.items()), ("default", self.default)]

    def limits_for(self, region: str) -> AcquisitionLimits:
        """The region's limits, or the default for a region not listed."""
        return self.regions.get(region, self.default)

    def failures(
        self, regions: Sequence[str], means: Iterable[float], stds: Iterable[float]
    ) -> list[str | None]:
        """Per patch: the condition it fails (the servers' wording), or None."""
        return [
            self.limits_for(str(region)).failure(float(mean), float(std))
            for region, mean, std in zip(regions, means, stds, strict=True)
        ]

    def to_manifest(self) -> dict:
        """The manifest's (and thresholds.json's) ``"acquisition_check"`` block."""
        return {
            "rule": ACQUISITION_RULE,
            "regions": {region: limits.to_dict() for region, limits in sorted(self.regions.items())},
            "default": self.default.to_dict(),
        }

    @classmethod
    def from_manifest(cls, block: object) -> AcquisitionCheck | None:
        """Parse the block (None when absent: no check); ``ValueError`` naming the bad field."""
        if block is None:
            return None
        if not isinstance(block, dict):
            raise ValueError('"acquisition_check" must be an object')
        regions_raw = block.get("regions")
        regions_raw = {} if regions_raw is None else regions_raw
        if not isinstance(regions_raw, dict):
            raise ValueError('"acquisition_check.regions" must be an object {region: limits}')
        if block.get("default") is None:
            raise ValueError("acquisition_check.default is missing (the limits of regions not listed)")
        return cls(
            # in name order, as cc/manifest.cc (a protobuf Struct keeps none): both name the same bad region
            regions={
                str(region): AcquisitionLimits.from_dict(limits, f"acquisition_check.regions.{region}")
                for region, limits in sorted(regions_raw.items())
            },
            default=AcquisitionLimits.from_dict(block["default"], "acquisition_check.default"),
        )


def _widened(means: np.ndarray, stds: np.ndarray) -> AcquisitionLimits:
    low, high = float(means.min()), float(means.max())
    # rounded outward to 0.01 so the manifest reads well and the limits never move inward
    return AcquisitionLimits(
        mean_min=math.floor(low / 2 * 100) / 100,
        mean_max=min(255.0, math.ceil((high + (255.0 - high) / 2) * 100) / 100),
        std_min=math.floor(float(stds.min()) / 2 * 100) / 100,
    )


def fit_acquisition_check(
    regions: Sequence[str],
    labels: Iterable[int],
    means: Iterable[float],
    stds: Iterable[float],
    blanks: Iterable[bool] | None = None,
) -> AcquisitionCheck:
    """Limits from the good images (label 0) of a calibration kit (:data:`ACQUISITION_RULE`); a blank good
    image (``blanks``: a failed grab in the kit) says nothing of the product's range and is left out.

    A region without good images gets no limits of its own (it uses the default, from all good images).
    Raises ``ValueError`` when there is no good image left, or a statistic is not finite.
    """
    regions_arr = np.asarray([str(r) for r in regions], dtype=object)
    labels_arr, means_arr, stds_arr = (np.asarray(list(x)) for x in (labels, means, stds))
    blanks_arr = np.zeros(len(regions_arr), bool) if blanks is None else np.asarray(list(blanks), bool)
    if not (len(regions_arr) == len(labels_arr) == len(means_arr) == len(stds_arr) == len(blanks_arr)):
        raise ValueError("regions, labels, means, stds and blanks must have one entry per image")
    good = (labels_arr == 0) & ~blanks_arr
    if not good.any():
        raise ValueError("the acquisition check needs good images (label 0, not blank) to learn from")
    means_arr, stds_arr = means_arr.astype(np.float64), stds_arr.astype(np.float64)
    if not (np.isfinite(means_arr[good]).all() and np.isfinite(stds_arr[good]).all()):
        raise ValueError("the good images' pixel statistics must be finite (was every image read?)")
    per_region = {
        str(region): _widened(
            means_arr[good & (regions_arr == region)], stds_arr[good & (regions_arr == region)]
        )
        for region in sorted(set(regions_arr[good].tolist()))
    }
    return AcquisitionCheck(regions=per_region, default=_widened(means_arr[good], stds_arr[good]))


# Limits this wide stop almost nothing: a nearly black (mean < 5), saturated (> 250) or flat (std < 1) good
# calibration image set them, and one such image in the kit would switch the check off unnoticed.
WEAK_MEAN_MIN, WEAK_MEAN_MAX, WEAK_STD_MIN = 5.0, 250.0, 1.0


def weak_limits(check: AcquisitionCheck) -> list[str]:
    """One line per region (and ``default``) whose limits would let a dark, saturated or flat frame pass."""
    out = []
    for region, limits in check.named_limits():
        weak = [
            f"mean_min {limits.mean_min:.1f} (a dark frame passes)"
            if limits.mean_min < WEAK_MEAN_MIN
            else "",
            f"mean_max {limits.mean_max:.1f} (a saturated frame passes)"
            if limits.mean_max > WEAK_MEAN_MAX
            else "",
            f"std_min {limits.std_min:.2f} (a flat frame passes)" if limits.std_min < WEAK_STD_MIN else "",
        ]
        if any(weak):
            out.append(f"{region}: " + ", ".join(w for w in weak if w))
    return out


@dataclass(frozen=True)
class PatchGate:
    """What the servers check before a model scores a patch: the blank-patch rule (manifest
    ``preprocessing.blank_patches: "reject"``) and the acquisition check. A patch that fails either makes its
    product REJECT_INCOMPLETE whatever its score; offline scoring applies the same gate (``tfad predict``,
    ``tfad eval``) so a served verdict can be reproduced."""

    reject_blank_patches: bool = False
    acquisition_check: AcquisitionCheck | None = None

    def reasons(
        self,
        regions: Sequence[str],
        blanks: Iterable[bool],
        means: Iterable[float],
        stds: Iterable[float],
    ) -> list[str | None]:
        """Per patch: why it fails the gate, or None (``blanks`` from :func:`tfad.data.decode.blank_images`,
        ``means`` and ``stds`` from :func:`tfad.data.decode.pixel_statistics`). A patch whose statistics are
        not known (NaN: a score table written before they were recorded) passes the acquisition check: NaN
        compares false with every limit."""
        regions = [str(r) for r in regions]
        blanks = [bool(b) for b in blanks]
        check = self.acquisition_check
        failures = [None] * len(regions) if check is None else check.failures(regions, means, stds)
        return [
            "blank: every pixel has one value (a camera or grab failure?)"
            if self.reject_blank_patches and blank
            else None
            if failure is None
            else f"fails the acquisition check: {failure} {LIKELY_CAUSE}"
            for blank, failure in zip(blanks, failures, strict=True)
        ]

    def table_reasons(self, table: ScoreTable) -> list[str | None]:
        """:meth:`reasons` for each row of a score table (its ``blank``, ``pixel_mean``, ``pixel_std``)."""
        return self.reasons(table.regions, table.blanks, table.pixel_means, table.pixel_stds)

    def image_reasons(self, regions: Sequence[str], images: np.ndarray) -> list[str | None]:
        """:meth:`reasons` for uint8 images ``[N, H, W, C]`` as the model gets them."""
        means, stds = pixel_statistics(images)
        return self.reasons(regions, blank_images(images), means, stds)


def stopped(reasons: Sequence[str | None]) -> np.ndarray:
    """Boolean per patch of :meth:`PatchGate.reasons`: True where the gate stops it."""
    return np.asarray([r is not None for r in reasons], dtype=bool)
