"""Fixtures shared by all test packages."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The real data set lives beside the repository (../shared); TFAD_MAGNETIC_TILE points elsewhere.
MAGNETIC_TILE = Path(
    os.environ.get("TFAD_MAGNETIC_TILE", REPO.parent / "shared" / "datasets" / "magnetic_tile")
)


@pytest.fixture(scope="session")
def magnetic_tile() -> Path:
    """The magnetic-tile set in the MVTec layout; the test is skipped when it is not present."""
    if not MAGNETIC_TILE.is_dir():
        pytest.skip(f"real data set not present: {MAGNETIC_TILE} (set TFAD_MAGNETIC_TILE)")
    return MAGNETIC_TILE
