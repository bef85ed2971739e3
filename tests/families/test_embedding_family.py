"""The embedding family through the shared machinery: PaDiM's distance against a numpy reference, each
method's tiny fit (one streaming pass, no gradient step), export parity, both servers serving it, and the
border/blur geometry of the map."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tfad.cli import main
from tfad.config import ConfigError, from_dict

# 32x32 patches fed to the backbone at 32: a 4x4 stride-8 grid, seconds per fit on 2 cores.
TINY = {"backbone_input_size": 32, "blur_sigma": 1.0}


def embedding_config(root: Path, output_dir: Path, preset: str, name: str | None = None, **overrides):
    return from_dict(
        {
            "name": name or f"emb-{preset}",
            "output_dir": str(output_dir),
            "model": {"family": "embedding", "preset": preset, "overrides": {**TINY, **overrides}},
            "data": {"root": str(root), "image_size": 32, "validation_fraction": 0.34},
            "calibration": {"run_k": 1, "run_n": 2},
        }
    )


@pytest.fixture(scope="module")
def padim_run(tiny_vials, tmp_path_factory):
    from tfad.training.fit import fit

    config = embedding_config(tiny_vials, tmp_path_factory.mktemp("emb_runs"), "padim")
    return config, fit(config, progress=False)


def test_padim_distance_is_the_mahalanobis_distance_of_a_numpy_reference(tiny_vials, tmp_path) -> None:
    """The fitted per-cell Gaussian (mean, Sigma + eps I) and the served distance, recomputed in numpy from
    the same patch features."""
    import tensorflow as tf

    from tfad.config import architecture
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.families.embedding.fitter import build_model, channel_subset, fit_state

    config = embedding_config(tiny_vials, tmp_path, "padim", feature_channels=24)
    arch = architecture(config)
    model = build_model(arch)
    train = load_images(read_dataset(str(tiny_vials), "train"), (32, 32), 1).astype(np.float32) / 255
    batches = lambda: [train[:7], train[7:]]  # noqa: E731 (two batches: the moments must accumulate)
    state, build = fit_state(arch, model.extractor, batches, len(train), progress=False)
    model.normal_model.assign(state)
    features = model.features(tf.constant(train)).numpy().astype(np.float64)  # [N, P, D]
    assert features.shape[1:] == (16, 24) and build["images"] == len(train)
    assert channel_subset(arch).shape == (24,)
    mean = features.mean(axis=0)
    test = load_images(read_dataset(str(tiny_vials), "test")[:5], (32, 32), 1).astype(np.float32) / 255
    query = model.features(tf.constant(test)).numpy().astype(np.float64)
    expected = np.empty(query.shape[:2])
    for p in range(features.shape[1]):
        covariance = np.cov(features[:, p].T) + 0.01 * np.eye(24)
        d = query[:, p] - mean[p]
        expected[:, p] = np.sqrt(np.einsum("nd,de,ne->n", d, np.linalg.inv(covariance), d))
    served = model.normal_model(tf.constant(query, tf.float32)).numpy()
    np.testing.assert_allclose(mean, state["mean"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(served, expected, rtol=2e-3, atol=1e-3)


def test_fit_is_one_pass_without_gradient_steps_and_records_the_fitted_model(padim_run) -> None:
    config, result = padim_run
    assert result.status == "finished" and result.global_step == 0
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["model_family"] == "embedding" and info["preset"] == "padim"
    assert info["analyzer"]["method"] == "padim" and info["analyzer"]["images"] > 0
    assert info["analyzer"]["heatmap_range_from"] == "validation"
    low, high = info["analyzer"]["heatmap_range"]
    assert 0 < low < high
    assert info["inference_gflops_per_patch"] > 0
    assert (result.run_dir / "embedding" / "model.weights.h5").is_file()


def test_defective_patches_score_higher_than_good_ones(padim_run, tiny_vials) -> None:
    """Pretrained features separate the synthetic vials' defects (AUROC well above chance, even at 32x32)."""
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.evaluation.scorer import load_scorer
    from tfad.scoring.metrics import image_auroc

    _, result = padim_run
    records = read_dataset(str(tiny_vials), "test")
    scores = load_scorer(result.run_dir)(load_images(records, (32, 32), 1))["score"]
    labels = np.array([r.label for r in records])
    assert 0 < labels.sum() < len(labels)
    assert image_auroc(labels, scores) > 0.7


def test_export_is_served_by_both_servers_like_python_scoring(padim_run, tiny_vials, tmp_path) -> None:
    from tests.serving.serving_testutils import assert_servers_score_like_python
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset

    _, result = padim_run
    calibrate = ["calibrate", str(result.run_dir), "--data", str(tiny_vials), "--no-progress"]
    assert main([*calibrate, "--policy", "false-reject-budget", "--false-reject-budget", "0.5"]) == 0
    models = tmp_path / "savedmodels"
    assert main(["export", str(result.run_dir), "--savedmodels", str(models)]) == 0
    version = models / "emb-padim" / "1"
    manifest = json.loads((version / "tfad_manifest.json").read_text())
    assert manifest["model_family"] == "embedding" and manifest["runtime"] == "savedmodel"
    assert manifest["signature"]["outputs"] == ["score", "heatmap"]
    records = read_dataset(str(tiny_vials), "test")
    images = load_images(records, (32, 32), 1)
    # Distances are ~100 here: float32 rounding that differs with the batch size the servers run (60 vs the
    # reference's) is ~1e-6 relative, so the absolute tolerance is 1e-3 (1e-5 relative).
    regions = [r.region for r in records]
    # A generous cycle budget: this checks score parity, not timing (a loaded machine must not fail it).
    assert_servers_score_like_python(
        version, images, regions, tmp_path, score_atol=1e-3, cycle_budget_ms=10000
    )


@pytest.mark.parametrize(
    "preset, overrides",
    [
        ("padim-diagonal", {}),
        ("patchcore", {"border_cells": 1, "coreset_fraction": 0.25}),
        ("patchcore-pq", {"border_cells": 1, "coreset_fraction": 0.5, "pq_subspaces": 4, "pq_top_k": 4}),
        ("mhbc-patchcore", {"border_cells": 0, "feature_channels": 16, "mhbc_centroids": 16}),
    ],
)
def test_every_method_fits_exports_and_scores_like_the_run(preset, overrides, tiny_vials, tmp_path) -> None:
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.evaluation.scorer import load_scorer
    from tfad.training.fit import fit

    config = embedding_config(tiny_vials, tmp_path / "runs", preset, **overrides)
    result = fit(config, progress=False)
    info = json.loads((result.run_dir / "run.json").read_text())
    if preset.startswith("patchcore"):
        build = info["network_build"]
        assert build["bank_size"] == int(np.ceil(overrides["coreset_fraction"] * build["collected_features"]))
    # export verifies parity with the run itself (tfad export's check) before publishing
    export = ["export", str(result.run_dir), "--savedmodels", str(tmp_path / "sm"), "--allow-uncalibrated"]
    assert main(export) == 0
    images = load_images(read_dataset(str(tiny_vials), "test")[:8], (32, 32), 1)
    run_scores = load_scorer(result.run_dir)(images)
    saved = load_scorer(tmp_path / "sm" / config.name / "1")(images)
    np.testing.assert_allclose(saved["score"], run_scores["score"], rtol=1e-5)
    assert np.all(np.isfinite(run_scores["score"])) and np.ptp(run_scores["score"]) > 0
    heatmap = run_scores["heatmap"]
    assert heatmap.shape == (8, 32, 32) and heatmap.min() >= 0 and heatmap.max() <= 1


def test_the_channel_subset_taken_per_tap_is_the_subset_of_the_grid_bit_for_bit() -> None:
    import tensorflow as tf

    from tfad.backbones import feature_grid
    from tfad.families.embedding.model import _select_channels

    rng = np.random.default_rng(7)
    maps = [
        tf.constant(rng.normal(size=(2, 8, 8, 5)), tf.float32),
        tf.constant(rng.normal(size=(2, 4, 4, 7)), tf.float32),
    ]
    for index in ([0, 3, 5, 9, 11], [1, 2, 4], [6, 8, 10]):  # both taps; the first only; the second only
        index = np.array(index)
        expected = tf.gather(feature_grid(maps, 8, 3), index, axis=-1)
        np.testing.assert_array_equal(
            feature_grid(_select_channels(maps, index), 8, 3).numpy(), expected.numpy()
        )
    with pytest.raises(ValueError, match="sorted"):
        _select_channels(maps, np.array([3, 1]))


def test_score_and_heatmap_are_the_maximum_and_the_scaled_map_of_the_distance_grid(
    padim_run, tiny_vials
) -> None:
    """The served score is the maximum of the upsampled, blurred distance grid and the heatmap that map on
    the fitted [0, 1] scale, clipped: checked against that definition, computed directly, for the fitted
    range and for the unfitted one (zeros: the fitter reads the raw map that way)."""
    import tensorflow as tf

    from tfad.backbones.resampling import upsample_blur_matrix
    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.families.embedding import EmbeddingFamily
    from tfad.families.embedding.model import score_images

    config, result = padim_run
    info = json.loads((result.run_dir / "run.json").read_text())
    model = EmbeddingFamily().load_fitted(result.run_dir, config, info)
    images = load_images(read_dataset(str(tiny_vials), "test")[:6], (32, 32), 1)
    grid = model.distance_grid(tf.constant(images, tf.float32) / 255.0).numpy()[..., 0].astype(np.float64)
    matrix = upsample_blur_matrix(grid.shape[1], 32, model.arch.blur_sigma).astype(np.float64)
    anomaly_map = np.einsum("ij,njk,lk->nil", matrix, grid, matrix)
    fitted = model.heatmap_range.numpy().copy()
    for low, high in (fitted, (0.0, 0.0), (fitted[0], fitted[0] + 0.25 * (fitted[1] - fitted[0]))):
        model.heatmap_range.assign([low, high])
        served = score_images(model, tf.constant(images))
        called = model(tf.constant(images, tf.float32) / 255.0)
        expected = np.clip((anomaly_map - low) / max(high - low, 1e-12), 0.0, 1.0)
        np.testing.assert_allclose(served["score"].numpy(), anomaly_map.max(axis=(1, 2)), rtol=1e-5)
        np.testing.assert_allclose(called["anomaly_map"].numpy()[..., 0], anomaly_map, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(served["heatmap"].numpy(), expected, atol=1e-4)
        np.testing.assert_array_equal(called["heatmap"].numpy()[..., 0], served["heatmap"].numpy())
    assert 0 < expected.mean() < 1 and expected.max() == 1.0  # the narrow range clips some pixels, not all


def test_blur_keeps_a_constant_map_and_spreads_a_spike() -> None:
    import tensorflow as tf

    from tfad.backbones.resampling import gaussian_kernel
    from tfad.scoring.discriminative import gaussian_blur

    constant = tf.fill([1, 16, 16, 1], 3.0)
    np.testing.assert_allclose(gaussian_blur(constant, 2.0).numpy(), 3.0, rtol=1e-6)
    spike = np.zeros([1, 33, 33, 1], np.float32)
    spike[0, 16, 16, 0] = 1.0
    blurred = gaussian_blur(tf.constant(spike), 2.0).numpy()[0, :, :, 0]
    kernel = gaussian_kernel(2.0)
    np.testing.assert_allclose(blurred[16 - 8 : 16 + 9, 16 - 8 : 16 + 9], np.outer(kernel, kernel), atol=1e-7)
    assert abs(blurred.sum() - 1.0) < 1e-5


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"method": "knn"}, "method"),
        ({"taps": "stride32"}, "taps"),
        ({"backbone_input_size": 36}, "multiple of 16"),
        ({"border_cells": 2}, "border_cells"),
        ({"coreset_fraction": 0.0}, "coreset_fraction"),
        ({"local_average": 2}, "local_average"),
        ({"pq_subspaces": 4}, "pq_subspaces"),
    ],
)
def test_bad_knobs_are_config_errors_naming_them(overrides, message, tmp_path) -> None:
    with pytest.raises(ConfigError, match=message):
        embedding_config(tmp_path, tmp_path, "padim", **overrides)


def test_too_few_training_images_is_a_one_line_error(tmp_path, capsys) -> None:
    import cv2
    import yaml

    root = tmp_path / "mvtec"
    (root / "train" / "good").mkdir(parents=True)
    cv2.imwrite(str(root / "train" / "good" / "only.png"), np.full((32, 32), 128, np.uint8))
    config = {
        "name": "too-few",
        "output_dir": str(tmp_path / "runs"),
        "model": {"family": "embedding", "preset": "padim", "overrides": TINY},
        "data": {"root": str(root), "image_size": 32, "validation_fraction": 0.0},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["fit", str(path), "--no-progress"]) == 2
    assert "at least 2 good training images" in capsys.readouterr().err
