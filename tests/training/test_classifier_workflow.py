"""The supervised classifier through the shared machinery: fit on labelled + synthetic defects, pretrained
backbone weights from a local file (grey input replicated for 3-channel weights), calibrate, export with
Grad-CAM in the signature, and served by the C++ and Python servers like the Python scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfad.cli import main
from tfad.config import from_dict

TINY_RESNET = {"base_width": 8}


def classifier_config(root: Path, output_dir: Path, name: str = "cls", **sections):
    training = {
        "epochs": 3,
        "batch_size": 8,
        "steps_per_epoch": 15,
        "learning_rate": 3e-3,
        "validation_steps": 2,
        **sections.pop("training", {}),
    }
    return from_dict(
        {
            "name": name,
            "output_dir": str(output_dir),
            "model": {"family": "classifier", "preset": "resnet18-small", "overrides": TINY_RESNET},
            "data": {
                "root": str(root),
                "image_size": 64,
                "validation_fraction": 0.34,
                "train_split": "calib",
            },
            "training": training,
            "supervised": {"synthetic_probability": 0.3, **sections.pop("supervised", {})},
            "calibration": {"run_k": 1, "run_n": 2},
            **sections,
        }
    )


@pytest.fixture(scope="module")
def classifier_run(tiny_vials, tmp_path_factory):
    from tfad.training.fit import fit

    config = classifier_config(tiny_vials, tmp_path_factory.mktemp("cls_runs"))
    return config, fit(config, progress=False)


def test_classifier_loss_falls_and_run_is_described(classifier_run) -> None:
    _, result = classifier_run
    assert result.status == "finished"
    losses = [row["train_total_loss"] for row in result.history]
    assert losses[-1] < 0.9 * losses[0], losses
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["model_family"] == "classifier" and info["preset"] == "resnet18-small"
    assert info["classes"] == ["good", "black_spot", "particle", "scratch", "synthetic"]
    assert info["architecture"]["num_classes"] == 5 and info["inference_gflops_per_patch"] > 0
    assert info["network_build"] == {"replicates_grey": False}
    assert (result.run_dir / "plots" / "reconstructions.png").stat().st_size > 1000  # images + Grad-CAM


def test_classifier_export_has_gradcam_and_is_served_like_python(
    classifier_run, tiny_vials, tmp_path
) -> None:
    from tests.serving.serving_testutils import assert_servers_score_like_python
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.evaluation.scorer import load_scorer

    _, result = classifier_run
    assert main(["calibrate", str(result.run_dir), "--data", str(tiny_vials), "--no-progress"]) == 0
    models = tmp_path / "savedmodels"
    assert main(["export", str(result.run_dir), "--savedmodels", str(models)]) == 0
    version = models / "cls" / "1"
    manifest = json.loads((version / "tfad_manifest.json").read_text())
    assert manifest["classes"] == ["good", "black_spot", "particle", "scratch", "synthetic"]
    assert manifest["signature"]["outputs"] == ["score", "heatmap", "probabilities", "predicted_class"]
    assert "Grad-CAM" in manifest["score"]["heatmap"]
    records = read_dataset(str(tiny_vials), "test")
    images = load_images(records, (64, 64), 1)
    scorer = load_scorer(version)
    out = scorer.function(images)
    probabilities = out["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out["score"].numpy(), 1.0 - probabilities[:, 0], atol=1e-5)
    heatmaps = out["heatmap"].numpy()
    assert heatmaps.shape == (len(records), 64, 64) and heatmaps.min() >= 0 and heatmaps.max() <= 1
    assert np.isclose(heatmaps.max(axis=(1, 2)), 1.0, atol=1e-5).mean() > 0.5  # normalised by each max
    assert_servers_score_like_python(version, images, [r.region for r in records], tmp_path)


def test_pretrained_3_channel_weights_from_a_file_train_a_grey_classifier(tiny_vials, tmp_path) -> None:
    """Weights of a 3-channel backbone saved to a local file initialise a grey classifier (the grey image is
    replicated to 3 channels); the trained run restores and scores without the weights file."""
    from tfad.config import architecture
    from tfad.families import family
    from tfad.families.classifier.networks import ClassifierNetworks
    from tfad.training.fit import fit
    from tfad.training.runs import load_run

    config = classifier_config(tiny_vials, tmp_path, name="pre", training={"epochs": 1, "steps_per_epoch": 2})
    rgb_arch = architecture(
        from_dict({**config.to_dict(), "data": {**config.to_dict()["data"], "channels": 3}})
    )
    source = ClassifierNetworks(rgb_arch)
    weights = tmp_path / "backbone.weights.h5"
    source.backbone.save_weights(str(weights))
    pretrained = from_dict(
        {
            **config.to_dict(),
            "supervised": {**config.to_dict()["supervised"], "backbone_weights": str(weights)},
        }
    )
    from tfad.data.layouts import read_dataset
    from tfad.training.data_selection import with_class_names

    pretrained = with_class_names(pretrained, read_dataset(str(tiny_vials), "calib"))
    networks = family("classifier").networks(architecture(pretrained), pretrained)
    assert networks.replicates_grey
    loaded = [v.numpy() for v in networks.backbone.weights]
    expected = [v.numpy() for v in source.backbone.weights]
    assert len(loaded) == len(expected) and all(
        np.array_equal(a, b) for a, b in zip(loaded, expected, strict=True)
    )

    result = fit(pretrained, progress=False)
    weights.unlink()  # restoring the run must not need the pretrained file
    run = load_run(result.run_dir)
    assert json.loads((result.run_dir / "run.json").read_text())["network_build"] == {"replicates_grey": True}
    scores = run.score_function()(np.zeros((2, 64, 64, 1), np.uint8))["score"].numpy()
    assert scores.shape == (2,) and np.isfinite(scores).all()


def test_missing_pretrained_weights_file_is_named(tiny_vials, tmp_path) -> None:
    from tfad.training.fit import fit

    config = classifier_config(
        tiny_vials, tmp_path, supervised={"backbone_weights": str(tmp_path / "nope.weights.h5")}
    )
    with pytest.raises(FileNotFoundError, match="nope.weights.h5"):
        fit(config, progress=False)
