"""The score table: what evaluation code produces and what calibration and reports consume.

A :class:`ScoreTable` is columnar: one numpy array per record field (``tfad.data.records.ImageRecord``)
plus the image score, and optionally per-image heatmaps and ground-truth masks behind an
:class:`ArraySource`, which hands out one ``[H, W]`` array at a time. Heatmaps can therefore live in a
memory-mapped ``.npy`` stack (:func:`open_heatmap_store`, :meth:`ScoreTable.save` /
:meth:`ScoreTable.load`) or in one file per image, and the pixel metrics stream over them.

Memory: the columns cost ~ a few hundred bytes per image. In-RAM heatmaps cost ``4 * H * W`` bytes each
(256 KiB at 256x256, so 10 000 maps = 2.6 GB): for large evaluations write them to a store and load the
table with ``mmap=True``; the report then touches one map at a time.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

__all__ = [
    "ArraySource",
    "FileSource",
    "ScoreTable",
    "StackSource",
    "open_heatmap_store",
]

TABLE_FILE = "scores.csv"
HEATMAP_FILE = "heatmaps.npy"
MASK_FILE = "masks.npy"
_COLUMNS = (
    "path",
    "label",
    "defect_type",
    "region",
    "product_id",
    "run_id",
    "frame",
    "vial",
    "mask_path",
    "score",
)
# written since the acquisition check; tables written before it lack them (read as NaN: not known)
_PIXEL_COLUMNS = ("blank", "pixel_mean", "pixel_std")


class ArraySource(Protocol):
    """Per-image 2-D arrays, loaded on demand. ``get(i)`` returns ``[H, W]`` or ``None`` (not available)."""

    def __len__(self) -> int: ...

    def get(self, index: int) -> np.ndarray | None: ...


class StackSource:
    """An ``[N, H, W]`` array (in RAM or a ``np.memmap``); ``get`` returns views, nothing is copied."""

    def __init__(self, stack: np.ndarray):
        if stack.ndim == 4 and stack.shape[-1] == 1:  # NHWC single channel
            stack = stack[..., 0]
        if stack.ndim != 3:
            raise ValueError(f"an array stack must be [N, H, W] (or [N, H, W, 1]), got shape {stack.shape}")
        self.stack = stack

    def __len__(self) -> int:
        return int(self.stack.shape[0])

    def get(self, index: int) -> np.ndarray:
        return self.stack[index]


class FileSource:
    """One file per image: ``.npy`` (loaded with ``np.load``) or an image (PNG, ... via scikit-image).

    ``None`` entries mean "not available". Images with a channel axis are reduced with ``max`` over
    channels (mask convention: non-zero = defect).
    """

    def __init__(self, paths: Sequence[str | None]):
        self.paths = [None if p in (None, "") else str(p) for p in paths]

    def __len__(self) -> int:
        return len(self.paths)

    def get(self, index: int) -> np.ndarray | None:
        path = self.paths[index]
        if path is None:
            return None
        if not os.path.exists(path):
            raise FileNotFoundError(f"array file of sample {index} not found: {path}")
        if path.endswith(".npy"):
            arr = np.load(path)
        else:
            from skimage.io import imread  # scikit-image is a dependency; imported lazily (slow import)

            arr = imread(path)
        if arr.ndim == 3:
            arr = arr.max(axis=-1)
        if arr.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D array/image, got shape {arr.shape}")
        return arr


class _IndexedSource:
    """A view of another source through an index array (for :meth:`ScoreTable.subset`)."""

    def __init__(self, base: ArraySource, indices: np.ndarray):
        self.base = base
        self.indices = indices

    def __len__(self) -> int:
        return int(self.indices.size)

    def get(self, index: int) -> np.ndarray | None:
        return self.base.get(int(self.indices[index]))


def open_heatmap_store(path: str, n: int, height: int, width: int) -> np.memmap:
    """Create a float32 ``[n, height, width]`` ``.npy`` file opened for writing, to fill batch by batch.

    ``store[i:j] = batch_heatmaps`` then ``store.flush()``; read back with ``np.load(path, mmap_mode="r")``
    or :meth:`ScoreTable.load`.
    """
    return np.lib.format.open_memmap(
        path, mode="w+", dtype=np.float32, shape=(int(n), int(height), int(width))
    )


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _str_column(values: Iterable[Any], n: int, name: str) -> np.ndarray:
    arr = np.asarray(["" if v is None else str(v) for v in values], dtype=object)
    if arr.shape != (n,):
        raise ValueError(f"column {name!r} has {arr.shape[0]} entries, expected {n}")
    return arr


@dataclass
class ScoreTable:
    """Per-image evaluation results, columnar.

    Required: ``scores`` and ``labels`` (0 good, 1 defective, -1 unknown). The other record columns
    default to ``""`` / ``"all"`` / ``0``. ``heatmaps`` and ``masks`` are optional per-image sources;
    when ``masks`` is None, ``mask_paths`` (from the records) are used. A good image without a mask has
    an all-zero mask; a defective one without a mask is left out of pixel metrics (and counted).
    """

    scores: np.ndarray
    labels: np.ndarray
    paths: np.ndarray | None = None
    regions: np.ndarray | None = None
    product_ids: np.ndarray | None = None
    run_ids: np.ndarray | None = None
    defect_types: np.ndarray | None = None
    frames: np.ndarray | None = None
    vials: np.ndarray | None = None
    mask_paths: np.ndarray | None = None
    # each image as scored: blank (every pixel one value; tfad.data.decode.blank_images), its mean grey
    # level and pixel standard deviation (pixel_statistics; NaN = not known), for the blank-patch and
    # acquisition rules
    blanks: np.ndarray | None = None
    pixel_means: np.ndarray | None = None
    pixel_stds: np.ndarray | None = None
    heatmaps: ArraySource | None = field(default=None, repr=False)
    masks: ArraySource | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if self.scores.ndim != 1:
            raise ValueError(f"scores must be 1-D, got shape {self.scores.shape}")
        n = self.scores.shape[0]
        if not np.isfinite(self.scores).all():
            bad = np.flatnonzero(~np.isfinite(self.scores))[:5].tolist()
            raise ValueError(f"scores contain NaN/inf (first sample indices: {bad})")
        self.labels = np.asarray(self.labels).astype(np.int64)
        if self.labels.shape != (n,):
            raise ValueError(f"labels has shape {self.labels.shape}, expected ({n},)")
        if not np.isin(self.labels, (-1, 0, 1)).all():
            raise ValueError("labels must be 0 (good), 1 (defective) or -1 (unknown)")
        self.paths = _str_column(self.paths if self.paths is not None else [""] * n, n, "paths")
        self.regions = _str_column(self.regions if self.regions is not None else ["all"] * n, n, "regions")
        if (self.regions == "").any():
            raise ValueError("region names must be non-empty (use 'all' for data without regions)")
        self.product_ids = _str_column(
            self.product_ids if self.product_ids is not None else [""] * n, n, "product_ids"
        )
        self.run_ids = _str_column(self.run_ids if self.run_ids is not None else [""] * n, n, "run_ids")
        if self.defect_types is None:
            self.defect_types = [
                "good" if lab == 0 else ("defective" if lab == 1 else "unknown") for lab in self.labels
            ]
        self.defect_types = _str_column(self.defect_types, n, "defect_types")
        for name in ("frames", "vials"):
            value = getattr(self, name)
            arr = np.zeros(n, dtype=np.int64) if value is None else np.asarray(value).astype(np.int64)
            if arr.shape != (n,):
                raise ValueError(f"{name} has shape {arr.shape}, expected ({n},)")
            setattr(self, name, arr)
        if self.mask_paths is None:
            self.mask_paths = np.full(n, None, dtype=object)
        else:
            self.mask_paths = np.asarray(
                [None if p in (None, "") else str(p) for p in self.mask_paths], dtype=object
            )
            if self.mask_paths.shape != (n,):
                raise ValueError(f"mask_paths has {self.mask_paths.shape[0]} entries, expected {n}")
        self.blanks = np.zeros(n, dtype=bool) if self.blanks is None else np.asarray(self.blanks, dtype=bool)
        if self.blanks.shape != (n,):
            raise ValueError(f"blanks has shape {self.blanks.shape}, expected ({n},)")
        for name in ("pixel_means", "pixel_stds"):
            value = getattr(self, name)
            arr = np.full(n, np.nan) if value is None else np.asarray(value, dtype=np.float64)
            if arr.shape != (n,):
                raise ValueError(f"{name} has shape {arr.shape}, expected ({n},)")
            setattr(self, name, arr)
        for name in ("heatmaps", "masks"):
            source = getattr(self, name)
            if isinstance(source, np.ndarray):
                source = StackSource(source)
                setattr(self, name, source)
            if source is not None and len(source) != n:
                raise ValueError(f"{name} has {len(source)} entries for {n} samples")

    # ---- construction

    @classmethod
    def from_records(
        cls,
        records: Sequence[Any],
        scores: Iterable[float],
        heatmaps: ArraySource | np.ndarray | None = None,
        masks: ArraySource | np.ndarray | None = None,
        blanks: Iterable[bool] | None = None,
        pixel_means: Iterable[float] | None = None,
        pixel_stds: Iterable[float] | None = None,
    ) -> ScoreTable:
        """Build from ``ImageRecord``-like objects (duck-typed: path, label, defect_type, mask_path,
        region, product_id, run_id, frame, vial) and one score per record."""
        records = list(records)
        return cls(
            scores=np.asarray(list(scores), dtype=np.float64),
            labels=[r.label for r in records],
            paths=[r.path for r in records],
            regions=[getattr(r, "region", "all") for r in records],
            product_ids=[getattr(r, "product_id", "") for r in records],
            run_ids=[getattr(r, "run_id", "") for r in records],
            defect_types=[r.defect_type for r in records],
            frames=[getattr(r, "frame", 0) for r in records],
            vials=[getattr(r, "vial", 0) for r in records],
            mask_paths=[getattr(r, "mask_path", None) for r in records],
            blanks=None if blanks is None else list(blanks),
            pixel_means=None if pixel_means is None else list(pixel_means),
            pixel_stds=None if pixel_stds is None else list(pixel_stds),
            heatmaps=heatmaps,
            masks=masks,
        )

    # ---- access

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def has_heatmaps(self) -> bool:
        return self.heatmaps is not None

    def heatmap(self, index: int) -> np.ndarray | None:
        """The image's heatmap ``[H, W]`` as float64, or None when the table has none."""
        if self.heatmaps is None:
            return None
        arr = self.heatmaps.get(index)
        return None if arr is None else np.asarray(arr, dtype=np.float64)

    def mask(self, index: int, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """Boolean ground-truth mask ``[H, W]`` (True = defect pixel).

        Source order: ``masks``, then ``mask_paths``. Without either, a good image (label 0) gets an
        all-False mask of ``shape`` (the heatmap's); a defective or unknown one gets None.
        """
        arr = self.masks.get(index) if self.masks is not None else None
        if arr is None and self.mask_paths[index] is not None:
            arr = FileSource([self.mask_paths[index]]).get(0)
        if arr is not None:
            return np.asarray(arr) != 0
        if self.labels[index] == 0 and shape is not None:
            return np.zeros(shape, dtype=bool)
        return None

    def product_keys(self) -> list[tuple[str, str]]:
        """One key per sample identifying one acquisition of one product: ``(run_id, product_id)``."""
        return list(zip(self.run_ids.tolist(), self.product_ids.tolist(), strict=True))

    def subset(self, selection: np.ndarray) -> ScoreTable:
        """Rows selected by a boolean mask or an index array (heatmaps/masks stay lazy)."""
        idx = np.asarray(selection)
        idx = np.flatnonzero(idx) if idx.dtype == bool else idx.astype(np.int64)
        return ScoreTable(
            scores=self.scores[idx],
            labels=self.labels[idx],
            paths=self.paths[idx],
            regions=self.regions[idx],
            product_ids=self.product_ids[idx],
            run_ids=self.run_ids[idx],
            defect_types=self.defect_types[idx],
            frames=self.frames[idx],
            vials=self.vials[idx],
            mask_paths=self.mask_paths[idx],
            blanks=self.blanks[idx],
            pixel_means=self.pixel_means[idx],
            pixel_stds=self.pixel_stds[idx],
            heatmaps=None if self.heatmaps is None else _IndexedSource(self.heatmaps, idx),
            masks=None if self.masks is None else _IndexedSource(self.masks, idx),
        )

    def row(self, index: int) -> dict:
        """The record fields and score of one sample as a plain dict (JSON-serialisable)."""
        return {
            "path": str(self.paths[index]),
            "label": int(self.labels[index]),
            "defect_type": str(self.defect_types[index]),
            "region": str(self.regions[index]),
            "product_id": str(self.product_ids[index]),
            "run_id": str(self.run_ids[index]),
            "frame": int(self.frames[index]),
            "vial": int(self.vials[index]),
            "mask_path": self.mask_paths[index],
            "score": float(self.scores[index]),
            "blank": bool(self.blanks[index]),
            "pixel_mean": _finite_or_none(self.pixel_means[index]),
            "pixel_std": _finite_or_none(self.pixel_stds[index]),
        }

    # ---- persistence

    def save(self, directory: str) -> None:
        """Write ``scores.csv`` (columns + repr-exact scores) and, when present, ``heatmaps.npy`` and
        ``masks.npy`` (float32 / uint8 stacks, written one image at a time)."""
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, TABLE_FILE), "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(_COLUMNS + _PIXEL_COLUMNS)
            for i in range(len(self)):
                row = self.row(i)
                row["mask_path"] = row["mask_path"] or ""
                row["score"] = repr(row["score"])
                row["blank"] = int(row["blank"])
                for column in ("pixel_mean", "pixel_std"):
                    row[column] = "" if row[column] is None else repr(row[column])
                writer.writerow([row[c] for c in _COLUMNS + _PIXEL_COLUMNS])
        for name, filename, dtype in (("heatmaps", HEATMAP_FILE, np.float32), ("masks", MASK_FILE, np.uint8)):
            source = getattr(self, name)
            if source is None or len(self) == 0:
                continue
            first = source.get(0)
            if first is None:
                raise ValueError(f"cannot save {name}: sample 0 has none (a stack needs every entry)")
            store = np.lib.format.open_memmap(
                os.path.join(directory, filename), mode="w+", dtype=dtype, shape=(len(self), *first.shape)
            )
            for i in range(len(self)):
                arr = source.get(i)
                if arr is None or arr.shape != first.shape:
                    raise ValueError(f"cannot save {name}: sample {i} is missing or has a different shape")
                store[i] = (np.asarray(arr) != 0) if dtype == np.uint8 else arr
            store.flush()
            del store

    @classmethod
    def load(cls, directory: str, mmap: bool = True) -> ScoreTable:
        """Read a table written by :meth:`save`; stacks are memory-mapped when ``mmap`` is True."""
        table_path = os.path.join(directory, TABLE_FILE)
        if not os.path.exists(table_path):
            raise FileNotFoundError(f"no score table at {table_path}")
        with open(table_path, newline="") as fh:
            reader = csv.DictReader(fh)
            missing = set(_COLUMNS) - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{table_path}: missing columns {sorted(missing)}")
            rows = list(reader)
        scores = [float(r["score"]) for r in rows]
        if not all(math.isfinite(s) for s in scores):
            raise ValueError(f"{table_path}: non-finite scores")
        sources = {}
        for name, filename in (("heatmaps", HEATMAP_FILE), ("masks", MASK_FILE)):
            path = os.path.join(directory, filename)
            sources[name] = (
                StackSource(np.load(path, mmap_mode="r" if mmap else None)) if os.path.exists(path) else None
            )
        return cls(
            scores=np.asarray(scores, dtype=np.float64),
            labels=[int(r["label"]) for r in rows],
            paths=[r["path"] for r in rows],
            regions=[r["region"] for r in rows],
            product_ids=[r["product_id"] for r in rows],
            run_ids=[r["run_id"] for r in rows],
            defect_types=[r["defect_type"] for r in rows],
            frames=[int(r["frame"]) for r in rows],
            vials=[int(r["vial"]) for r in rows],
            mask_paths=[r["mask_path"] or None for r in rows],
            blanks=[r.get("blank") == "1" for r in rows],
            pixel_means=[float(r.get("pixel_mean") or "nan") for r in rows],
            pixel_stds=[float(r.get("pixel_std") or "nan") for r in rows],
            heatmaps=sources["heatmaps"],
            masks=sources["masks"],
        )
