"""benchmarks/export_ab.py: two exports of one model served side by side, timed A B B A, answers compared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from serving_testutils import REGIONS, cc_binary_or_skip, export_with_thresholds

from benchmarks.export_ab import alternate, differences, disagreements, linked_copy, main, parse_args


def test_the_command_line_needs_a_pair_of_exports(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        parse_args([])
    with pytest.raises(SystemExit):  # no manifest: not an export
        parse_args(["--pair", str(tmp_path), str(tmp_path)])


def test_products_alternate_a_b_b_a() -> None:
    order: list[str] = []
    alternate(order.append, ("before", "after"), 4)
    assert order == ["before", "after", "after", "before", "before", "after", "after", "before"]


def _reply(scores: list[float], rejected: list[bool], heatmaps: list[np.ndarray | None] | None = None):
    """An InspectResult with these patch scores, verdicts and (optional) heatmap PNGs."""
    import cv2

    from tfad.serving.client import InspectResult, PatchResult

    heatmaps = heatmaps or [None] * len(scores)
    patches = tuple(
        PatchResult(i, "R0", 0, 0, s, 0.5, r, b"" if h is None else cv2.imencode(".png", h)[1].tobytes())
        for i, (s, r, h) in enumerate(zip(scores, rejected, heatmaps, strict=True))
    )
    verdict = "REJECT" if any(rejected) else "ACCEPT"
    return InspectResult(verdict, "", "", max(scores), patches, "m", 1, {}, None)


def _found(before, after, score_tolerance: float = 1e-4, heatmap_tolerance: int = 1) -> list[str]:
    return disagreements({"differences": differences(before, after)}, score_tolerance, heatmap_tolerance)


def test_scores_verdicts_and_heatmaps_each_decide_whether_two_replies_agree() -> None:
    gray = np.full((4, 4), 100, np.uint8)
    same = _reply([0.1, 0.2, 0.3], [False, False, True], [gray] * 3)
    assert _found(same, same) == []
    # scores within the tolerance agree; beyond it, or a NaN anywhere (not only first), they do not
    assert _found(same, _reply([0.1, 0.20005, 0.3], [False, False, True], [gray] * 3)) == []
    assert _found(same, _reply([0.1, 0.21, 0.3], [False, False, True], [gray] * 3))[0].startswith("scores")
    nan_second = _reply([0.1, float("nan"), 0.3], [False, False, True], [gray] * 3)
    assert _found(same, nan_second)[0].startswith("scores")
    # a flipped patch verdict at equal scores
    assert _found(same, _reply([0.1, 0.2, 0.3], [False, True, True], [gray] * 3))[0].startswith("verdicts")
    # heatmaps one gray level apart agree (rounding at a level's edge); two do not; a missing one does not
    assert _found(same, _reply([0.1, 0.2, 0.3], [False, False, True], [gray, gray + 1, gray])) == []
    two_apart = _reply([0.1, 0.2, 0.3], [False, False, True], [gray, gray, gray + 2])
    assert _found(same, two_apart) == ["heatmaps (2 gray levels > 1)"]
    missing = _reply([0.1, 0.2, 0.3], [False, False, True], [gray, None, gray])
    assert _found(same, missing) == ["heatmaps missing for 1 patches"]
    # without heatmaps on either side, nothing is said of them
    plain = _reply([0.1, 0.2, 0.3], [False, False, True])
    assert "max_abs_heatmap_gray" not in differences(plain, plain) and _found(plain, plain) == []


def test_a_linked_copy_shares_the_savedmodel_and_has_its_own_manifest(tmp_path: Path) -> None:
    export = tmp_path / "export" / "vials" / "3"
    (export / "variables").mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"graph")
    manifest = {"name": "vials", "version": 3, "signature": {"name": "serving_default"}}
    (export / "tfad_manifest.json").write_text(json.dumps(manifest))

    linked_copy(export, tmp_path / "root", dict(manifest, name="vials-after"))
    copy = tmp_path / "root" / "vials-after" / "3"
    assert (copy / "saved_model.pb").read_bytes() == b"graph" and (copy / "variables").is_dir()
    assert json.loads((copy / "tfad_manifest.json").read_text())["name"] == "vials-after"
    assert json.loads((export / "tfad_manifest.json").read_text()) == manifest  # the export is untouched


def test_an_export_against_itself_agrees_and_one_that_decides_otherwise_fails(
    exported_version: Path, tmp_path: Path
) -> None:
    cc_binary_or_skip()
    report = tmp_path / "same.json"
    args = ["--products", "2", "--patches", "8", "--heatmaps", "all", "--json-out", str(report)]
    assert main(["--pair", str(exported_version), str(exported_version), *args]) == 0
    (result,) = json.loads(report.read_text())["models"]
    assert result["differences"]["max_abs_score"] == 0.0
    assert result["differences"]["patch_verdicts_differing"] == 0
    assert result["differences"]["max_abs_heatmap_gray"] == 0
    assert len(result["timings"]["before"]["inference"]) == len(result["timings"]["after"]["inference"]) == 2
    # the reported ratio is the median of the per-pair ratios of the reported timings (pairs kept together)
    after, before = result["timings"]["after"]["inference"], result["timings"]["before"]["inference"]
    ratios = [a / b for a, b in zip(after, before, strict=True)]
    assert result["paired_inference_ratio_after_over_before"] == round(float(np.median(ratios)), 4)
    assert result["paired_ratio_range"] == [round(min(ratios), 4), round(max(ratios), 4)]

    # The same graph with thresholds that accept every patch, and with thresholds that reject every one.
    accepting = export_with_thresholds(
        exported_version, {r: 1e9 for r in REGIONS}, 1e9, tmp_path / "accepting"
    )
    rejecting = export_with_thresholds(
        exported_version, {r: -1e9 for r in REGIONS}, -1e9, tmp_path / "rejecting"
    )
    assert main(["--pair", str(accepting), str(rejecting), "--products", "2", "--patches", "8"]) == 1
