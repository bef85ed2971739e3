"""The supervised families (segmentation; the classifier has its own module) and the blob baseline through
the shared machinery: fit (labelled + synthetic defects, class weights, early stopping with the best
epoch kept), calibrate, export, eval, predict, and the Python server serving a blob model while the C++
server refuses it with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfad.cli import main
from tfad.config import ConfigError, from_dict
from tfad.data.records import ImageRecord

TINY_UNET = {"stem_stride": 2, "base_width": 8, "depth": 3}
# The blob baseline's image AUROC on the tiny vials' test split with the parameters of blob_config. It is
# determined by the data (seeded synth-vials, no training, wide score gaps): a change means the analyzer,
# its defaults or the data generator changed. (Weak: good patches' noise blobs outscore most defects.)
BLOB_TINY_VIALS_AUROC = 0.6


def segmentation_config(root: Path, output_dir: Path, name: str = "seg", **sections) -> object:
    """Segmentation trained on the labelled calib split of the tiny vials (+ synthetic defects)."""
    training = {
        "epochs": 3,
        "batch_size": 8,
        "steps_per_epoch": 15,
        "learning_rate": 5e-3,
        "validation_steps": 2,
        **sections.pop("training", {}),
    }
    return from_dict(
        {
            "name": name,
            "output_dir": str(output_dir),
            "model": {"family": "segmentation", "preset": "unet", "overrides": TINY_UNET},
            "data": {
                "root": str(root),
                "image_size": 32,
                "validation_fraction": 0.34,
                "train_split": "calib",
            },
            "training": training,
            "supervised": {
                "synthetic_probability": 0.3,
                "score_filter_size": 5,
                **sections.pop("supervised", {}),
            },
            "calibration": {"run_k": 1, "run_n": 2},
            **sections,
        }
    )


@pytest.fixture(scope="module")
def segmentation_run(tiny_vials, tmp_path_factory):
    from tfad.training.fit import fit

    config = segmentation_config(tiny_vials, tmp_path_factory.mktemp("seg_runs"))
    return config, fit(config, progress=False)


def test_segmentation_loss_falls_and_classes_come_from_the_data(segmentation_run) -> None:
    config, result = segmentation_run
    assert result.status == "finished" and result.global_step == 45
    losses = [row["train_total_loss"] for row in result.history]
    assert losses[-1] < 0.9 * losses[0], losses
    info = json.loads((result.run_dir / "run.json").read_text())
    # synth-vials defect types, sorted, then the synthetic class; written into the run's config too
    assert info["classes"] == ["good", "black_spot", "particle", "scratch", "synthetic"]
    saved = (result.run_dir / "config.yaml").read_text()
    assert "synthetic" in saved and "black_spot" in saved
    assert info["early_stopping"]["patience"] == 5  # the supervised families' default
    assert (result.run_dir / "checkpoints" / "best").is_dir()


def test_segmentation_export_is_served_like_python_scoring(segmentation_run, tiny_vials, tmp_path) -> None:
    from tests.serving.serving_testutils import assert_servers_score_like_python
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset

    _, result = segmentation_run
    # Thresholds near the median good score, so that the served product has both decisions to compare
    # whatever this briefly trained U-Net learned.
    calibrate = ["calibrate", str(result.run_dir), "--data", str(tiny_vials), "--no-progress"]
    assert main([*calibrate, "--policy", "false-reject-budget", "--false-reject-budget", "0.5"]) == 0
    models = tmp_path / "savedmodels"
    assert main(["export", str(result.run_dir), "--savedmodels", str(models)]) == 0
    version = models / "seg" / "1"
    manifest = json.loads((version / "tfad_manifest.json").read_text())
    assert manifest["model_family"] == "segmentation" and manifest["runtime"] == "savedmodel"
    assert manifest["signature"]["outputs"] == ["score", "heatmap"]
    records = read_dataset(str(tiny_vials), "test")
    images = load_images(records, (32, 32), 1)
    # This briefly trained U-Net's scores lie very close to each other and to the thresholds: the default
    # tolerance's 1e-4 "too close to call" margin left no patch to compare (seen in a failing run). An
    # absolute 1e-7 keeps the check strict, as both sides run the same float32 graph.
    assert_servers_score_like_python(version, images, [r.region for r in records], tmp_path, score_atol=1e-7)


def test_synthetic_defects_carry_the_perlin_mask_and_class(tiny_vials, tmp_path) -> None:
    from tfad.data.layouts import read_dataset
    from tfad.training.data_selection import with_class_names
    from tfad.training.inputs import supervised_dataset

    config = segmentation_config(tiny_vials, tmp_path, supervised={"synthetic_probability": 1.0})
    records = read_dataset(str(tiny_vials), "train")  # good images only
    config = with_class_names(config, records)
    assert config.supervised.classes == ["good", "synthetic"]
    batch = next(iter(supervised_dataset(records, config, config.supervised.classes, augment=False)))
    synthetic = batch["synthetic"].numpy()
    classes, masks = batch["class"].numpy(), batch["mask"].numpy()
    assert synthetic.any()
    # every synthetic sample is class 1 with a non-empty mask; an empty Perlin draw stays good with no mask
    assert (classes == synthetic.astype(int)).all()
    assert all(masks[i].max() == 1.0 for i in np.flatnonzero(synthetic))
    assert all(masks[i].max() == 0.0 for i in np.flatnonzero(~synthetic))


def test_only_good_images_without_synthetic_defects_is_a_clear_error(tiny_vials, tmp_path) -> None:
    from tfad.training.fit import fit

    config = segmentation_config(tiny_vials, tmp_path, supervised={"synthetic_probability": 0.0})
    config = from_dict({**config.to_dict(), "data": {**config.to_dict()["data"], "train_split": "train"}})
    with pytest.raises(ConfigError, match="only good images"):
        fit(config, progress=False)


def test_class_counts_weights_and_stratified_split() -> None:
    from tfad.families.classifier.trainer import class_counts
    from tfad.trainers.supervised import balanced_class_weights
    from tfad.training.data_selection import split_by_product, with_class_names

    records = [ImageRecord(f"g{i}.png", 0, "good") for i in range(12)]
    records += [ImageRecord(f"c{i}.png", 1, "crack") for i in range(4)]
    records += [ImageRecord(f"h{i}.png", 1, "hole") for i in range(2)]
    config = from_dict({"model": {"family": "segmentation"}, "supervised": {"synthetic_probability": 0.25}})
    config = with_class_names(config, records)
    assert config.supervised.classes == ["good", "crack", "hole", "synthetic"]
    counts = class_counts(config, records)
    assert counts == pytest.approx([9.0, 4.0, 2.0, 3.0])  # a quarter of the good images become synthetic
    weights = balanced_class_weights(counts)
    np.testing.assert_allclose(weights, [18 / (4 * 9), 18 / (4 * 4), 18 / (4 * 2), 18 / (4 * 3)], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(counts) * weights, 18 / 4, rtol=1e-6)  # equal total weight
    _, val = split_by_product(records, 0.5, seed=0, stratify=True)
    kinds = sorted(r.defect_type for r in val)
    assert kinds.count("good") == 6 and kinds.count("crack") == 2 and kinds.count("hole") == 1


def test_weighted_cross_entropy_and_dice_by_hand() -> None:
    import tensorflow as tf

    from tfad.losses.supervised import dice_loss, segmentation_loss, weighted_cross_entropy

    logits = tf.constant([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = tf.constant([0, 1, 0])
    ce = -np.log(np.exp([2.0, 1.0, 1.0]) / np.array([np.exp(2) + 1, 1 + np.e, 2 * np.e]))
    w = np.array([1.0, 3.0])
    expected = (ce[0] * 1 + ce[1] * 3 + ce[2] * 1) / 5
    assert float(weighted_cross_entropy(logits, labels, w)) == pytest.approx(expected, rel=1e-5)
    p = np.zeros((1, 4, 4, 1), np.float32)
    m = np.zeros_like(p)
    p[0, :2, :2], m[0, :2, :] = 1.0, 1.0  # |P n M| = 4, |P| = 4, |M| = 8
    assert float(dice_loss(p, m)) == pytest.approx(1 - (2 * 4 + 1) / (12 + 1), rel=1e-6)
    assert float(dice_loss(np.zeros_like(p), np.zeros_like(m))) == 0.0  # an empty mask predicted empty
    with pytest.raises(ValueError, match="unknown segmentation loss"):
        segmentation_loss(p, m, "dice+l2")


def test_early_stopping_keeps_the_best_epoch_and_a_resume_does_nothing(tiny_vials, tmp_path) -> None:
    """A learning rate far too high makes the validation loss rise after the first epoch: training stops
    after `patience` epochs without improvement and the run's model is the best epoch's checkpoint."""
    from tfad.training.fit import fit
    from tfad.training.runs import load_run

    config = segmentation_config(
        tiny_vials,
        tmp_path,
        name="early",
        training={"epochs": 8, "steps_per_epoch": 4, "early_stopping_patience": 1, "learning_rate": 0.5},
    )
    result = fit(config, progress=False)
    info = json.loads((result.run_dir / "run.json").read_text())
    state = info["early_stopping"]
    losses = [row["val_total_loss"] for row in result.history]
    best = int(np.argmin(losses)) + 1
    assert state["stopped"] and state["best_epoch"] == best
    assert result.epochs_done < 8 and len(result.history) == best + 1  # one epoch without improvement
    run = load_run(result.run_dir)
    assert Path(run.checkpoint).parent.name == "best" and run.checkpoint.endswith(f"-{best * 4}")
    again = fit(config, resume=True, progress=False)
    assert again.global_step == result.global_step  # stopped early: nothing left to do


# --- blob analysis ---------------------------------------------------------------------------------------


def blob_config(root: Path, output_dir: Path, **blob) -> object:
    return from_dict(
        {
            "name": "blob",
            "output_dir": str(output_dir),
            "model": {"family": "blob"},
            "data": {"root": str(root), "image_size": 64},
            "blob": {"parameters": {"background": "reference", "min_area": 3}, **blob},
            "calibration": {"run_k": 1, "run_n": 2},
        }
    )


def test_blob_config_errors_name_the_key(tiny_vials, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"blob\.parameters\.min_aera: "):
        blob_config(tiny_vials, tmp_path, parameters={"min_aera": 3})
    with pytest.raises(ConfigError, match=r"blob\.parameters\.polarity: "):
        blob_config(tiny_vials, tmp_path, parameters={"polarity": "sideways"})


@pytest.fixture(scope="module")
def blob_export(tiny_vials, tmp_path_factory):
    from tfad.training.fit import fit

    out = tmp_path_factory.mktemp("blob")
    config = blob_config(tiny_vials, out / "runs")
    result = fit(config, progress=False)
    assert main(["calibrate", str(result.run_dir), "--data", str(tiny_vials), "--no-progress"]) == 0
    assert main(["export", str(result.run_dir), "--savedmodels", str(out / "models")]) == 0
    return result.run_dir, out / "models" / "blob" / "1"


def test_blob_fit_learns_the_reference_and_exports_without_a_savedmodel(blob_export, tiny_vials) -> None:
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.families.blob.analyzer import BlobAnalyzer

    run_dir, version = blob_export
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["model_family"] == "blob"
    good = read_dataset(str(tiny_vials), "train")
    analyzer = BlobAnalyzer.load(run_dir / "blob")
    # the reference is the per-pixel median of the good training images (all of them: fewer than 256)
    expected = np.median(load_images(good, (64, 64), 1).astype(np.float64), axis=0)
    reference = analyzer.reference
    # One scale: grey units in [0, 1] (float32, the median / 255), the contrast image's units.
    assert reference is not None and reference.dtype == np.float32 and reference.shape == (64, 64)
    np.testing.assert_allclose(reference.astype(np.float64) * 255.0, expected.reshape(64, 64), atol=1e-3)
    manifest = json.loads((version / "tfad_manifest.json").read_text())
    assert manifest["runtime"] == "python-blob" and manifest["signature"] is None
    assert not (version / "saved_model.pb").exists() and (version / "blob" / "blob.json").is_file()


def test_blob_export_is_checked_before_it_is_published(blob_export, tmp_path, monkeypatch) -> None:
    """The blob family exports parameters, not a SavedModel: the check reloads those from the temporary
    folder too, and an artefact that scores differently from the run is never published."""
    from tfad.export.savedmodel import ExportError, export_run
    from tfad.families.blob.analyzer import REFERENCE_FILE, BlobAnalyzer

    run_dir, _ = blob_export
    target = export_run(run_dir, tmp_path / "good")  # a faithful export passes the check and is published
    assert target.name == "1" and (target / "blob" / "blob.json").is_file()

    save = BlobAnalyzer.save

    def save_corrupted(self, directory):  # e.g. a reference image written wrong
        save(self, directory)
        reference = Path(directory) / REFERENCE_FILE
        np.save(reference, 1.0 - np.load(reference))

    monkeypatch.setattr(BlobAnalyzer, "save", save_corrupted)
    models = tmp_path / "bad"
    with pytest.raises(ExportError, match=r"differ from the run's \(max \|d score\| .*nothing was published"):
        export_run(run_dir, models)
    assert not (models / "blob").exists() or not list((models / "blob").iterdir())


def test_blob_eval_and_predict(blob_export, tiny_vials, tmp_path) -> None:
    import csv

    from tests.training.report_checks import check_report_metrics
    from tfad.evaluation.scorer import load_scorer
    from tfad.scoring.table import ScoreTable

    _, version = blob_export
    out = tmp_path / "eval"
    assert main(["eval", str(version), "--data", str(tiny_vials), "--out", str(out), "--no-progress"]) == 0
    # The reported metrics are those of the scores and heatmaps (recomputed independently) ...
    check_report_metrics(out)
    # ... and the blob analysis is deterministic (fixed-seed data, no training): its AUROC is known.
    report = json.loads((out / "report.json").read_text())
    assert report["image_level"]["auroc"] == pytest.approx(BLOB_TINY_VIALS_AUROC, abs=1e-9)
    predictions = tmp_path / "pred"
    some = next((tiny_vials / "test").rglob("*.png")).parent
    assert main(["predict", str(version), str(some), "--out", str(predictions), "--no-progress"]) == 0
    # predict scores each image of the folder as eval did, and decides with its region's threshold
    rows = list(csv.DictReader(open(predictions / "scores.csv")))
    assert sorted(row["path"] for row in rows) == sorted(str(p) for p in some.glob("*.png"))
    evaluated = ScoreTable.load(str(out))
    eval_scores = dict(zip(evaluated.paths.tolist(), evaluated.scores.tolist(), strict=True))
    thresholds = load_scorer(version).thresholds
    for row in rows:
        score, threshold = float(row["score"]), thresholds.threshold_for(row["region"])
        assert score == pytest.approx(eval_scores[row["path"]], abs=1e-6), row
        assert float(row["threshold"]) == pytest.approx(threshold, abs=1e-6)
        assert row["decision"] == ("REJECT" if eval_scores[row["path"]] > threshold else "ACCEPT"), row


def test_python_server_serves_blob_and_cc_server_refuses_it(blob_export, tiny_vials, tmp_path) -> None:
    from tests.serving.serving_testutils import assert_servers_score_like_python, cc_binary_or_skip
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset

    _, version = blob_export
    records = read_dataset(str(tiny_vials), "test")
    images = load_images(records, (64, 64), 1)
    # 96 patches analysed one after the other: more than a 60-patch product's budget on a loaded machine
    assert_servers_score_like_python(
        version, images, [r.region for r in records], tmp_path, kinds=("python",), cycle_budget_ms=20000
    )

    import re
    import subprocess
    import time

    binary = cc_binary_or_skip()
    log = tmp_path / "cc.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(binary), f"--models_root={version.parent.parent}", "--listen=127.0.0.1:0"],
            stdout=fh,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not re.search(r"python-blob", log.read_text()):
                assert proc.poll() is None or "python-blob" in log.read_text(), log.read_text()
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    text = log.read_text()
    assert "python-blob" in text and "tfad serve" in text, text
