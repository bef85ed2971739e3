"""benchmarks/heatmap_png.py and its C++ tool: both encoders decode to the heatmaps; bad input is refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from serving_testutils import built_or_skip

from benchmarks.heatmap_png import TOOL, parse_args, run, synthetic_heatmaps


def tool_or_skip() -> Path:
    """The built tool (skipped locally when missing, a failure in CI)."""
    return built_or_skip(TOOL)


def test_synthetic_heatmaps_are_seeded_and_min_max_normalised() -> None:
    a, b = synthetic_heatmaps(3, 32, seed=5), synthetic_heatmaps(3, 32, seed=5)
    assert a.shape == (3, 32, 32) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert np.allclose(a.min(axis=(1, 2)), 0.0) and np.allclose(a.max(axis=(1, 2)), 1.0)


def test_a_run_checks_both_encoders_and_reports_their_bytes_and_ratio() -> None:
    tool = tool_or_skip()
    report = run(parse_args(["--patches", "4", "--size", "64", "--rounds", "2", "--tool", str(tool)]))
    assert report["heatmaps"] == 4 and report["rounds"] == 2
    for encoder in ("server", "zlib_rle"):
        assert (
            report[encoder]["p50_ms"] > 0 and report[encoder]["bytes"] > 8 + 25 + 12
        )  # signature, IHDR, IEND
    # smooth heatmaps: the Up filter leaves small differences, which the server's encoder codes in fewer bytes
    assert report["server"]["bytes"] < report["zlib_rle"]["bytes"]
    assert report["paired_ratio_min"] <= report["paired_ratio_median"] <= report["paired_ratio_max"]


def test_the_tool_refuses_a_short_file_and_bad_sizes(tmp_path: Path) -> None:
    tool = tool_or_skip()
    raw = tmp_path / "h.f32"
    np.zeros(10, np.float32).tofile(raw)
    short = subprocess.run([str(tool), str(raw), "1", "4", "4", "1"], capture_output=True, text=True)
    assert short.returncode == 2 and "holds 40 bytes, expected 64 (16 floats)" in short.stderr
    huge = subprocess.run([str(tool), str(raw), "4096", "8192", "8192", "1"], capture_output=True, text=True)
    assert huge.returncode == 2 and "expected 1099511627776" in huge.stderr  # refused before allocating 1 TiB
    bad = subprocess.run([str(tool), str(raw), "0", "4", "4", "1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "must be positive" in bad.stderr
    missing = subprocess.run(
        [str(tool), str(tmp_path / "none"), "1", "2", "2", "1"], capture_output=True, text=True
    )
    assert missing.returncode == 2 and "cannot open" in missing.stderr


def test_the_command_line_refuses_a_directory_without_a_manifest(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--model-dir", str(tmp_path), "--tool", __file__])
    with pytest.raises(SystemExit):
        parse_args(["--patches", "0", "--tool", __file__])
    with pytest.raises(SystemExit):
        parse_args(["--tool", str(tmp_path / "no-such-tool")])
