"""The parameters of the blob-analysis baseline (docs/blob.md: what each knob does and how to tune it),
validated on construction; the analyzer that runs them is :mod:`tfad.families.blob.analyzer`.
No TensorFlow here (numpy only)."""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Any

import numpy as np

BACKGROUNDS = ("none", "reference", "local")
POLARITIES = ("dark", "bright", "both")
THRESHOLDS = ("global", "otsu", "local")
CHANNELS = (1, 3)


def is_int(value: Any) -> bool:
    """A Python or numpy integer (not a bool)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A Python or numpy number (not a bool)."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


@dataclass(frozen=True)
class BlobParameters:
    """Every knob of the blob-analysis pipeline; validated on construction (ValueError naming the field).

    Attributes:
        background: how the background level is estimated before measuring contrast.
            ``"none"``: one constant level per image, the median grey value of the (ROI) pixels;
            ``"reference"``: a reference image, the per-pixel median of good training images (``fit``);
            ``"local"``: a median filter of the image itself of size ``background_size`` (removes uneven
            lighting; a top-hat-like operation).
        background_size: side in pixels of the ``"local"`` median window; odd, >= 3. A defect covering more
            than half of the window becomes "background": use >= 2x the largest defect diameter.
        polarity: ``"dark"`` (defect darker than the background: contrast = background - image),
            ``"bright"`` (image - background) or ``"both"`` (absolute difference).
        threshold: ``"global"`` (contrast > ``threshold_value``), ``"otsu"`` (Otsu's threshold of the
            contrast image, floored at ``threshold_value``), ``"local"`` (skimage ``threshold_local`` of the
            contrast image with ``local_block_size`` and ``local_offset``, floored at ``threshold_value``).
        threshold_value: the global threshold, and the floor of the adaptive ones, in grey units [0, 1).
            The floor keeps "otsu"/"local" from turning sensor noise into blobs on a defect-free image;
            set it to 0.0 for a pure adaptive threshold.
        local_block_size: odd block size in pixels (>= 3) of ``threshold="local"``.
        local_offset: subtracted from the local (Gaussian-weighted) mean of ``threshold="local"``, grey units.
        opening_radius: radius in pixels of the disk of the binary opening (removes specks and lines thinner
            than ~2r+1 pixels); 0 = off.
        closing_radius: radius in pixels of the disk of the binary closing (joins fragments, fills holes
            narrower than ~2r+1 pixels); 0 = off.
        min_area: smallest blob kept, in pixels at the analysed resolution (>= 1).
        max_area: largest blob kept, in pixels; None = unbounded.
        min_contrast: smallest mean contrast of a blob kept, grey units [0, 1]; 0.0 = off.
        max_eccentricity: largest eccentricity kept (0 = disk, 1 = line); None = off.
        min_solidity: smallest solidity kept (area / convex-hull area, 1 = convex); None = off.
    """

    background: str = "local"  # "none" | "reference" | "local"
    background_size: int = 31  # px, odd: window of the "local" median background
    polarity: str = "both"  # "dark" | "bright" | "both"
    threshold: str = "global"  # "global" | "otsu" | "local"
    threshold_value: float = 0.15  # grey units: global threshold / floor of "otsu" and "local"
    local_block_size: int = 51  # px, odd: block of threshold_local
    local_offset: float = 0.0  # grey units, subtracted from the local mean
    opening_radius: int = 1  # px, disk radius; 0 = off
    closing_radius: int = 0  # px, disk radius; 0 = off
    min_area: int = 10  # px
    max_area: int | None = None  # px; None = unbounded
    min_contrast: float = 0.0  # grey units, mean contrast of a blob
    max_eccentricity: float | None = None  # [0, 1]; None = off
    min_solidity: float | None = None  # [0, 1]; None = off

    def __post_init__(self) -> None:
        # Canonical types (YAML/JSON give ints for floats and vice versa) so to_dict round-trips exactly.
        for field in ("threshold_value", "local_offset", "min_contrast", "max_eccentricity", "min_solidity"):
            value = getattr(self, field)
            if is_number(value):
                object.__setattr__(self, field, float(value))
        for field in ("background_size", "local_block_size", "opening_radius", "closing_radius", "min_area"):
            value = getattr(self, field)
            if is_int(value):
                object.__setattr__(self, field, int(value))
        if is_int(self.max_area):
            object.__setattr__(self, "max_area", int(self.max_area))
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field, its allowed values or range, and its value."""

        def fail(field: str, allowed: str) -> None:
            raise ValueError(f"blob parameter {field} must be {allowed}, got {getattr(self, field)!r}")

        for field, choices in (
            ("background", BACKGROUNDS),
            ("polarity", POLARITIES),
            ("threshold", THRESHOLDS),
        ):
            if getattr(self, field) not in choices:
                fail(field, "one of " + ", ".join(repr(c) for c in choices))
        for field in ("background_size", "local_block_size"):
            value = getattr(self, field)
            if not is_int(value) or value < 3 or value % 2 == 0:
                fail(field, "an odd integer >= 3 (pixels)")
        for field in ("opening_radius", "closing_radius"):
            value = getattr(self, field)
            if not is_int(value) or value < 0:
                fail(field, "an integer >= 0 (pixels, 0 = off)")
        if not is_int(self.min_area) or self.min_area < 1:
            fail("min_area", "an integer >= 1 (pixels)")
        if self.max_area is not None and (not is_int(self.max_area) or self.max_area < self.min_area):
            fail("max_area", f"None or an integer >= min_area ({self.min_area})")
        if not is_number(self.threshold_value) or not 0.0 <= self.threshold_value < 1.0:
            fail("threshold_value", "a number in [0, 1) (grey units)")
        if not is_number(self.local_offset) or not -1.0 <= self.local_offset <= 1.0:
            fail("local_offset", "a number in [-1, 1] (grey units)")
        if not is_number(self.min_contrast) or not 0.0 <= self.min_contrast <= 1.0:
            fail("min_contrast", "a number in [0, 1] (grey units)")
        for field in ("max_eccentricity", "min_solidity"):
            value = getattr(self, field)
            if value is not None and (not is_number(value) or not 0.0 <= value <= 1.0):
                fail(field, "None (off) or a number in [0, 1]")

    def to_dict(self) -> dict:
        """All fields as a JSON/YAML-serialisable dict (the inverse of ``from_dict``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> BlobParameters:
        """Build from a (partial) dict; missing keys take their defaults.

        Raises ValueError naming unknown keys (with the nearest valid name) or the first invalid value.
        """
        if not isinstance(d, dict):
            raise ValueError(f"blob parameters must be a mapping, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in d if k not in names)
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(key, names, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown blob parameter(s): {', '.join(hints)}; valid: {', '.join(names)}")
        return cls(**d)
