"""calibrate -> export -> eval -> predict on the tiny run: thresholds, manifest, SavedModel parity."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tfad.cli import main
from tfad.export.savedmodel import ExportError, export_run

# Stated export tolerance: the SavedModel runs the same graph as the Keras model; differences come only from
# op scheduling/fusion (float32 reassociation).
SCORE_ATOL, HEATMAP_ATOL, RECON_ATOL = 1e-5, 1e-4, 1e-5


@pytest.fixture(scope="module")
def calibrated(tiny_run, tiny_vials, tmp_path_factory):
    """The tiny run calibrated on its calib split and exported once: (run_dir, version_dir)."""
    run_dir = tiny_run[1].run_dir
    assert main(["calibrate", str(run_dir), "--data", str(tiny_vials), "--no-progress"]) == 0
    models = tmp_path_factory.mktemp("savedmodels")
    assert main(["export", str(run_dir), "--savedmodels", str(models)]) == 0
    return run_dir, models / "tiny" / "1"


def test_calibration_is_stored_with_the_run(calibrated, tiny_vials) -> None:
    run_dir, _ = calibrated
    saved = json.loads((run_dir / "thresholds.json").read_text())
    assert saved["thresholds"]["policy"] == "max-accuracy"
    assert set(saved["thresholds"]["regions"]) == {"R0", "R1", "R2", "R3"}
    assert saved["calibration"]["defective"] > 0 and saved["calibration"]["split"] == "calib"
    assert saved["calibration"]["fingerprint"].startswith("sha256:")
    assert (run_dir / "calibration" / "scores.csv").is_file()
    assert (run_dir / "calibration" / "score_histograms.png").is_file()
    # the acquisition check's limits, from the good calibration images by the stated rule
    check = saved["acquisition_check"]
    assert set(check["regions"]) == {"R0", "R1", "R2", "R3"} and check["default"]
    table = list(csv.DictReader(open(run_dir / "calibration" / "scores.csv")))
    good = [r for r in table if r["label"] == "0"]
    for region, limits in check["regions"].items():
        means = [float(r["pixel_mean"]) for r in good if r["region"] == region]
        stds = [float(r["pixel_std"]) for r in good if r["region"] == region]
        assert limits["mean_min"] == pytest.approx(min(means) / 2, abs=0.01)
        assert limits["mean_max"] == pytest.approx(max(means) + (255 - max(means)) / 2, abs=0.01)
        assert limits["std_min"] == pytest.approx(min(stds) / 2, abs=0.01)
        assert limits["mean_min"] <= min(means) and limits["std_min"] <= min(stds)  # rounded outward


def test_manifest_is_complete_and_servable(calibrated, tiny_run) -> None:
    from tfad.serving.contract import load_manifest

    run_dir, version_dir = calibrated
    manifest = json.loads((version_dir / "tfad_manifest.json").read_text())
    assert manifest["name"] == "tiny" and manifest["version"] == 1
    assert manifest["input"] == {"height": 32, "width": 32, "channels": 1, "dtype": "uint8", "layout": "NHWC"}
    assert manifest["model_family"] == "resganad" and manifest["preset"] == "line-cpu"
    assert manifest["thresholds"] == json.loads((run_dir / "thresholds.json").read_text())["thresholds"]
    assert manifest["run_acceptance"] == {"k": 1, "n": 2}
    run_info = json.loads((run_dir / "run.json").read_text())
    assert manifest["training_data_fingerprint"] == run_info["training_data"]["fingerprint"]
    assert manifest["tfad_version"]
    # a bounded resize, and a blank patch (a camera or grab failure) never scored: docs/serving.md
    assert manifest["preprocessing"]["resize"] == "bilinear"
    assert manifest["preprocessing"]["blank_patches"] == "reject"
    parsed = load_manifest(version_dir)  # the servers' own parser accepts it
    assert parsed.reject_blank_patches
    # the acquisition check goes with the thresholds (docs/serving.md, fail-safe rule 8)
    assert (
        manifest["acquisition_check"]
        == json.loads((run_dir / "thresholds.json").read_text())["acquisition_check"]
    )
    assert set(parsed.acquisition_check.regions) == {"R0", "R1", "R2", "R3"}
    # the servers compare in float32, as the model computes scores
    assert parsed.region_thresholds == pytest.approx(manifest["thresholds"]["regions"], rel=1e-6)


def test_savedmodel_equals_keras_in_a_fresh_process(calibrated, tiny_vials, tmp_path) -> None:
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.training.runs import load_run

    run_dir, version_dir = calibrated
    records = read_dataset(str(tiny_vials), "test")[:6]
    rng = np.random.default_rng(0)
    images = np.concatenate(
        [load_images(records, (32, 32), 1), rng.integers(0, 256, (2, 32, 32, 1), dtype=np.uint8)]
    )
    np.save(tmp_path / "images.npy", images)
    code = (
        "import sys, numpy as np, tensorflow as tf\n"
        "from tfad.scoring.native import register_ops_for\n"
        "register_ops_for(sys.argv[1])\n"
        "model = tf.saved_model.load(sys.argv[1])\n"
        "out = model.signatures['serving_default'](images=tf.constant(np.load(sys.argv[2])))\n"
        "np.savez(sys.argv[3], **{k: v.numpy() for k, v in out.items()})\n"
    )
    subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(version_dir),
            str(tmp_path / "images.npy"),
            str(tmp_path / "out.npz"),
        ],
        check=True,
        timeout=300,
    )
    served = np.load(tmp_path / "out.npz")
    assert served["score"].shape == (8,) and served["heatmap"].shape == (8, 32, 32)
    assert served["reconstruction"].shape == (8, 32, 32, 1)
    keras_out = load_run(run_dir).score_function()(images)
    np.testing.assert_allclose(served["score"], keras_out["score"].numpy(), atol=SCORE_ATOL)
    np.testing.assert_allclose(served["heatmap"], keras_out["heatmap"].numpy(), atol=HEATMAP_ATOL)
    np.testing.assert_allclose(served["reconstruction"], keras_out["reconstruction"].numpy(), atol=RECON_ATOL)


def test_versions_are_immutable_and_numbered(calibrated, tmp_path) -> None:
    run_dir, version_dir = calibrated
    models = version_dir.parent.parent
    assert export_run(run_dir, models).name == "2"
    with pytest.raises(ExportError, match="exists already"):
        export_run(run_dir, models, version=1)
    assert main(["export", str(run_dir), "--savedmodels", str(models), "--version", "1"]) == 2
    assert not list(version_dir.parent.glob(".*.tmp"))


class _ShiftedScores:
    """A loaded run whose score function adds ``shift`` to every score: an artefact that fails the check."""

    def __init__(self, run, shift: float = 0.5) -> None:
        self._run, self._shift = run, shift

    def __getattr__(self, name):
        return getattr(self._run, name)

    def score_function(self):
        function = self._run.score_function()

        def shifted(images):
            outputs = dict(function(images))
            outputs["score"] = outputs["score"] + self._shift
            return outputs

        return shifted


@pytest.fixture
def shifted_writer(monkeypatch):
    """Make export write a SavedModel whose scores are the run's + 0.5 (the run itself is untouched)."""
    from tfad.export import savedmodel

    write = savedmodel._write_savedmodel

    def write_shifted(run, target):
        write(_ShiftedScores(run), target)

    monkeypatch.setattr(savedmodel, "_write_savedmodel", write_shifted)


def test_export_that_fails_the_check_publishes_nothing(calibrated, shifted_writer, tmp_path, capsys) -> None:
    run_dir, _ = calibrated
    models = tmp_path / "models"
    with pytest.raises(ExportError, match=r"scores differ from the run's \(max \|d score\| 5\.00e-01"):
        export_run(run_dir, models)
    assert not (models / "tiny").exists() or not list((models / "tiny").iterdir())  # no version, no tmp
    # the CLI: exit 2, the difference named, still nothing a polling server could pick up
    assert main(["export", str(run_dir), "--savedmodels", str(models)]) == 2
    err = capsys.readouterr().err
    assert "max |d score| 5.00e-01" in err and "nothing was published" in err
    assert not (models / "tiny").exists() or not list((models / "tiny").iterdir())


@pytest.mark.parametrize("wrong", ["shifted", "shorter"])
def test_export_whose_score_only_signature_differs_publishes_nothing(
    calibrated, monkeypatch, tmp_path, wrong
) -> None:
    """The servers refuse a version whose score-only scores differ from serving_default's beyond 1e-5 + 1e-4 x
    |score|: the export's check applies the same rule, so such a version is never published."""
    from tfad.evaluation.scorer import Scorer

    scores_only = Scorer.scores_only

    def differing(self, images):
        scores = scores_only(self, images)
        return scores + 1e-3 if wrong == "shifted" else scores[:-1]

    monkeypatch.setattr(Scorer, "scores_only", differing)
    run_dir, _ = calibrated
    models = tmp_path / "models"
    with pytest.raises(ExportError, match="score-only signature differs from serving_default.*servers would"):
        export_run(run_dir, models)
    assert not (models / "tiny").exists() or not list((models / "tiny").iterdir())


def test_no_check_publishes_without_reloading(calibrated, shifted_writer, tmp_path) -> None:
    run_dir, _ = calibrated
    target = export_run(run_dir, tmp_path / "models", check=False)  # what --no-check does
    assert target == tmp_path / "models" / "tiny" / "1" and (target / "saved_model.pb").is_file()


def test_export_checks_then_publishes(calibrated, tmp_path, monkeypatch) -> None:
    from tfad.export import savedmodel

    run_dir, _ = calibrated
    models = tmp_path / "models"
    seen = []
    check = savedmodel.check_export

    def spy(run, folder):
        seen.append((folder, sorted(p.name for p in models.joinpath("tiny").iterdir())))
        result = check(run, folder)
        seen.append(result)
        return result

    monkeypatch.setattr(savedmodel, "check_export", spy)
    target = export_run(run_dir, models)
    assert target == models / "tiny" / "1" and (target / "saved_model.pb").is_file()
    assert (target / "tfad_manifest.json").is_file()
    # checked in the temporary folder while no version folder existed yet, then published
    assert seen[0] == (models / "tiny" / ".1.tmp", [".1.tmp"])
    assert seen[1].max_score_diff <= savedmodel.CHECK_SCORE_ATOL
    assert seen[1].max_heatmap_diff <= savedmodel.CHECK_HEATMAP_ATOL
    assert sorted(p.name for p in target.parent.iterdir()) == ["1"]


def test_uncalibrated_run_is_refused(tiny_run, tmp_path) -> None:
    from tfad.serving.contract import ManifestError, load_manifest

    copy = tmp_path / "run"
    shutil.copytree(
        tiny_run[1].run_dir, copy, ignore=shutil.ignore_patterns("thresholds.json", "calibration")
    )
    with pytest.raises(ExportError, match="not calibrated"):
        export_run(copy, tmp_path / "models")
    target = export_run(copy, tmp_path / "models", allow_uncalibrated=True)
    assert json.loads((target / "tfad_manifest.json").read_text())["thresholds"] is None
    with pytest.raises(ManifestError, match="not calibrated"):
        load_manifest(target)


def test_a_hand_edited_acquisition_check_is_refused_at_export(calibrated, tmp_path) -> None:
    """A malformed acquisition_check in thresholds.json stops the export with the field named, rather than
    publishing a version both servers would refuse to load; nothing is published."""
    run_dir, _ = calibrated
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    saved = json.loads((copy / "thresholds.json").read_text())
    saved["acquisition_check"]["default"]["std_min"] = -1
    (copy / "thresholds.json").write_text(json.dumps(saved))
    with pytest.raises(ExportError, match=r"acquisition_check\.default must have 0 <= mean_min"):
        export_run(copy, tmp_path / "models")
    assert not any((tmp_path / "models").rglob("tfad_manifest.json"))


def test_eval_of_the_exported_model_writes_the_report(calibrated, tiny_vials, tmp_path, capsys) -> None:
    _, version_dir = calibrated
    out = tmp_path / "eval"
    assert (
        main(["eval", str(version_dir.parent), "--data", str(tiny_vials), "--out", str(out), "--no-progress"])
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    highest = max(int(p.name) for p in version_dir.parent.iterdir() if p.name.isdigit())
    assert report["model"]["kind"] == "savedmodel" and report["model"]["version"] == highest
    assert 0.0 <= report["image_level"]["auroc"] <= 1.0
    assert report["pixel_level"]["available"] and report["pixel_level"]["n_defect_pixels"] > 0
    assert set(report["at_thresholds"]["patch"]["per_region"]) == {"R0", "R1", "R2", "R3"}
    for name in ("roc.png", "score_histograms.png", "heatmap_examples.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    assert (out / "scores.csv").is_file() and not (out / ".scratch").exists()
    assert "positive class: defective" in capsys.readouterr().out


def test_eval_rejects_what_the_line_would_not_inspect(calibrated, tiny_vials, tmp_path, capsys) -> None:
    """A copy of the test split with one good image replaced by a dark noisy frame (a lamp failure) and one
    by a black one: tfad eval counts both as rejected whatever their scores, as the servers answer them
    REJECT_INCOMPLETE (ACQUISITION_CHECK, BLANK_PATCH)."""
    import cv2

    _, version_dir = calibrated
    data = tmp_path / "vials"
    shutil.copytree(tiny_vials, data)
    first, second = sorted((data / "test").glob("r00/P*/*.png"))[:2]
    rng = np.random.default_rng(0)
    cv2.imwrite(str(first), np.clip(rng.normal(4.0, 1.5, (32, 32)), 0, 255).astype(np.uint8))
    cv2.imwrite(str(second), np.zeros((32, 32), np.uint8))
    out = tmp_path / "eval"
    assert main(["eval", str(version_dir), "--data", str(data), "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    reasons = {row["path"]: row["reason"] for row in report["incomplete"]["examples"]}
    assert reasons[str(first)].startswith("fails the acquisition check: mean gray")
    assert reasons[str(second)].startswith("blank")
    table = list(csv.DictReader(open(out / "scores.csv")))
    rows = {r["path"]: r for r in table}
    assert rows[str(second)]["blank"] == "1" and float(rows[str(second)]["pixel_std"]) == 0.0
    labels = {r["path"]: r["label"] for r in table}
    assert report["incomplete"]["good"] == sum(labels[p] == "0" for p in (str(first), str(second)))
    # the decisions: score above the region's threshold, or not inspected
    thresholds = report["thresholds"]["regions"]
    rejected = [
        float(r["score"]) > thresholds[r["region"]] or r["path"] in (str(first), str(second)) for r in table
    ]
    patch = report["at_thresholds"]["patch"]
    assert patch["false_reject"] == sum(
        rej for rej, r in zip(rejected, table, strict=True) if r["label"] == "0"
    )
    assert patch["true_reject"] == sum(
        rej for rej, r in zip(rejected, table, strict=True) if r["label"] == "1"
    )
    assert "not scored on the line" in capsys.readouterr().out


def test_predict_writes_scores_overlays_and_rejects_unreadable(calibrated, tiny_vials, tmp_path) -> None:
    run_dir, _ = calibrated
    folder = tmp_path / "images"
    product = next((tiny_vials / "test").glob("r00/*"))
    shutil.copytree(product, folder)
    (folder / "f0_v0_R9.png").write_bytes(b"not a png")  # corrupt, and an unknown region
    out = tmp_path / "pred"
    assert main(["predict", str(run_dir), str(folder), "--out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == len(list(folder.glob("*.png")))
    bad = [r for r in rows if r["path"].endswith("f0_v0_R9.png")]
    assert bad and bad[0]["decision"] == "REJECT" and bad[0]["reason"].startswith("unreadable")
    good = [r for r in rows if r is not bad[0]]
    assert all(r["decision"] in ("ACCEPT", "REJECT") and r["threshold"] for r in good)
    for r in good:
        assert (float(r["score"]) > float(r["threshold"])) == (r["decision"] == "REJECT")
    assert len(list((out / "overlays").glob("*.png"))) == len(good)


def test_predict_rejects_what_the_line_would_not_inspect(calibrated, tiny_vials, tmp_path) -> None:
    """tfad predict gives a dark noisy frame, a saturated one and a black one REJECT with the servers' reason,
    on the run and on its export alike."""
    import cv2

    run_dir, version_dir = calibrated
    folder = tmp_path / "images"
    rng = np.random.default_rng(1)
    folder.mkdir()
    cv2.imwrite(str(folder / "f1_v0_R0.png"), rng.normal(4, 1.5, (32, 32)).clip(0, 255).astype(np.uint8))
    cv2.imwrite(str(folder / "f1_v1_R0.png"), rng.normal(252, 2, (32, 32)).clip(0, 255).astype(np.uint8))
    cv2.imwrite(str(folder / "f2_v0_R0.png"), np.zeros((32, 32), np.uint8))
    shutil.copy(next((tiny_vials / "test").glob("r00/*/f0_v1_R0.png")), folder / "f0_v1_R0.png")
    for model in (run_dir, version_dir):
        out = tmp_path / f"pred_{model.name}"
        assert main(["predict", str(model), str(folder), "--out", str(out), "--no-progress"]) == 0
        rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(open(out / "scores.csv"))}
        assert rows["f1_v0_R0.png"]["decision"] == "REJECT"
        assert "fails the acquisition check: mean gray" in rows["f1_v0_R0.png"]["reason"]
        assert "is below" in rows["f1_v0_R0.png"]["reason"]
        assert "is above" in rows["f1_v1_R0.png"]["reason"] and rows["f1_v1_R0.png"]["decision"] == "REJECT"
        assert rows["f2_v0_R0.png"]["reason"].startswith("not inspected on the line: blank")
        real = rows["f0_v1_R0.png"]  # a real patch passes the check and is decided by its score
        assert real["reason"] == ""
        assert (float(real["score"]) > float(real["threshold"])) == (real["decision"] == "REJECT")


def test_cli_errors_are_clear(tmp_path, capsys) -> None:
    assert main(["eval", str(tmp_path / "nope"), "--data", str(tmp_path)]) == 2
    assert "no such model path" in capsys.readouterr().err
    (tmp_path / "c.yaml").write_text("training:\n  epoch: 3\n")
    assert main(["fit", str(tmp_path / "c.yaml")]) == 2
    assert "did you mean 'epochs'" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "c.yaml"), "--set", "bad"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_map_max_export_serves_the_python_scores(tiny_run, tiny_vials, tmp_path) -> None:
    """The tiny run re-scored with ``resganad.patch_score: map-max``, calibrated and exported: the manifest
    names that score, and the SavedModel in a fresh process gives the scores Python scoring gives (not the
    1-SSIM ones) with the heatmaps unchanged."""
    from tests.training.export_checks import rescored_copy, served_outputs
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.serving.contract import load_manifest
    from tfad.training.runs import load_run

    settings = {"resganad": {"patch_score": "map-max", "score_map": "ssim", "score_filter_size": 5}}
    run_dir = rescored_copy(tiny_run[1].run_dir, tmp_path / "mapmax", "tiny-mapmax", settings)
    assert main(["calibrate", str(run_dir), "--data", str(tiny_vials), "--no-progress"]) == 0
    version_dir = export_run(run_dir, tmp_path / "models")
    manifest = json.loads((version_dir / "tfad_manifest.json").read_text())
    assert manifest["score"] == {
        "name": "max of the 5x5 mean-filtered local 1-SSIM map",
        "patch_score": "map-max",
        "score_map": "ssim",
        "score_filter_size": 5,
        "higher_is_anomalous": True,
        "heatmap": "per-image min-max normalised |X - X_hat|",
    }
    load_manifest(version_dir)  # the servers' parser accepts it
    images = load_images(read_dataset(str(tiny_vials), "test")[:6], (32, 32), 1)
    served = served_outputs(version_dir, images, tmp_path)
    python = load_run(run_dir).score_function()(images)
    np.testing.assert_allclose(served["score"], python["score"].numpy(), atol=SCORE_ATOL)
    np.testing.assert_allclose(served["heatmap"], python["heatmap"].numpy(), atol=HEATMAP_ATOL)
    one_minus_ssim = load_run(tiny_run[1].run_dir).score_function()(images)
    assert np.abs(served["score"] - one_minus_ssim["score"].numpy()).max() > 100 * SCORE_ATOL
    np.testing.assert_allclose(served["heatmap"], one_minus_ssim["heatmap"].numpy(), atol=HEATMAP_ATOL)


@pytest.mark.cc
def test_cc_and_python_servers_serve_the_map_max_export(tiny_run, tiny_vials, tmp_path) -> None:
    """The map-max score is in the SavedModel graph: both servers serve it unchanged (scores, decisions and
    heatmaps equal the Python scoring of the SavedModel)."""
    from tests.serving.serving_testutils import assert_servers_score_like_python
    from tests.training.export_checks import rescored_copy
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset

    settings = {"resganad": {"patch_score": "map-max", "score_map": "abs-error", "score_filter_size": 5}}
    run_dir = rescored_copy(tiny_run[1].run_dir, tmp_path / "mapmax", "tiny-mapmax-cc", settings)
    assert main(["calibrate", str(run_dir), "--data", str(tiny_vials), "--no-progress"]) == 0
    version_dir = export_run(run_dir, tmp_path / "models")
    records = read_dataset(str(tiny_vials), "test")
    images = load_images(records, (32, 32), 1)
    assert_servers_score_like_python(version_dir, images, [r.region for r in records], tmp_path)


def test_calibrate_n_sigma_sets_mean_plus_k_std_of_the_good_scores(tiny_run, tiny_vials, tmp_path) -> None:
    """``tfad calibrate --policy n-sigma --k 2``: each region's threshold is the mean + 2 sample std of that
    region's good scores; the defective images of the split do not move it (issue 16, seed 004's rule)."""
    from tfad.scoring.table import ScoreTable

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[1].run_dir, run_dir)
    args = ["calibrate", str(run_dir), "--data", str(tiny_vials), "--no-progress"]
    assert main([*args, "--policy", "max-accuracy", "--k", "2"]) == 2  # --k belongs to n-sigma
    assert main([*args, "--policy", "n-sigma", "--k", "-1"]) == 2
    assert main([*args, "--policy", "n-sigma", "--k", "2"]) == 0
    saved = json.loads((run_dir / "thresholds.json").read_text())
    assert saved["thresholds"]["policy"] == "n-sigma" and saved["calibration"]["n_sigma_k"] == 2.0
    assert saved["calibration"]["defective"] > 0  # present, and ignored by the rule
    table = ScoreTable.load(str(run_dir / "calibration"))
    regions = sorted(set(table.regions.tolist()))
    assert regions == sorted(saved["thresholds"]["regions"])
    for region in regions:
        good = table.scores[(table.regions == region) & (table.labels == 0)]
        expected = good.mean() + 2 * good.std(ddof=1)
        assert saved["thresholds"]["regions"][region] == pytest.approx(expected, rel=1e-9)


def test_eval_shift_reports_each_condition_and_its_drop(calibrated, tiny_vials, tmp_path) -> None:
    """``tfad eval --shift``: strength 0 reproduces the unshifted metrics exactly (drop 0), a strong shift
    changes the scores, and shift.json / shift.csv / the plot are written (issue 16, item 4)."""
    run_dir, _ = calibrated
    out = tmp_path / "eval"
    base = ["eval", str(run_dir), "--data", str(tiny_vials), "--out", str(out), "--no-progress", "--no-plots"]
    assert main([*base, "--shift", "fog"]) == 2
    assert main([*base, "--shift", "noise,affine", "--shift-strengths", "0,1"]) == 0
    report = json.loads((out / "report.json").read_text())
    shift = json.loads((out / "shift" / "shift.json").read_text())
    rows = {(r["kind"], r["strength"]): r for r in shift["rows"]}
    assert set(rows) == {("none", 0.0), ("noise", 0.0), ("noise", 1.0), ("affine", 0.0), ("affine", 1.0)}
    assert rows["none", 0.0]["image_auroc"] == report["image_level"]["auroc"]
    for kind in ("noise", "affine"):
        assert rows[kind, 0.0]["image_auroc_drop"] == 0.0 and rows[kind, 0.0]["true_accept_rate_drop"] == 0.0
    assert rows["noise", 1.0]["image_auroc"] != rows["none", 0.0]["image_auroc"]
    assert shift["seed"] == 0 and "sigma" in shift["full_strength"]["noise"]
    assert (out / "shift" / "shift.csv").read_text().startswith("kind,strength,image_auroc")
    assert (out / "shift" / "plots" / "shift_auroc.png").stat().st_size > 10_000


def test_calibration_leaves_out_what_the_line_would_not_score(tiny_run, tiny_vials, tmp_path, capsys) -> None:
    """A good calibration image that is a black frame (a failed grab in the kit) sets neither the acquisition
    limits nor a threshold: the line never compares its score. --no-acquisition-check writes no check."""
    from pathlib import Path

    import cv2

    from tfad.data.layouts import read_dataset
    from tfad.scoring.table import ScoreTable

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run[1].run_dir, run_dir)
    data = tmp_path / "vials"
    shutil.copytree(tiny_vials, data)
    args = [
        "calibrate",
        str(run_dir),
        "--data",
        str(data),
        "--no-progress",
        "--policy",
        "n-sigma",
        "--k",
        "2",
    ]
    black = next(Path(r.path) for r in read_dataset(str(data), "calib") if r.label == 0)
    cv2.imwrite(str(black), np.zeros(cv2.imread(str(black), cv2.IMREAD_UNCHANGED).shape, np.uint8))
    assert main(args) == 0
    assert "1 calibration image(s) are blank or outside" in capsys.readouterr().out
    saved = json.loads((run_dir / "thresholds.json").read_text())
    table = ScoreTable.load(str(run_dir / "calibration"))
    is_black = np.array([p == str(black) for p in table.paths])
    assert is_black.sum() == 1 and table.blanks[is_black].all() and table.blanks.sum() == 1
    region = str(table.regions[is_black][0])
    others = table.scores[(table.regions == region) & (table.labels == 0) & ~is_black]
    assert saved["thresholds"]["regions"][region] == pytest.approx(others.mean() + 2 * others.std(ddof=1))
    limits = saved["acquisition_check"]["regions"][region]
    assert limits["std_min"] > 0 and limits["mean_min"] > 0  # the black frame did not widen them
    assert main([*args, "--no-acquisition-check"]) == 0
    assert json.loads((run_dir / "thresholds.json").read_text())["acquisition_check"] is None
    assert "no acquisition check: --no-acquisition-check" in capsys.readouterr().out
