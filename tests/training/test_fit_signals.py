"""Stopping ``tfad fit``: SIGTERM (a scheduler, ``kill``) or SIGINT (Ctrl-C) in a real process finishes the
step, saves a checkpoint, records the interruption in run.json, exits with 130, and ``tfad fit --resume``
continues from that step to the end; a request on an epoch's last step or during its validation ends that
epoch first; a second Ctrl-C stops at once without a checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tiny_config

from tfad.training.fit import fit

pytestmark = pytest.mark.slow

EPOCHS, STEPS_PER_EPOCH = 4, 20
EXIT_INTERRUPTED = 130  # tfad fit's documented exit code of an interrupted run (README, "Workflow")
STARTUP_TIMEOUT_S = 120.0  # TensorFlow import + data + model build, on a loaded 2-core machine


def _run_info(run_dir: Path) -> dict:
    """run.json, or {} while it does not exist yet (it is replaced atomically, never half-written)."""
    try:
        return json.loads((run_dir / "run.json").read_text())
    except FileNotFoundError:
        return {}


def _wait_until(condition: Callable[[], bool], proc: subprocess.Popen, log: Path, timeout_s: float) -> None:
    """Poll ``condition`` until it holds; fail (with the log) if the process ends or time runs out first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"tfad fit ended (code {proc.returncode}) before training began:\n{log.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"training did not start within {timeout_s} s:\n{log.read_text()}")
        time.sleep(0.02)


def _tfad(*args: str) -> list[str]:
    return [sys.executable, "-m", "tfad", *args]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_saves_a_checkpoint_that_resume_continues(
    signum: signal.Signals, tiny_vials: Path, tmp_path: Path
) -> None:
    config = tiny_config(tiny_vials, tmp_path / "runs", epochs=EPOCHS, steps_per_epoch=STEPS_PER_EPOCH)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    run_dir, total = config.run_dir, EPOCHS * STEPS_PER_EPOCH
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    log = tmp_path / "fit.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(_tfad("fit", str(path), "--no-progress"), stdout=out, stderr=out, env=env)
    try:
        # Training has started once the first backup (every 5 steps) is noted in run.json: the loop and
        # its signal handlers are in place, and most of the 80 steps are still to come.
        _wait_until(lambda: _run_info(run_dir).get("global_step", 0) >= 5, proc, log, STARTUP_TIMEOUT_S)
        proc.send_signal(signum)
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    text = log.read_text()
    assert code == EXIT_INTERRUPTED, text
    info = _run_info(run_dir)
    step = info["global_step"]
    assert info["status"] == "interrupted" and 5 <= step < total, text
    # The interruption is recorded with its cause and the checkpoint written at the step it stopped at.
    interruption = info["interruptions"][-1]
    assert interruption["reason"] == signum.name and interruption["step"] == step, interruption
    assert interruption["checkpoint"] == f"ckpt-{step}" and interruption["forced"] is False
    assert (run_dir / "checkpoints" / f"ckpt-{step}.index").is_file()
    assert f"resume with: tfad fit {path} --resume" in text

    resumed = subprocess.run(
        _tfad("fit", str(path), "--resume", "--no-progress"),
        capture_output=True,
        text=True,
        env=env,
        timeout=STARTUP_TIMEOUT_S + 60,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    info = _run_info(run_dir)
    assert info["status"] == "finished" and info["global_step"] == total
    # It continued at the saved step, redoing nothing: the resumption starts from ``step`` and the epoch it
    # fell in trained only its remaining steps in the second process; every epoch has its row.
    assert [(r["from_step"], r["steps_redone"]) for r in info["resumptions"]] == [(step, 0)]
    rows = {row["epoch"]: row for row in info["history"]}
    assert sorted(rows) == list(range(1, EPOCHS + 1))
    assert rows[step // STEPS_PER_EPOCH + 1]["steps_this_session"] == STEPS_PER_EPOCH - step % STEPS_PER_EPOCH
    assert f"resuming tiny from step {step}" in resumed.stdout + resumed.stderr


def _interruptions(run_dir: Path) -> list[tuple]:
    """run.json's interruptions as (reason, step, checkpoint, forced)."""
    records = _run_info(run_dir)["interruptions"]
    return [(i["reason"], i["step"], i["checkpoint"], i["forced"]) for i in records]


def test_stop_on_an_epochs_last_step_ends_that_epoch_first(tiny_vials: Path, tmp_path: Path) -> None:
    """Stopping right after step 20 (epoch 1's last) still validates and records epoch 1: the resumed run
    starts at epoch 2 and would otherwise never write epoch 1's row (nor run its early stopping/plateau)."""
    config = tiny_config(tiny_vials, tmp_path, epochs=2)
    first = fit(config, progress=False, should_stop=lambda step: step == STEPS_PER_EPOCH)
    assert first.status == "interrupted" and first.global_step == STEPS_PER_EPOCH
    assert [row["epoch"] for row in first.history] == [1]
    assert np.isfinite(first.history[0]["val_generator_loss"])
    assert _interruptions(first.run_dir) == [("should_stop", 20, "ckpt-20", False)]
    second = fit(config, resume=True, progress=False)
    assert second.status == "finished" and second.global_step == 2 * STEPS_PER_EPOCH
    assert [(row["epoch"], row["steps_this_session"]) for row in second.history] == [(1, 20), (2, 20)]


def test_ctrl_c_during_validation_ends_the_epoch_then_stops(
    tiny_vials: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tfad.training.epoch_loop import EpochLoop

    validate = EpochLoop._validate

    def validate_with_ctrl_c(self: EpochLoop) -> dict:
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while epoch 1's validation runs (handled on return)
        return validate(self)

    monkeypatch.setattr(EpochLoop, "_validate", validate_with_ctrl_c)
    before = signal.getsignal(signal.SIGINT)
    result = fit(tiny_config(tiny_vials, tmp_path, epochs=2), progress=False)
    assert result.status == "interrupted" and result.global_step == STEPS_PER_EPOCH
    assert [row["epoch"] for row in result.history] == [1]  # validated and recorded, not cut short
    assert np.isfinite(result.history[0]["val_generator_loss"])
    assert _interruptions(result.run_dir) == [("SIGINT", 20, "ckpt-20", False)]
    assert signal.getsignal(signal.SIGINT) is before  # the previous handler is back


def test_second_ctrl_c_stops_at_once_without_a_checkpoint(tiny_vials: Path, tmp_path: Path) -> None:
    """Ctrl-C twice after step 7: no checkpoint of a possibly half-done state; --resume continues from the
    last backup (step 5, every 5 steps) and redoes steps 6-7."""

    def ctrl_c_twice(step: int) -> bool:
        if step == 7:
            signal.raise_signal(signal.SIGINT)  # a stop request ...
            signal.raise_signal(signal.SIGINT)  # ... and the impatient second press
        return False

    config = tiny_config(tiny_vials, tmp_path, epochs=1)
    first = fit(config, progress=False, should_stop=ctrl_c_twice)
    assert first.status == "interrupted" and first.global_step == 7
    checkpoints = config.run_dir / "checkpoints"
    assert (checkpoints / "ckpt-5.index").is_file() and not (checkpoints / "ckpt-7.index").exists()
    assert _interruptions(first.run_dir) == [("SIGINT", 7, "ckpt-5", True)]
    second = fit(config, resume=True, progress=False)
    assert second.status == "finished" and second.global_step == STEPS_PER_EPOCH
    resumption = _run_info(config.run_dir)["resumptions"][0]
    assert (resumption["from_step"], resumption["reached_step"], resumption["steps_redone"]) == (5, 7, 2)
