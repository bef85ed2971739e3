"""benchmarks/blank_frames.py: uniform patches scored by the model, and the verdict its thresholds alone would
give (accepted at or below the lowest region threshold, rejected above the highest, else by region)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import blank_frames  # noqa: E402

from tfad.evaluation.scorer import Scorer  # noqa: E402
from tfad.scoring.thresholds import ThresholdTable  # noqa: E402


def _fake_scorer(path, thresholds):
    # score = the patch's gray value / 100: 0 -> 0.0, 128 -> 1.28, 255 -> 2.55
    return Scorer(
        name="fake", kind="savedmodel", path=Path(path), image_size=4, channels=1, thresholds=thresholds,
        function=lambda images: {"score": images.reshape(len(images), -1)[:, 0] / 100.0,
                                 "heatmap": np.zeros(images.shape[:3], np.float32)},
    )  # fmt: skip


def test_each_value_is_scored_and_judged_against_the_lowest_and_highest_threshold(
    monkeypatch, tmp_path, capsys
):
    table = ThresholdTable(policy="max-accuracy", regions={"R0": 1.0, "R1": 2.0}, default=None)
    monkeypatch.setattr("tfad.evaluation.scorer.load_scorer", lambda path: _fake_scorer(path, table))
    out = tmp_path / "blank.json"
    assert blank_frames.main(["MODEL", "--values", "0,128,255", "--noise", "", "--json-out", str(out)]) == 0
    rows = json.loads(out.read_text())[0]["blank_patches"]
    assert [(r["frame"], r["score"], r["model_alone"], r["line"]) for r in rows] == [
        ("blank 0", 0.0, "accepted", "accepted"),  # the fake scorer has no gate: the line asks the model
        ("blank 128", 1.28, "depends on the region", "depends on the region"),
        ("blank 255", 2.55, "rejected", "rejected"),
    ]
    assert (
        "| fake | 1-2 | 0, accepted, accepted | 1.28, depends on the region, depends on the region | "
        "2.55, rejected, rejected |" in capsys.readouterr().out
    )


def test_noise_frames_and_the_models_gate_give_the_lines_answer(monkeypatch, tmp_path):
    """Noise frames of the given mean and std; the scorer's gate (blank rule, acquisition check) decides
    what the line answers before the model's score does."""
    from tfad.scoring.acquisition import AcquisitionCheck, AcquisitionLimits, PatchGate

    table = ThresholdTable(policy="max-accuracy", regions={"R0": 1.0}, default=None)
    check = AcquisitionCheck(regions={}, default=AcquisitionLimits(50.0, 220.0, 5.0))

    def scorer(path):
        fake = _fake_scorer(path, table)
        fake.image_size = 32
        fake.gate = PatchGate(True, check)
        return fake

    monkeypatch.setattr("tfad.evaluation.scorer.load_scorer", scorer)
    out = tmp_path / "noise.json"
    args = ["MODEL", "--values", "0,100", "--noise", "4:1.5,128:20", "--json-out", str(out)]
    assert blank_frames.main(args) == 0
    rows = {r["frame"]: r for r in json.loads(out.read_text())[0]["blank_patches"]}
    assert rows["blank 0"]["line"] == "REJECT_INCOMPLETE (blank)"
    assert rows["blank 0"]["model_alone"] == "accepted"
    assert rows["blank 100"]["line"] == "REJECT_INCOMPLETE (blank)"
    dark = rows["noise 4+-1.5"]
    assert abs(dark["mean"] - 4.0) < 0.5 and abs(dark["std"] - 1.5) < 0.3
    assert dark["line"] == "REJECT_INCOMPLETE (fails the acquisition check)"
    textured = rows["noise 128+-20"]  # inside the limits: the line asks the model
    assert textured["line"] == textured["model_alone"]


def test_an_uncalibrated_model_and_bad_values_are_named(monkeypatch):
    monkeypatch.setattr("tfad.evaluation.scorer.load_scorer", lambda path: _fake_scorer(path, None))
    with pytest.raises(SystemExit, match="MODEL is not calibrated"):
        blank_frames.main(["MODEL"])
    with pytest.raises(SystemExit):
        blank_frames.main(["MODEL", "--values", "0,300"])
    with pytest.raises(SystemExit):
        blank_frames.main(["MODEL", "--values", "dark"])
    with pytest.raises(SystemExit):
        blank_frames.main(["MODEL", "--noise", "dark"])
