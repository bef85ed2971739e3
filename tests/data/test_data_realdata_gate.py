"""The realdata tests' gate: a missing magnetic_tile set skips them locally and fails them in CI (CI=true)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REALDATA_TESTS = Path("tests") / "data" / "test_data_realdata.py"


def _run_realdata_tests(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess:
    """Run tests/data/test_data_realdata.py in a fresh pytest with the data set pointed at a missing path."""
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["TFAD_MAGNETIC_TILE"] = str(tmp_path / "no-such-magnetic_tile")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", str(REALDATA_TESTS)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_missing_real_data_fails_under_ci(tmp_path) -> None:
    result = _run_realdata_tests(tmp_path, "true")
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    # a fixture's failure is reported as an error: counted as failed (scripts/junit_summary.py), never skipped
    assert re.search(r"\b1 (failed|error)\b", out) and "skipped" not in out, out
    assert "real data set not present" in out and "no-such-magnetic_tile" in out, out
    assert "CI=true, so the realdata tests must run" in out, out


def test_missing_real_data_skips_locally(tmp_path) -> None:
    result = _run_realdata_tests(tmp_path, None)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "1 skipped" in out and "failed" not in out, out
    assert "real data set not present" in out and "no-such-magnetic_tile" in out, out
