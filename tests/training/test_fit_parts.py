"""The named parts of ``tfad fit`` on their own: early stopping state, run.json/history.csv bookkeeping, the
run-directory and resumption checks, step planning, and a scheduler's SIGTERM."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import signal
from types import SimpleNamespace

import pytest
from conftest import tiny_config, tiny_run_config

from tfad.schema import ConfigError
from tfad.training.callbacks import update_early_stopping
from tfad.training.data_selection import TrainingData
from tfad.training.fit import fit, plan_steps
from tfad.training.run_directory import (
    RunError,
    RunHistory,
    check_resumable,
    check_run_directory,
    check_same_distribution,
)


def test_early_stopping_waits_patience_epochs_after_the_best() -> None:
    info: dict = {}
    losses = [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.9]
    seen = [
        update_early_stopping(info, {"epoch": e + 1, "val_total_loss": v}, 2) for e, v in enumerate(losses)
    ]
    assert seen == [(True, False), (True, False), (False, False), (False, True), (True, False),
                    (False, False), (False, True)]  # fmt: skip
    assert info["early_stopping"] == {
        "monitor": "val_total_loss", "best": 0.7, "best_epoch": 5, "wait": 2, "stopped": True, "patience": 2,
    }  # fmt: skip


def test_early_stopping_monitors_the_training_loss_without_validation() -> None:
    info: dict = {}
    assert update_early_stopping(info, {"epoch": 1, "train_total_loss": 2.0}, 1) == (True, False)
    assert update_early_stopping(info, {"epoch": 2, "train_total_loss": 2.0}, 1) == (False, True)  # not lower
    assert info["early_stopping"]["monitor"] == "train_total_loss"


def test_history_replaces_a_redone_epoch_and_writes_every_column(tmp_path) -> None:
    history = RunHistory(tmp_path, {"name": "x"})
    history.add_epoch({"epoch": 1, "train_loss": 1.0})
    history.add_epoch({"epoch": 2, "train_loss": 0.5, "val_loss": 0.6})
    history.add_epoch({"epoch": 2, "train_loss": 0.4, "val_loss": 0.7})  # epoch 2 again after a resume
    rows = list(csv.DictReader(open(tmp_path / "history.csv")))
    assert [(r["epoch"], r["train_loss"], r["val_loss"]) for r in rows] == [
        ("1", "1.0", ""),
        ("2", "0.4", "0.7"),
    ]
    info = json.loads((tmp_path / "run.json").read_text())
    assert [h["epoch"] for h in info["history"]] == [1, 2] and info["name"] == "x" and "updated_utc" in info
    assert sorted(p.name for p in tmp_path.iterdir()) == ["history.csv", "run.json"]  # no .tmp left behind


def test_history_of_a_non_chief_worker_stays_in_memory(tmp_path) -> None:
    history = RunHistory(tmp_path, {}, write=False)
    history.add_epoch({"epoch": 1, "train_loss": 1.0})
    history.write_info(status="finished")
    assert history.info["status"] == "finished" and history.info["history"][0]["epoch"] == 1
    assert not list(tmp_path.iterdir())


def test_only_the_resumable_keys_may_change(tmp_path) -> None:
    config = tiny_config(tmp_path, tmp_path / "runs")
    later = dataclasses.replace(
        config,
        output_dir=str(tmp_path / "moved"),
        training=dataclasses.replace(config.training, epochs=9, checkpoint_every_steps=7),
    )
    check_resumable(config, later)  # epochs, checkpoint interval, output_dir may change
    changed = dataclasses.replace(later, model=dataclasses.replace(config.model, overrides={"stages": 3}))
    with pytest.raises(RunError, match=r"configuration changed \(model.overrides: .* -> \{'stages': 3\}\)"):
        check_resumable(config, changed)


def test_a_run_resumes_on_the_strategy_it_was_trained_on() -> None:
    check_same_distribution({}, {"strategy": "one-device", "replicas": 1})
    with pytest.raises(RunError, match=r"trained on 2 replica\(s\) in 2 worker\(s\), this job has 1 in 1"):
        check_same_distribution({"distribution": {"replicas": 2, "workers": ["a:1", "b:2"]}}, {"replicas": 1})


def test_run_directory_checks(tmp_path) -> None:
    config = tiny_config(tmp_path, tmp_path / "runs")
    assert check_run_directory(config, resume=False, multi_worker=False, chief=True) is None  # a new run
    with pytest.raises(RunError, match="holds no checkpoint to resume from"):
        check_run_directory(config, resume=True, multi_worker=False, chief=True)
    config.run_dir.mkdir(parents=True)
    (config.run_dir / "run.json").write_text("{}")  # an attempt that died before its first checkpoint
    with pytest.raises(RunError, match="already holds a training run; pass --resume"):
        check_run_directory(config, resume=False, multi_worker=False, chief=True)


def test_step_plan_fills_and_splits_the_batch() -> None:
    data = TrainingData([], [], [], train_count=50, val_count=9, description={})
    training = tiny_config(".", ".").training  # batch 8, 20 steps per epoch, 2 validation steps
    one = SimpleNamespace(num_replicas=1, num_workers=1, kind="one-device")
    assert plan_steps(training, data, one) == (20, 2)
    auto = dataclasses.replace(training, steps_per_epoch=None, validation_steps=None)
    assert plan_steps(auto, data, one) == (6, 2)  # 50 // 8, ceil(9 / 8)
    with pytest.raises(ConfigError, match="divisible by the 3 replicas"):
        plan_steps(training, data, SimpleNamespace(num_replicas=3, num_workers=1, kind="mirrored"))
    with pytest.raises(ConfigError, match="larger than the 5 training images"):
        plan_steps(training, dataclasses.replace(data, train_count=5), one)


def test_sigterm_stops_after_the_step_with_a_checkpoint(tiny_vials, tmp_path) -> None:
    def sigterm_at(step: int) -> bool:  # a scheduler's SIGTERM arriving during step 3
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    before = signal.getsignal(signal.SIGTERM)
    result = fit(tiny_config(tiny_vials, tmp_path), progress=False, should_stop=sigterm_at)
    assert result.status == "interrupted" and result.global_step == 4  # the request is seen after step 4
    assert (result.run_dir / "checkpoints" / "ckpt-4.index").is_file()
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back


def test_sigterm_before_the_first_step_leaves_a_run_that_resume_continues(tiny_vials, tmp_path, monkeypatch):
    """A scheduler's SIGTERM while the input streams (or a feature cache) are being built, after run.json
    said "running": status "interrupted", a step-0 checkpoint, and --resume trains to the end (issue 14)."""
    import tfad.training.fit as fit_module

    def sigterm_while_building_streams(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the stop signal must end set-up at once")

    before = signal.getsignal(signal.SIGTERM)
    config = tiny_config(tiny_vials, tmp_path, epochs=1, steps_per_epoch=3)
    with monkeypatch.context() as patch:
        patch.setattr(fit_module, "fit_streams", sigterm_while_building_streams)
        result = fit(config, progress=False)
    assert result.status == "interrupted" and result.global_step == 0
    assert (result.run_dir / "checkpoints" / "ckpt-0.index").is_file()
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert (
        info["interruptions"][-1]["reason"] == "SIGTERM"
        and info["interruptions"][-1]["checkpoint"] == "ckpt-0"
    )
    assert signal.getsignal(signal.SIGTERM) is before
    with pytest.raises(RunError, match="pass --resume"):
        fit(config, progress=False)
    resumed = fit(config, resume=True, progress=False)
    assert resumed.status == "finished" and resumed.global_step == 3


def test_sigterm_during_a_fitted_familys_pass_is_resumed_by_fitting_again(tiny_vials, tmp_path, monkeypatch):
    """A fitted family (blob analysis) stopped by SIGTERM during its pass: status "interrupted" (never left
    "running"), --resume fits it again, and a finished fit has nothing to resume."""
    from tfad.families.blob import BlobFamily

    original = BlobFamily.fit_without_training

    def sigterm_during_the_pass(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    config = tiny_run_config(tiny_vials, tmp_path, "blob", {"family": "blob"}, {})
    with monkeypatch.context() as patch:
        patch.setattr(BlobFamily, "fit_without_training", sigterm_during_the_pass)
        result = fit(config, progress=False)
    assert result.status == "interrupted"
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["interruptions"][-1]["reason"] == "SIGTERM"
    with pytest.raises(RunError, match="pass --resume"):
        fit(config, progress=False)
    assert fit(config, resume=True, progress=False).status == "finished"
    assert json.loads((result.run_dir / "run.json").read_text())["status"] == "finished"
    with pytest.raises(RunError, match="already fitted"):
        fit(config, resume=True, progress=False)
