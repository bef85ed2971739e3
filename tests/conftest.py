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
    """The magnetic-tile set in the MVTec layout; when it is not present the test is skipped locally and
    fails in CI (CI=true: CI has a copy of shared/ beside the clone), as the C++ server tests do."""
    if not MAGNETIC_TILE.is_dir():
        message = (
            f"real data set not present: {MAGNETIC_TILE} (put shared/datasets/magnetic_tile beside the "
            "repository, or set TFAD_MAGNETIC_TILE)"
        )
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true, so the realdata tests must run", pytrace=False)
        pytest.skip(message)
    return MAGNETIC_TILE


@pytest.fixture(scope="session")
def tiny_vials(tmp_path_factory) -> Path:
    """3 good training products, 6 calib and 6 test products (some defective), 2 runs, 64x64 patches."""
    from tfad.data.synth_vials import generate_synth_vials

    root = tmp_path_factory.mktemp("tiny_vials") / "data"
    generate_synth_vials(
        str(root),
        n_products=3,
        n_runs=2,
        frames=1,
        vials=2,
        image_size=64,
        n_eval_products=6,
        defect_rate=0.5,
        seed=2,
    )
    return root
