"""benchmarks/score_only_signature.py: its command line and the two copies of an export it serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.score_only_signature import model_pair, parse_args


def test_a_run_needs_a_model_and_at_least_two_products() -> None:
    with pytest.raises(SystemExit):
        parse_args([])
    with pytest.raises(SystemExit):
        parse_args(["--model-dir", "m/1", "--products", "1"])
    assert parse_args(["--build", "resganad:line-cpu"]).products == 40


def test_the_two_copies_differ_only_in_the_score_only_signature(tmp_path: Path) -> None:
    export = tmp_path / "export" / "vials" / "3"
    (export / "variables").mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"graph")
    manifest = {
        "name": "vials",
        "version": 3,
        "signature": {"name": "serving_default", "score_only": "score_only"},
    }
    (export / "tfad_manifest.json").write_text(json.dumps(manifest))

    names = model_pair(export, tmp_path / "root")  # linked copies (test_export_ab_benchmark.py)
    assert names == {"with": "vials-with", "without": "vials-without"}
    for variant, name in names.items():
        written = json.loads((tmp_path / "root" / name / "3" / "tfad_manifest.json").read_text())
        assert written["name"] == name  # the servers refuse a manifest naming another model
        assert ("score_only" in written["signature"]) == (variant == "with")
    assert json.loads((export / "tfad_manifest.json").read_text()) == manifest  # the export is untouched

    older = tmp_path / "older" / "vials" / "1"
    older.mkdir(parents=True)
    (older / "tfad_manifest.json").write_text(json.dumps({"name": "vials", "version": 1, "signature": {}}))
    with pytest.raises(SystemExit, match="names no score-only signature"):
        model_pair(older, tmp_path / "root2")
