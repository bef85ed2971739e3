"""benchmarks/scoring_kernels.py: its errors, and the timing child's report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import scoring_kernels
from tfad.scoring import native

REPO = Path(__file__).resolve().parents[2]


def test_an_unknown_reference_revision_is_named() -> None:
    with pytest.raises(SystemExit, match="at 'no-such-revision'"):
        scoring_kernels.main(["--reference", "no-such-revision", "--isa", "avx2", "--threads", "1"])


@pytest.mark.parametrize("option", ["--rounds", "--repeats", "--patches"])
def test_counts_below_one_are_refused(option: str) -> None:
    with pytest.raises(SystemExit) as raised:
        scoring_kernels.main([option, "0"])
    assert raised.value.code == 2


def test_the_child_reports_times_and_outputs_of_one_product() -> None:
    library = native.build()
    command = [sys.executable, str(REPO / "benchmarks" / "scoring_kernels.py"), "--child", str(library)]
    result = subprocess.run(
        [*command, "--patches", "3", "--repeats", "2", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ssim_ms"] > 0 and report["heatmap_ms"] > 0
    assert len(report["ssim"]) == 3
    assert all(0.0 < value < 1.0 for value in report["ssim"])  # noise against perturbed noise
    assert len(report["heatmap_digest"]) == 3 * 16 * 16
