"""benchmarks/serving_modes.py: its command line, and the table it makes of the rounds."""

from __future__ import annotations

import argparse
import re
import sys

import pytest

from benchmarks import serving_modes
from benchmarks.serving_modes import DEFAULT_MODE, MODES, measure, parse_args


def test_a_run_needs_a_model_and_valid_modes() -> None:
    with pytest.raises(SystemExit):
        parse_args([])  # no --model-dir, no --build
    for modes in ("0,9", "-1", "0,0", ",", "one"):  # out of range, repeated, empty, not a number
        with pytest.raises(SystemExit):
            parse_args(["--model-dir", "m/1", "--modes", modes])
    with pytest.raises(SystemExit):
        parse_args(["--model-dir", "m/1", "--seconds", "0"])
    args = parse_args(["--model-dir", "m/1", "--modes", "0,3"])
    assert args.mode_names == [DEFAULT_MODE, list(MODES)[3]]


def test_every_mode_runs_once_per_round_in_a_rotated_order_and_the_table_holds_medians_and_ratios(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    order: list[str] = []
    rates = {DEFAULT_MODE: iter([10.0, 12.0, 11.0]), "2 workers x 1 core": iter([15.0, 13.0, 12.0])}

    def fake_run_mode(model_dir, mode, args):
        order.append(mode)
        return {"products_per_s": next(rates[mode]), "call": {"p50_ms": 100.0, "p99_ms": 150.0}}

    monkeypatch.setattr(serving_modes, "run_mode", fake_run_mode)
    args = argparse.Namespace(mode_names=[DEFAULT_MODE, "2 workers x 1 core"], rounds=3)
    table = {row["mode"]: row for row in measure("m/1", args)["table"]}

    # each round runs both modes, the first round starting with the default and the second with the other
    assert order[:2] == [DEFAULT_MODE, "2 workers x 1 core"]
    assert order[2:4] == ["2 workers x 1 core", DEFAULT_MODE]
    assert sorted(order) == sorted([DEFAULT_MODE, "2 workers x 1 core"] * 3)
    assert table[DEFAULT_MODE]["products_per_s"] == 11.0 and table[DEFAULT_MODE]["ratio_to_default"] == 1.0
    assert table["2 workers x 1 core"]["products_per_s"] == 13.0
    assert table["2 workers x 1 core"]["range"] == [12.0, 15.0]
    # the rounds' own ratios 1.5, 13/12 and 12/11: their median, not the ratio of the medians (13/11)
    assert table["2 workers x 1 core"]["ratio_to_default"] == pytest.approx(12.0 / 11.0, abs=1e-3)
    assert table["2 workers x 1 core"]["ratio_range"] == pytest.approx([13.0 / 12.0, 1.5], abs=1e-3)


@pytest.mark.parametrize(
    "script, expected",
    [
        ("import time; time.sleep(120)", "did not load and warm up in time"),  # a load that never ends
        ("import sys; sys.exit(3)", "exited (3) before it could load and warm up"),
        ("print('READY', flush=True); input(); print('no result')", "exited (0) before it could report"),
    ],
)
def test_a_worker_that_hangs_or_dies_ends_the_mode_with_an_error_and_leaves_no_process(
    monkeypatch: pytest.MonkeyPatch, script: str, expected: str
) -> None:
    started: list = []
    real_popen = serving_modes.subprocess.Popen

    def popen(*a, **k):
        started.append(real_popen(*a, **k))
        return started[-1]

    monkeypatch.setattr(serving_modes, "worker_command", lambda *a: [sys.executable, "-c", script])
    monkeypatch.setattr(serving_modes.subprocess, "Popen", popen)
    args = parse_args(["--model-dir", "m/1", "--seconds", "0.1", "--load-timeout", "3"])
    with pytest.raises(RuntimeError, match=re.escape(expected)):
        serving_modes.run_mode("m/1", "2 workers x 1 core", args)
    assert len(started) == 2 and all(child.poll() is not None for child in started)
