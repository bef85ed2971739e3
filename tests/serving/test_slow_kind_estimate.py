"""benchmarks/slow_kind_estimate.py: the slow-kind ratio and its reference figures."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from benchmarks.slow_kind_estimate import REFERENCE_COMMIT, REFERENCES, estimate_slow_ms, slow_kind_ratio

REPO = Path(__file__).resolve().parents[2]


def test_the_ratio_is_the_slow_time_over_the_median_here() -> None:
    assert slow_kind_ratio(300.0, [100.0, 200.0, 150.0]) == pytest.approx(2.0)


def test_an_estimate_scales_the_median_here() -> None:
    assert estimate_slow_ms([10.0, 30.0, 20.0], 1.5) == pytest.approx(30.0)


@pytest.mark.parametrize("slow, here", [(300.0, []), (300.0, [0.0, 100.0]), (0.0, [100.0])])
def test_missing_or_non_positive_times_are_refused(slow: float, here: list[float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        slow_kind_ratio(slow, here)


def test_an_estimate_needs_times() -> None:
    with pytest.raises(ValueError, match="no times"):
        estimate_slow_ms([], 1.5)


def test_the_references_are_the_slow_kind_figures_of_the_reference_commit() -> None:
    """Each reference time is the 60-patch product ms of its preset's row in that commit's README."""
    shown = subprocess.run(
        ["git", "-C", str(REPO), "show", f"{REFERENCE_COMMIT}:README.md"], capture_output=True, text=True
    )
    if shown.returncode != 0:
        pytest.skip(f"this clone does not hold commit {REFERENCE_COMMIT}")
    readme = shown.stdout
    assert "2.45 GHz" in readme
    for preset, product_ms in REFERENCES.items():
        name = preset.rpartition(":")[2]
        row = re.search(rf"^\| `{re.escape(name)}`[^\n]*$", readme, re.M)
        assert row, preset
        cells = [cell.strip() for cell in row.group(0).strip("|").split("|")]
        assert float(cells[4]) == product_ms, (preset, cells)
