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
    assert blank_frames.main(["MODEL", "--values", "0,128,255", "--json-out", str(out)]) == 0
    rows = json.loads(out.read_text())[0]["blank_patches"]
    assert [(r["value"], r["score"], r["model_alone"]) for r in rows] == [
        (0, 0.0, "accepted"),
        (128, 1.28, "depends on the region"),
        (255, 2.55, "rejected"),
    ]
    assert (
        "| fake | 1-2 | 0, accepted | 1.28, depends on the region | 2.55, rejected |"
        in capsys.readouterr().out
    )


def test_an_uncalibrated_model_and_bad_values_are_named(monkeypatch):
    monkeypatch.setattr("tfad.evaluation.scorer.load_scorer", lambda path: _fake_scorer(path, None))
    with pytest.raises(SystemExit, match="MODEL is not calibrated"):
        blank_frames.main(["MODEL"])
    with pytest.raises(SystemExit):
        blank_frames.main(["MODEL", "--values", "0,300"])
    with pytest.raises(SystemExit):
        blank_frames.main(["MODEL", "--values", "dark"])
