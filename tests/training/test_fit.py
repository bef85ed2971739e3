"""tfad fit: the loss falls, the run directory is complete, interruptions resume without loss."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
from conftest import tiny_config

from tfad.training.data_selection import split_by_product
from tfad.training.fit import fit
from tfad.training.run_directory import RunError


def test_generator_loss_falls(tiny_run) -> None:
    _, result = tiny_run
    assert result.status == "finished" and result.global_step == 60 and result.epochs_done == 3
    losses = [h["train_generator_loss"] for h in result.history]
    assert losses[-1] < 0.8 * losses[0], losses
    assert all(np.isfinite(h["val_generator_loss"]) for h in result.history)


def test_run_directory_is_complete(tiny_run) -> None:
    config, result = tiny_run
    run_dir = result.run_dir
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["epochs_done"] == 3 and info["global_step"] == 60
    assert info["training_data"]["fingerprint"].startswith("sha256:")
    assert info["training_data"]["train_images"] + info["training_data"]["validation_images"] == 48
    assert info["architecture"]["stages"] == 2 and info["inference_gflops_per_patch"] > 0
    rows = list(csv.DictReader(open(run_dir / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert (run_dir / "config.yaml").is_file()
    assert (run_dir / "plots" / "training_curves.png").stat().st_size > 1000
    assert (run_dir / "plots" / "reconstructions.png").stat().st_size > 1000
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    # cosine decay with restarts: one 60-step cycle, then a restart at 1/3 of the rate
    lr = config.training.learning_rate
    lrs = [h["learning_rate"] for h in result.history]
    np.testing.assert_allclose(lrs, [lr * 0.75, lr * 0.25, lr / 3], rtol=1e-5)


def test_existing_run_is_never_overwritten(tiny_run) -> None:
    config, _ = tiny_run
    with pytest.raises(RunError, match="already holds a training run"):
        fit(config, progress=False)
    changed = dataclasses.replace(config, training=dataclasses.replace(config.training, learning_rate=0.5))
    with pytest.raises(RunError, match=r"configuration changed \(training.learning_rate"):
        fit(changed, resume=True, progress=False)


def test_resume_without_checkpoint_is_an_error(tiny_vials, tmp_path) -> None:
    with pytest.raises(RunError, match="no checkpoint"):
        fit(tiny_config(tiny_vials, tmp_path), resume=True, progress=False)


def test_interrupted_run_resumes_where_it_stopped(tiny_run, tiny_vials, tmp_path) -> None:
    """Stop mid-epoch 1 at step 7 (checkpoint written on stopping) and resume: same steps, same weights."""
    from tfad.training.runs import load_run

    config = tiny_config(tiny_vials, tmp_path)
    first = fit(config, progress=False, should_stop=lambda step: step == 7)
    assert first.status == "interrupted" and first.global_step == 7 and first.history == []
    info = json.loads((first.run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and info["global_step"] == 7
    second = fit(config, resume=True, progress=False)
    assert second.status == "finished" and second.global_step == 60
    assert [h["epoch"] for h in second.history] == [1, 2, 3]
    assert second.history[0]["steps_this_session"] == 20 - 7  # the partial epoch, nothing redone
    # The sample stream, schedule and optimizer state continued exactly: the weights match the
    # uninterrupted run of the same config (up to float reassociation across thread schedules).
    reference = load_run(tiny_run[1].run_dir).inference_model.get_weights()
    resumed = load_run(second.run_dir).inference_model.get_weights()
    for a, b in zip(reference, resumed, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_split_by_product_keeps_products_whole(tiny_vials) -> None:
    from tfad.data.layouts import read_dataset

    records = read_dataset(str(tiny_vials), "train")
    train, val = split_by_product(records, 0.34, seed=0)
    assert len(train) + len(val) == len(records) and val
    assert not {r.product_id for r in train} & {r.product_id for r in val}
    again, _ = split_by_product(list(reversed(records)), 0.34, seed=0)
    assert {r.path for r in again} == {r.path for r in train}
