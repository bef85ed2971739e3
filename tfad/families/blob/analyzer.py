"""Classic blob-analysis baseline (003 s. 4.2): the Halcon-style pipeline, framework-free.

No TensorFlow here: numpy, OpenCV and scikit-image only, so the baseline runs (and is tested) without the
deep-learning stack. On each grayscale uint8 image (RGB is converted to grey):

    grey -> background estimate -> contrast (polarity) -> threshold -> opening/closing (x ROI)
         -> connected components (8-connectivity) -> blob filters -> score, heatmap, blob list

- contrast: deviation from the background in grey units ``[0, 1]`` (grey / 255), clipped at 0;
- score: the largest blob strength ``area * mean contrast`` among surviving blobs (0.0 when none survives),
  a continuous value so that a threshold can be calibrated per region like any other family's score;
- heatmap: the contrast on surviving-blob pixels, 0 elsewhere, in ``[0, 1]`` and *not* renormalised, so
  heatmap values are comparable across images.

Images are ``uint8 [H, W, C]`` with ``H = W = image_size`` and ``C = channels`` (1 or 3); the caller resizes.
The parameters (:mod:`tfad.families.blob.parameters`) and the recipe for tuning them: docs/blob.md.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from skimage import filters, measure, morphology

from tfad.families.blob.parameters import CHANNELS, BlobParameters, is_int

BLOB_FORMAT = "tfad-blob/1"
CONFIG_FILE = "blob.json"
REFERENCE_FILE = "reference.npy"
ROI_FILE = "roi.npy"

# The reservoir sample for the "reference" median is drawn with this seed, so fitting twice on the same
# image stream gives the same reference.
RESERVOIR_SEED = 0


class BlobNotFittedError(RuntimeError):
    """A ``background="reference"`` analyzer was used before ``fit`` (or without a ``reference``)."""


def _median_uint8(pixels: np.ndarray) -> float:
    """``np.median`` of uint8 values via a 256-bin histogram (the same value, without a partition)."""
    cumulative = np.cumsum(np.bincount(pixels.ravel(), minlength=256))
    n = int(cumulative[-1])
    lower = int(np.searchsorted(cumulative, (n - 1) // 2, side="right"))
    upper = int(np.searchsorted(cumulative, n // 2, side="right"))
    return (lower + upper) / 2.0


@dataclass
class Blob:
    """One surviving blob, for explanations and audit trails.

    Attributes:
        label: id of the connected component in the label image of this image (8-connectivity, raster
            order of first pixel, numbered before filtering: ids of survivors need not be consecutive).
        area: pixels, at the analysed resolution.
        mean_contrast: mean contrast over the blob's pixels, grey units [0, 1].
        strength: ``area * mean_contrast`` (the score is the largest strength of the image).
        bbox: ``(min_row, min_col, max_row, max_col)``, max exclusive (scikit-image convention).
        centroid: ``(row, col)`` in pixels.
        eccentricity: of the ellipse with the same second moments (0 = disk, 1 = line).
        solidity: area / area of the convex hull (1 = convex).
    """

    label: int
    area: int
    mean_contrast: float
    strength: float
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    eccentricity: float
    solidity: float

    def to_dict(self) -> dict:
        """JSON-serialisable description (tuples become lists)."""
        return dataclasses.asdict(self)


class BlobAnalyzer:
    """The blob-analysis model: ``__call__`` maps ``uint8 [N, H, W, C]`` to scores and heatmaps.

    Stateless during analysis (thread-safe once constructed/fitted). ``background="reference"`` needs a
    reference image, from ``fit`` on good images or passed as ``reference``.
    """

    def __init__(
        self,
        params: BlobParameters,
        image_size: int,
        channels: int = 1,
        roi: np.ndarray | None = None,
        reference: np.ndarray | None = None,
    ) -> None:
        """Args:
        params: the pipeline parameters.
        image_size: H = W of the analysed images, pixels (the caller resizes).
        channels: 1 (grayscale) or 3 (RGB, converted to grey with OpenCV's 0.299 R + 0.587 G + 0.114 B).
        roi: optional ``[H, W]`` (or ``[H, W, 1]``) mask, non-zero = inspect; pixels outside never form blobs.
        reference: optional background image for ``"reference"``: uint8 ``[H, W]`` / ``[H, W, C]`` (converted
            like the inputs) or float ``[H, W]`` in grey units [0, 1]. ``fit`` replaces it.
        """
        if not isinstance(params, BlobParameters):
            raise ValueError(f"params must be a BlobParameters, got {type(params).__name__}")
        params.validate()
        if not is_int(image_size) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        if not is_int(channels) or channels not in CHANNELS:
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.params = params
        self.image_size = int(image_size)
        self.channels = int(channels)
        self._roi: np.ndarray | None = None
        self._reference: np.ndarray | None = None
        self.reference_stats: dict | None = None  # provenance of a fitted reference (saved in blob.json)
        self.roi = roi
        self.reference = reference
        # OpenCV morphology with scikit-image disks (the same structuring elements, faster than skimage's
        # binary morphology); OpenCV's default border value makes the image edge neither erode nor dilate a
        # blob that touches it.
        self._open_kernel = morphology.disk(params.opening_radius).astype(np.uint8)
        self._close_kernel = morphology.disk(params.closing_radius).astype(np.uint8)

    # --- state ---------------------------------------------------------------------------------------------

    @property
    def roi(self) -> np.ndarray | None:
        """Boolean ``[H, W]`` inspection mask, or None (inspect everything)."""
        return self._roi

    @roi.setter
    def roi(self, roi: np.ndarray | None) -> None:
        if roi is None:
            self._roi = None
            return
        roi = np.asarray(roi)
        if roi.ndim == 3 and roi.shape[-1] == 1:
            roi = roi[..., 0]
        expected = (self.image_size, self.image_size)
        if roi.shape != expected:
            raise ValueError(f"roi must have shape {expected} (or {expected + (1,)}), got {roi.shape}")
        if not (np.issubdtype(roi.dtype, np.number) or roi.dtype == bool):
            raise ValueError(f"roi must be numeric or boolean, got dtype {roi.dtype}")
        mask = roi != 0
        if not mask.any():
            # Inspecting nothing would accept every product: refuse rather than pass silently.
            raise ValueError("roi has no inspected (non-zero) pixel")
        mask.flags.writeable = False  # shared by concurrent analyse() calls: change it via the setter only
        self._roi = mask

    @property
    def reference(self) -> np.ndarray | None:
        """Reference background, float32 ``[H, W]`` in grey units [0, 1], or None."""
        return self._reference

    @reference.setter
    def reference(self, reference: np.ndarray | None) -> None:
        self.reference_stats = None  # provenance of a fitted reference only; fit sets it after this
        if reference is None:
            self._reference = None
            return
        reference = np.asarray(reference)
        size = self.image_size
        if reference.dtype == np.uint8:
            if reference.ndim == 2:
                reference = reference[..., None]
            self._check_image(reference, "reference")
            value = self._grey(reference).astype(np.float32) / np.float32(255.0)
        else:
            if not np.issubdtype(reference.dtype, np.floating):
                raise ValueError(f"reference must be uint8 or float in [0, 1], got dtype {reference.dtype}")
            if reference.shape != (size, size):
                raise ValueError(f"float reference must have shape {(size, size)}, got {reference.shape}")
            if not np.all(np.isfinite(reference)) or reference.min() < 0.0 or reference.max() > 1.0:
                raise ValueError("float reference must be finite and in [0, 1] (grey units)")
            value = reference.astype(np.float32)  # a copy: the caller's array stays theirs
        value.flags.writeable = False  # shared by concurrent analyse() calls: change it via the setter only
        self._reference = value

    def __repr__(self) -> str:
        return (
            f"BlobAnalyzer(image_size={self.image_size}, channels={self.channels}, "
            f"roi={'yes' if self._roi is not None else 'no'}, "
            f"reference={'yes' if self._reference is not None else 'no'}, params={self.params})"
        )

    # --- input handling ------------------------------------------------------------------------------------

    def _check_image(self, image: np.ndarray, what: str = "image") -> None:
        expected = (self.image_size, self.image_size, self.channels)
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
            got = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
            raise ValueError(f"{what} must be uint8 {list(expected)}, got dtype {got}")
        if image.shape != expected:
            raise ValueError(
                f"{what} must be uint8 {list(expected)} (H, W, C), got shape {list(image.shape)}"
            )

    def _as_image(self, image: np.ndarray) -> np.ndarray:
        """One uint8 [H, W, C] image ([H, W] accepted for grayscale), validated."""
        if isinstance(image, np.ndarray) and image.ndim == 2 and self.channels == 1:
            image = image[..., None]
        self._check_image(image)
        return image

    def _grey(self, image: np.ndarray) -> np.ndarray:
        """uint8 [H, W] grey image of a validated uint8 [H, W, C] image."""
        if self.channels == 1:
            return np.ascontiguousarray(image[..., 0])
        return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)

    # --- fitting -------------------------------------------------------------------------------------------

    def fit(self, images: Iterable[np.ndarray], max_reference_images: int = 256) -> BlobAnalyzer:
        """Learn the reference background from good images (``background="reference"`` only).

        ``images`` yields uint8 ``[H, W, C]`` images or ``[N, H, W, C]`` batches and is consumed once
        (streaming). The reference is the exact per-pixel median of at most ``max_reference_images`` grey
        images: all of them when there are that few, otherwise a uniform reservoir sample (Algorithm R,
        seed ``RESERVOIR_SEED``), so memory is ``max_reference_images * H * W`` bytes whatever the stream
        length and the result is reproducible. Other background modes do not need training: ``fit`` returns
        at once without reading ``images``.

        Raises ValueError for a wrong image dtype/shape or when the stream holds no image.
        """
        if self.params.background != "reference":
            return self
        if not is_int(max_reference_images) or max_reference_images < 1:
            raise ValueError(f"max_reference_images must be a positive integer, got {max_reference_images!r}")
        size = self.image_size
        reservoir = np.empty((max_reference_images, size, size), np.uint8)
        rng = np.random.default_rng(RESERVOIR_SEED)
        seen = 0
        for item in images:
            batch = np.asarray(item)
            if batch.ndim == 4:
                frames = batch
            elif batch.ndim == 3 or (batch.ndim == 2 and self.channels == 1):
                frames = batch[None]
            else:
                raise ValueError(
                    f"fit expects uint8 [H, W, C] images or [N, H, W, C] batches with H = W = {size}, "
                    f"C = {self.channels}, got shape {list(batch.shape)}"
                )
            for frame in frames:
                grey = self._grey(self._as_image(frame))
                if seen < max_reference_images:
                    reservoir[seen] = grey
                else:
                    slot = int(rng.integers(0, seen + 1))
                    if slot < max_reference_images:
                        reservoir[slot] = grey
                seen += 1
        if seen == 0:
            raise ValueError('background="reference" needs good training images to fit, got none')
        used = min(seen, max_reference_images)
        median = np.median(reservoir[:used], axis=0)
        self.reference = (median / 255.0).astype(np.float32)
        self.reference_stats = {"images_seen": seen, "images_used": used, "seed": RESERVOIR_SEED}
        return self

    # --- analysis ------------------------------------------------------------------------------------------

    def contrast(self, image: np.ndarray) -> np.ndarray:
        """Contrast image float32 ``[H, W]`` in [0, 1] of one uint8 image (steps 1-2), 0 outside the ROI.

        Useful for tuning: ``threshold_value`` should exceed the contrast of good images (docs/blob.md).
        """
        return self._contrast(self._grey(self._as_image(image)))

    def _contrast(self, grey: np.ndarray) -> np.ndarray:
        p = self.params
        g = grey.astype(np.float32) * np.float32(1.0 / 255.0)
        if p.background == "local":
            background: np.ndarray | np.float32 = cv2.medianBlur(grey, p.background_size).astype(
                np.float32
            ) * np.float32(1.0 / 255.0)
        elif p.background == "reference":
            if self._reference is None:
                raise BlobNotFittedError(
                    'background="reference" but no reference image: call fit(good_images) or pass reference='
                )
            background = self._reference
        else:
            pixels = grey[self._roi] if self._roi is not None else grey
            background = np.float32(_median_uint8(pixels) / 255.0)
        if p.polarity == "dark":
            contrast = background - g
        elif p.polarity == "bright":
            contrast = g - background
        else:
            contrast = np.abs(g - background)
        np.clip(contrast, 0.0, 1.0, out=contrast)
        if self._roi is not None:
            contrast[~self._roi] = 0.0
        return contrast

    def _foreground(self, contrast: np.ndarray) -> np.ndarray:
        """Thresholded, morphologically cleaned uint8 0/1 mask restricted to the ROI (steps 3-4, 7)."""
        p = self.params
        if p.threshold == "global":
            mask = contrast > p.threshold_value
        elif p.threshold == "otsu":
            values = contrast[self._roi] if self._roi is not None else contrast
            level = float(filters.threshold_otsu(values)) if values.size else 0.0
            mask = contrast > max(level, p.threshold_value)
        else:
            local = filters.threshold_local(contrast, block_size=p.local_block_size, offset=p.local_offset)
            mask = (contrast > local) & (contrast > p.threshold_value)
        if self._roi is not None:
            # Already implied (contrast is 0 outside the ROI and foreground needs contrast > a threshold
            # >= 0); kept explicit because the ROI is a safety property.
            mask &= self._roi
        mask = mask.astype(np.uint8)
        if p.opening_radius > 0:
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open_kernel)
        if p.closing_radius > 0:
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close_kernel)
            if self._roi is not None:
                mask[~self._roi] = 0  # closing can grow across the ROI border
        return mask

    def analyse(self, image: np.ndarray) -> tuple[float, np.ndarray, list[Blob]]:
        """Analyse one uint8 ``[H, W, C]`` image (``[H, W]`` accepted when ``channels == 1``).

        Returns ``(score, heatmap, blobs)``: the largest blob strength (area * mean contrast, 0.0 without
        blobs), the float32 ``[H, W]`` heatmap (contrast on surviving blobs, 0 elsewhere, in [0, 1]), and the
        surviving blobs sorted by decreasing strength.
        """
        p = self.params
        contrast = self._contrast(self._grey(self._as_image(image)))
        mask = self._foreground(contrast)
        labels = measure.label(mask, connectivity=2)
        count = int(labels.max())
        heatmap = np.zeros_like(contrast)
        if count == 0:
            return 0.0, heatmap, []
        # Area and contrast filters vectorised over all components; the shape measures (convex hulls) are
        # computed only for the candidates left.
        foreground = np.flatnonzero(mask)  # blobs are sparse: count over their pixels only
        flat = labels.ravel()[foreground]
        areas = np.bincount(flat, minlength=count + 1)
        sums = np.bincount(flat, weights=contrast.ravel()[foreground], minlength=count + 1)
        means = sums / np.maximum(areas, 1)
        keep = (areas >= p.min_area) & (means >= p.min_contrast)
        if p.max_area is not None:
            keep &= areas <= p.max_area
        keep[0] = False
        candidates = np.flatnonzero(keep)
        if candidates.size == 0:
            return 0.0, heatmap, []
        regions = measure.regionprops(labels)  # lazy: properties are computed on access
        blobs: list[Blob] = []
        for label_id in candidates:
            region = regions[label_id - 1]
            eccentricity = float(region.eccentricity)
            if p.max_eccentricity is not None and eccentricity > p.max_eccentricity:
                continue
            solidity = float(region.solidity)
            if p.min_solidity is not None and solidity < p.min_solidity:
                continue
            area = int(areas[label_id])
            mean = float(means[label_id])
            blobs.append(
                Blob(
                    label=int(label_id),
                    area=area,
                    mean_contrast=mean,
                    strength=area * mean,
                    bbox=tuple(int(v) for v in region.bbox),
                    centroid=(float(region.centroid[0]), float(region.centroid[1])),
                    eccentricity=eccentricity,
                    solidity=solidity,
                )
            )
        if not blobs:
            return 0.0, heatmap, []
        blobs.sort(key=lambda b: (-b.strength, b.label))
        surviving = np.zeros(count + 1, bool)
        surviving[[b.label for b in blobs]] = True
        np.copyto(heatmap, contrast, where=surviving[labels])
        np.clip(heatmap, 0.0, 1.0, out=heatmap)
        return float(blobs[0].strength), heatmap, blobs

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Score a batch: uint8 ``[N, H, W, C]`` -> ``{"score": float64 [N], "heatmap": float32 [N, H, W]}``.

        Raises ValueError naming the expected and the received dtype/shape.
        """
        size, channels = self.image_size, self.channels
        expected = [size, size, channels]
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            got = images.dtype if isinstance(images, np.ndarray) else type(images).__name__
            raise ValueError(f"images must be uint8 [N, {size}, {size}, {channels}], got dtype {got}")
        if images.ndim != 4 or list(images.shape[1:]) != expected:
            raise ValueError(
                f"images must be uint8 [N, {size}, {size}, {channels}] (N, H, W, C), got shape "
                f"{list(images.shape)}"
            )
        scores = np.zeros(len(images), np.float64)
        heatmaps = np.zeros((len(images), size, size), np.float32)
        for i, image in enumerate(images):
            scores[i], heatmaps[i], _ = self.analyse(image)
        return {"score": scores, "heatmap": heatmaps}

    # --- persistence ---------------------------------------------------------------------------------------

    def save(self, directory: str | Path) -> None:
        """Write ``blob.json`` (format ``tfad-blob/1``: params, image_size, channels, which arrays exist,
        reference provenance) and ``reference.npy`` (float32 [H, W]) / ``roi.npy`` (uint8 0/1 [H, W]) when
        present. The directory is created when missing; existing files of these names are replaced.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._reference is not None:
            np.save(directory / REFERENCE_FILE, self._reference.astype(np.float32), allow_pickle=False)
        if self._roi is not None:
            np.save(directory / ROI_FILE, self._roi.astype(np.uint8), allow_pickle=False)
        config = {
            "format": BLOB_FORMAT,
            "image_size": self.image_size,
            "channels": self.channels,
            "params": self.params.to_dict(),
            "reference": REFERENCE_FILE if self._reference is not None else None,
            "roi": ROI_FILE if self._roi is not None else None,
            "reference_stats": self.reference_stats,
        }
        # Written last, via a temporary file: a directory with a complete blob.json has all its arrays.
        tmp = directory / (CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(config, indent=2) + "\n")
        tmp.replace(directory / CONFIG_FILE)

    @classmethod
    def load(cls, directory: str | Path) -> BlobAnalyzer:
        """Load an analyzer written by ``save``.

        Raises FileNotFoundError naming a missing file, ValueError naming the file and the problem for a
        corrupt or inconsistent one.
        """
        directory = Path(directory)
        path = directory / CONFIG_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: blob model file not found")
        try:
            config = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(config, dict):
            raise ValueError(f"{path}: expected a JSON object")
        if config.get("format") != BLOB_FORMAT:
            raise ValueError(f"{path}: format must be {BLOB_FORMAT!r}, got {config.get('format')!r}")
        for key in ("image_size", "channels", "params"):
            if key not in config:
                raise ValueError(f"{path}: missing key {key!r}")
        try:
            params = BlobParameters.from_dict(config["params"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: invalid params: {err}") from err
        try:
            analyzer = cls(params, config["image_size"], config["channels"])
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
        for key, expected_name, setter in (
            ("reference", REFERENCE_FILE, cls.reference.fset),
            ("roi", ROI_FILE, cls.roi.fset),
        ):
            name = config.get(key)
            if name is None:
                continue
            if name != expected_name:  # never follow a path out of the directory
                raise ValueError(f"{path}: {key} must be null or {expected_name!r}, got {name!r}")
            array_path = directory / name
            if not array_path.is_file():
                raise FileNotFoundError(f"{array_path}: {key} array listed in {CONFIG_FILE} not found")
            try:
                array = np.load(array_path, allow_pickle=False)
            except (ValueError, OSError, EOFError) as err:
                raise ValueError(f"{array_path}: not a readable .npy array ({err})") from err
            try:
                setter(analyzer, array)
            except ValueError as err:
                raise ValueError(f"{array_path}: {err}") from err
        stats = config.get("reference_stats")
        analyzer.reference_stats = stats if isinstance(stats, dict) else None
        return analyzer
