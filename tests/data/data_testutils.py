"""Helpers for tfad.data tests (a unique module name: conftest.py is not importable twice)."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


def write_image(path: Path, array: np.ndarray) -> Path:
    """Write ``array`` (uint8 HxW or HxWx3 RGB) with the format given by the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), array), path
    return path


def gradient(height: int, width: int, offset: int = 0) -> np.ndarray:
    """A deterministic grey ramp (distinct values per image via ``offset``)."""
    ys, xs = np.mgrid[0:height, 0:width]
    return ((xs * 3 + ys * 2 + offset) % 256).astype(np.uint8)


def corrupt_copy(path: Path, kind: str) -> Path:
    """Damage ``path`` in place: 'truncate' (first 60 %), 'garbage' (random bytes) or 'empty'."""
    data = path.read_bytes()
    if kind == "truncate":
        path.write_bytes(data[: int(len(data) * 0.6)])
    elif kind == "garbage":
        path.write_bytes(os.urandom(200))
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        raise ValueError(kind)
    return path
