"""``tfad export``: a trained, calibrated run -> ``savedmodels/<name>/<version>/`` for the line servers.

The SavedModel is written with Keras's ``ExportArchive`` (``model.export()``'s machinery; toolchain.md: Keras
3 models saved with ``tf.saved_model.save`` do not load in the C++ session loader). Its main signature,
``serving_default``, takes ``images`` uint8 ``[N, H, W, C]`` and returns ``score`` [N], ``heatmap`` [N, H, W]
and ``reconstruction`` [N, H, W, C] by running the model family's score function
(:meth:`tfad.families.ModelFamily.score_function`), the same function Python scoring runs. A second
signature, ``score_only``, returns the score alone: the servers run it for requests that want no heatmaps,
which saves the heatmap's ops (a session runs every output of a signature it calls). Beside them,
``tfad_manifest.json`` (docs/architecture.md, "SavedModel contract") carries everything a server needs to
decide: input size, preprocessing, region thresholds and their policy, run acceptance k-of-n, and the
provenance (family, preset, training-data fingerprint, tfad version). The version folder appears atomically
(written under a temporary name, then renamed), so a polling server never sees half a model; and, unless
``check=False``, only after the model written in the temporary folder has been reloaded there and its scores
(of both signatures) compared with the run's, so a polling server never
sees a model that fails that check either.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tfad import __version__
from tfad.evaluation.scorer import load_scorer, score_paths_agree, scorer_from_run
from tfad.families import family
from tfad.rundir import (
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    SAVEDMODEL_RUNTIME,
    SCORE_PATHS_ATOL,
    SCORE_PATHS_RTOL,
    THRESHOLDS_FILE,
)
from tfad.scoring.acquisition import AcquisitionCheck
from tfad.training.runs import TrainedRun, load_run

# Export check: the reloaded artefact against the run on random patches. Stated tolerance: the SavedModel
# runs the same graph as the Keras model; differences come only from op scheduling/fusion.
CHECK_SCORE_ATOL, CHECK_HEATMAP_ATOL = 1e-4, 1e-3
CHECK_IMAGES, CHECK_SEED = 4, 0
SCORE_ONLY_SIGNATURE = "score_only"  # the second signature: the score alone (see _write_savedmodel)

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """The run cannot be exported as asked (uncalibrated, version exists, ...)."""


def next_version(model_dir: Path) -> int:
    """One more than the highest numbered version folder under ``model_dir`` (1 for none)."""
    versions = [int(p.name) for p in model_dir.iterdir() if p.name.isdigit()] if model_dir.is_dir() else []
    return max(versions, default=0) + 1


@dataclass(frozen=True)
class ExportCheck:
    """The export check's result: the largest differences between the reloaded artefact and the run."""

    max_score_diff: float
    max_heatmap_diff: float
    images: int

    def describe(self) -> str:
        return (
            f"exported model reloaded, scores equal the run's on {self.images} random patches "
            f"(max |d score| {self.max_score_diff:.1e}, max |d heatmap| {self.max_heatmap_diff:.1e})"
        )


def _max_abs_diff(a, b) -> float:
    """max |a - b|; inf when the shapes differ or a value is not finite (never passes the check)."""
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    diff = np.abs(a - b)
    return float(diff.max()) if np.isfinite(diff).all() else float("inf")


def check_export(run: TrainedRun, folder: Path) -> ExportCheck:
    """Reload the artefact written in ``folder`` (SavedModel or blob parameters, with its manifest) and
    compare its scores and heatmaps with the loaded ``run``'s on random patches.

    Raises:
        ExportError: the artefact cannot be reloaded or scored, or its outputs differ from the run's beyond
            the stated tolerance (the message names both differences).
    """
    import numpy as np

    reference = scorer_from_run(run)
    rng = np.random.default_rng(CHECK_SEED)
    shape = (CHECK_IMAGES, reference.image_size, reference.image_size, reference.channels)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    expected = reference(images)
    try:
        scorer = load_scorer(folder)
        got = scorer(images)
        scores_only = scorer.scores_only(images)
    except Exception as err:  # anything that keeps the artefact from scoring fails the check
        raise ExportError(
            f"exported model could not be reloaded and scored ({type(err).__name__}: {err}); "
            "nothing was published"
        ) from err
    diff = _max_abs_diff(expected["score"], got["score"])
    heat = _max_abs_diff(expected["heatmap"], got["heatmap"])
    if scores_only is not None:  # the score-only signature must decide as the full one, by the servers' rule
        agree, worst = score_paths_agree(got["score"], scores_only)
        if not agree:
            raise ExportError(
                f"exported model's score-only signature differs from serving_default (max |d| {worst:.2e}, "
                f"tolerance {SCORE_PATHS_ATOL:g} + {SCORE_PATHS_RTOL:g} x |score|) on {CHECK_IMAGES} random "
                "patches; the servers would refuse it; nothing was published"
            )
    if not (diff <= CHECK_SCORE_ATOL and heat <= CHECK_HEATMAP_ATOL):
        raise ExportError(
            f"exported model's scores differ from the run's (max |d score| {diff:.2e}, tolerance "
            f"{CHECK_SCORE_ATOL:.0e}; max |d heatmap| {heat:.2e}, tolerance {CHECK_HEATMAP_ATOL:.0e}) on "
            f"{CHECK_IMAGES} random patches; nothing was published"
        )
    return ExportCheck(diff, heat, CHECK_IMAGES)


def _write_savedmodel(run: TrainedRun, target: Path) -> None:
    """The run's score function as the ``serving_default`` signature of a SavedModel in ``target``."""
    import keras
    import tensorflow as tf

    size, channels = run.config.data.image_size, run.config.data.channels
    archive = keras.export.ExportArchive()
    archive.track(run.inference_model)
    score_function = run.score_function()
    images = [tf.TensorSpec([None, size, size, channels], tf.uint8, name="images")]
    archive.add_endpoint(name="serving_default", fn=score_function, input_signature=images)
    # The same function, returning the score only. A session fetching one output of serving_default still
    # runs all of them (its call is one node), so a server that wants no heatmaps runs this one instead, whose
    # graph keeps only the ops the score needs.
    archive.add_endpoint(
        name=SCORE_ONLY_SIGNATURE,
        fn=lambda images: {"score": score_function(images)["score"]},
        input_signature=images,
    )
    archive.write_out(str(target), verbose=False)


def build_manifest(
    run: TrainedRun,
    version: int,
    thresholds: dict | None,
    calibration: dict | None,
    acquisition_check: dict | None = None,
) -> dict[str, Any]:
    """The manifest of ``run`` as version ``version``; ``acquisition_check`` is the block ``tfad calibrate``
    wrote beside the thresholds (:mod:`tfad.scoring.acquisition`; None: the servers do not check)."""
    config = run.config
    size, channels = config.data.image_size, config.data.channels
    model_family = family(config.model.family)
    return {
        "format": MANIFEST_FORMAT,
        "name": run.name,
        "version": int(version),
        "model_family": config.model.family,
        "preset": config.model.preset,
        "architecture": run.info.get("architecture"),
        "inference_gflops_per_patch": run.info.get("inference_gflops_per_patch"),
        "input": {"height": size, "width": size, "channels": channels, "dtype": "uint8", "layout": "NHWC"},
        "preprocessing": {
            "scale": "1/255",
            "resize": "bilinear",
            # a patch whose pixels all have one value is a camera or grab failure, not a product: the servers
            # answer REJECT_INCOMPLETE / BLANK_PATCH (a reconstruction model may reconstruct it perfectly)
            "blank_patches": "reject",
            "color": "gray" if channels == 1 else "rgb",
        },
        "signature": {
            "name": "serving_default",
            "input": "images",
            "outputs": list(model_family.outputs),
            "score_only": SCORE_ONLY_SIGNATURE,
        }
        if model_family.runtime == SAVEDMODEL_RUNTIME
        else None,
        "runtime": model_family.runtime,
        "score": model_family.score_description(config),
        **model_family.manifest_extras(config),
        "thresholds": thresholds,
        # limits of a patch's mean grey and contrast: outside them the servers answer REJECT_INCOMPLETE /
        # ACQUISITION_CHECK (a lamp, exposure, focus or grab failure) without running the model
        "acquisition_check": acquisition_check,
        "calibration": calibration,
        "run_acceptance": {"k": config.calibration.run_k, "n": config.calibration.run_n},
        "training_data_fingerprint": run.info.get("training_data", {}).get("fingerprint"),
        "training": {
            "run_dir": str(run.run_dir.resolve()),
            "checkpoint": Path(run.checkpoint).name,
            "global_step": run.info.get("global_step"),
            "epochs_done": run.info.get("epochs_done"),
        },
        "tfad_version": __version__,
        "created_utc": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def export_run(
    run_dir: str | Path,
    savedmodels_dir: str | Path = "savedmodels",
    version: int | None = None,
    allow_uncalibrated: bool = False,
    check: bool = True,
) -> Path:
    """Export the run's inference graph and manifest; returns the version folder.

    Args:
        version: the version number (default: next free one). An existing version is never overwritten.
        allow_uncalibrated: export without ``thresholds.json`` (manifest ``"thresholds": null``; the servers
            refuse to serve such a model, but it can be scored and calibrated later).
        check: reload the artefact in the temporary folder and compare its scores with the run's
            (:func:`check_export`) before publishing it; on a difference nothing is published.

    Raises:
        ExportError: uncalibrated run (without ``allow_uncalibrated``), existing version, or (with
            ``check``) an artefact whose scores differ from the run's.
    """
    run = load_run(run_dir)
    thresholds_path = run.run_dir / THRESHOLDS_FILE
    thresholds = calibration = acquisition_check = None
    if thresholds_path.is_file():
        saved = json.loads(thresholds_path.read_text())
        thresholds, calibration = saved["thresholds"], saved.get("calibration")
        try:  # absent in older runs; parsed so that a hand-edited block fails here, not on the line
            limits = AcquisitionCheck.from_manifest(saved.get("acquisition_check"))
        except ValueError as err:
            raise ExportError(f"{thresholds_path}: {err}") from None
        acquisition_check = None if limits is None else limits.to_manifest()
    elif not allow_uncalibrated:
        raise ExportError(
            f"{run.run_dir} is not calibrated (no {THRESHOLDS_FILE}): run `tfad calibrate` first, "
            "or pass --allow-uncalibrated to export a model the servers will refuse to serve"
        )

    model_dir = Path(savedmodels_dir) / run.name
    version = next_version(model_dir) if version is None else int(version)
    if version < 1:
        raise ExportError(f"version must be a positive integer, got {version}")
    target = model_dir / str(version)
    if target.exists():
        raise ExportError(f"{target} exists already; versions are immutable, export as a new version")
    tmp = model_dir / f".{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model_dir.mkdir(parents=True, exist_ok=True)

    try:
        model_family = family(run.config.model.family)
        if model_family.runtime == SAVEDMODEL_RUNTIME:
            _write_savedmodel(run, tmp)
        else:  # the family's own format (blob analysis: its parameters and reference image)
            model_family.save_exported(run.inference_model, tmp)
        manifest = build_manifest(run, version, thresholds, calibration, acquisition_check)
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        if check:  # verified where no server looks; published (atomic rename) only when it passes
            result = check_export(run, tmp)
            log.info("export check: %s", result.describe())
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
