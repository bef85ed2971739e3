"""``tfad datasets synth-vials`` and ``tfad datasets info``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_testutils import corrupt_copy

from tfad.cli import main


def test_synth_vials_then_info(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "vials"
    sheet = tmp_path / "sheet.png"
    argv = ["datasets", "synth-vials", str(out), "--products", "2", "--eval-products", "2", "--runs", "2"]
    argv += ["--frames", "2", "--defect-rate", "1", "--seed", "3", "--size", "128"]
    argv += ["--contact-sheet", str(sheet)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "train      2 products (0 defective),     160 patches (0 defective)" in text
    assert f"wrote 480 patches to {out}" in text and sheet.is_file()

    corrupt = sorted((out / "test").rglob("f1_v3_R2.png"))[0]
    corrupt_copy(corrupt, "truncate")
    assert main(["datasets", "info", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["layout"] == "line" and set(report["splits"]) == {"train", "calib", "test"}
    test = report["splits"]["test"]
    assert test["images"] == 160 and test["products"] == 2 and test["runs"] == 2
    assert test["regions"] == {"R0": 40, "R1": 40, "R2": 40, "R3": 40}
    assert sum(test["labels"].values()) == 160 and test["labels"]["1"] > 0
    assert list(test["corrupt_files"]) == [str(corrupt)]
    assert report["splits"]["train"]["corrupt_files"] == {}

    assert main(["datasets", "info", str(out), "--split", "train", "--no-verify"]) == 0
    text = capsys.readouterr().out
    assert "layout line" in text and "train: 160 images, 2 products, 2 runs" in text
    assert "corrupt files" not in text


def test_errors_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["datasets", "info", str(tmp_path / "missing")]) == 2
    assert "tfad datasets: error: data set root not found" in capsys.readouterr().err
    (tmp_path / "full").mkdir()
    (tmp_path / "full/x").write_text("")
    assert main(["datasets", "synth-vials", str(tmp_path / "full")]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["datasets"]) == 2
