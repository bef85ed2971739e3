"""Domain shift applied to evaluation images: the drift a real line has (seed 004's robustness test).

A line's images drift after qualification: a camera is knocked or a product sits a little off (small
rotations, shifts and scale changes), focus degrades or a lens is changed (detail lost: modelled as
down-scaling and up-scaling back), lamps age (brightness and contrast), gain rises (sensor noise). ``tfad
eval --shift`` scores the evaluation split once per kind and strength with these transforms and reports how
far each metric drops (:mod:`tfad.evaluation.shift`).

Each kind has one ``strength`` in [0, 1]; 0 is exactly the identity, 1 the largest drift stated in
:data:`FULL_STRENGTH`, and the magnitudes grow linearly in between. Random draws (the sign and size of a
rotation, a brightness offset, the noise) are seeded by ``(seed, kind, image index)``, so an evaluation is
reproducible and every model sees the very same shifted images. The transforms work on uint8 images at the
model's input size; geometric ones move the ground-truth mask with the image (nearest neighbour), so pixel
metrics stay meaningful.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["FULL_STRENGTH", "KINDS", "Shift", "apply_shift", "parse_shifts"]

#: What strength 1 means for each kind (docs/evaluation.md, "Domain shift").
FULL_STRENGTH: dict[str, str] = {
    "affine": "rotation up to +/-10 degrees, translation up to +/-5 % of the side, scale 0.9-1.1 "
    "(uniform draws)",
    "scale": "down-scaled to 1/4 of the side (area filter) and up-scaled back (bilinear): lost focus/detail",
    "brightness": "brightness offset up to +/-20 % of full scale and contrast 0.7-1.3 about the mean",
    "noise": "additive Gaussian noise, sigma 10 % of full scale (25.5 grey levels)",
}
KINDS: tuple[str, ...] = tuple(FULL_STRENGTH)

_MAX_ROTATION_DEG, _MAX_TRANSLATION, _MAX_SCALE = 10.0, 0.05, 0.1
_MAX_DOWNSCALE = 3.0  # strength 1: side / (1 + 3) = 1/4
_MAX_BRIGHTNESS, _MAX_CONTRAST = 0.2, 0.3
_MAX_NOISE_SIGMA = 0.1 * 255.0


@dataclass(frozen=True)
class Shift:
    """One shift condition: a :data:`KINDS` entry at ``strength`` in [0, 1]."""

    kind: str
    strength: float

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown shift kind {self.kind!r}; choose from {', '.join(KINDS)}")
        if not (isinstance(self.strength, int | float) and math.isfinite(self.strength)):
            raise ValueError(f"shift strength must be a number in [0, 1], got {self.strength!r}")
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"shift strength must be in [0, 1], got {self.strength}")

    @property
    def name(self) -> str:
        """``<kind>@<strength>``, e.g. ``noise@0.5`` (folder and table names)."""
        return f"{self.kind}@{self.strength:g}"


def parse_shifts(kinds: str, strengths: str) -> list[Shift]:
    """Every ``kind x strength`` of two comma lists (``"all"`` = every kind); ValueError naming a bad item."""
    names = list(KINDS) if kinds.strip() == "all" else [k.strip() for k in kinds.split(",") if k.strip()]
    if not names:
        raise ValueError("no shift kind given")
    values = []
    for item in strengths.split(","):
        try:
            values.append(float(item))
        except ValueError:
            raise ValueError(f"shift strength {item.strip()!r} is not a number") from None
    if not values:
        raise ValueError("no shift strength given")
    return [Shift(kind, value) for kind in dict.fromkeys(names) for value in dict.fromkeys(values)]


def apply_shift(
    images: np.ndarray, masks: np.ndarray | None, indices: np.ndarray, shift: Shift, seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """``images`` (uint8 ``[N, H, W, C]``) and their ``masks`` (``[N, H, W]`` or None) under ``shift``.

    ``indices`` (``[N]`` ints, e.g. the record indices) seed each image's draws with ``seed``, so the same
    image gets the same shift whatever the batch it is in. Strength 0 returns the inputs unchanged.
    """
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images [N, H, W, C], got {images.dtype} {list(images.shape)}")
    if len(indices) != len(images) or (masks is not None and masks.shape != images.shape[:3]):
        raise ValueError(
            f"{len(images)} images need as many indices and [N, H, W] masks, got {len(indices)} and "
            f"{None if masks is None else list(masks.shape)}"
        )
    if shift.strength == 0.0:
        return images, masks
    out_images = np.empty_like(images)
    out_masks = None if masks is None else np.empty_like(masks)
    kind_id = KINDS.index(shift.kind)
    for i, index in enumerate(np.asarray(indices, dtype=np.int64)):
        rng = np.random.default_rng([seed, kind_id, int(index)])
        mask = None if masks is None else masks[i]
        image, mask = _TRANSFORMS[shift.kind](images[i], mask, shift.strength, rng)
        out_images[i] = image.reshape(images.shape[1:])
        if out_masks is not None:
            out_masks[i] = mask
    return out_images, out_masks


def _affine(image: np.ndarray, mask: np.ndarray | None, s: float, rng: np.random.Generator):
    h, w = image.shape[:2]
    angle = rng.uniform(-1.0, 1.0) * _MAX_ROTATION_DEG * s
    scale = 1.0 + rng.uniform(-1.0, 1.0) * _MAX_SCALE * s
    dx, dy = rng.uniform(-1.0, 1.0, size=2) * _MAX_TRANSLATION * s * np.array([w, h])
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), angle, scale)
    matrix[:, 2] += (dx, dy)
    # replicate the border: a black or mirrored border would itself look like an anomaly
    warped = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if mask is not None:
        mask = cv2.warpAffine(mask, matrix, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return warped, mask


def _scale(image: np.ndarray, mask: np.ndarray | None, s: float, rng: np.random.Generator):
    h, w = image.shape[:2]
    factor = 1.0 + _MAX_DOWNSCALE * s
    small = cv2.resize(
        image, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA
    )
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), mask  # geometry unchanged


def _brightness(image: np.ndarray, mask: np.ndarray | None, s: float, rng: np.random.Generator):
    offset = rng.uniform(-1.0, 1.0) * _MAX_BRIGHTNESS * s * 255.0
    contrast = 1.0 + rng.uniform(-1.0, 1.0) * _MAX_CONTRAST * s
    pixels = image.astype(np.float32)
    mean = float(pixels.mean())
    shifted = (pixels - mean) * contrast + mean + offset
    return np.clip(np.rint(shifted), 0, 255).astype(np.uint8), mask


def _noise(image: np.ndarray, mask: np.ndarray | None, s: float, rng: np.random.Generator):
    noisy = image.astype(np.float32) + rng.normal(0.0, _MAX_NOISE_SIGMA * s, size=image.shape)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8), mask


_TRANSFORMS = {"affine": _affine, "scale": _scale, "brightness": _brightness, "noise": _noise}
