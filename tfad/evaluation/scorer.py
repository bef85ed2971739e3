"""Scoring images with a trained model: a run directory (Keras) or an exported SavedModel, one interface.

``tfad calibrate``, ``tfad eval`` and ``tfad predict`` all score through :class:`Scorer`, so an auditor can
evaluate the exact exported artefact the line serves, and an engineer the run before exporting it. Both
paths run the model family's score function (the SavedModel has it traced in its graph).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tfad.data.records import LABEL_GOOD, ImageRecord
from tfad.data.shift import Shift, apply_shift
from tfad.families import family, runtime_family
from tfad.rundir import (
    MANIFEST_FILE,
    SAVEDMODEL_RUNTIME,
    SCORE_PATHS_ATOL,
    SCORE_PATHS_RTOL,
    THRESHOLDS_FILE,
)
from tfad.scoring.acquisition import AcquisitionCheck, PatchGate
from tfad.scoring.table import ScoreTable, open_heatmap_store
from tfad.scoring.thresholds import ThresholdTable
from tfad.training.runs import TrainedRun, is_run_dir, load_run

log = logging.getLogger(__name__)


class ModelNotFoundError(FileNotFoundError):
    """A model path that is neither a run directory nor an exported SavedModel (the message says why)."""


def score_paths_agree(full: np.ndarray, score_only: np.ndarray) -> tuple[bool, float]:
    """Whether an export's score-only scores equal its full signature's, by the stated rule
    ``|full - score_only| <= SCORE_PATHS_ATOL + SCORE_PATHS_RTOL x |full|`` (tfad export checks it, and both
    servers at load); and the largest difference (inf for another shape)."""
    full, score_only = np.asarray(full, np.float64), np.asarray(score_only, np.float64)
    if full.shape != score_only.shape:
        return False, math.inf
    diff = np.abs(full - score_only)
    agree = bool(np.all(diff <= SCORE_PATHS_ATOL + SCORE_PATHS_RTOL * np.abs(full)))
    return agree, float(np.max(diff, initial=0.0))


@dataclass
class Scorer:
    """uint8 ``[N, H, W, C]`` images -> ``{"score": [N], "heatmap": [N, H, W]}`` numpy arrays."""

    name: str
    kind: str  # "run" | "savedmodel"
    path: Path
    image_size: int
    channels: int
    thresholds: ThresholdTable | None
    run_k: int = 7
    run_n: int = 10
    info: dict[str, Any] = field(default_factory=dict)  # run.json or manifest
    function: Callable[[Any], dict] | None = field(default=None, repr=False)
    # what the servers check before scoring (blank patches, the acquisition check), applied by tfad predict
    # and tfad eval to reproduce served verdicts
    gate: PatchGate = field(default_factory=PatchGate)

    def __call__(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Score a batch; ``images`` must already be ``[N, image_size, image_size, channels]`` uint8."""
        expected = (self.image_size, self.image_size, self.channels)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(
                f"expected uint8 images [N, {expected[0]}, {expected[1]}, {expected[2]}], got "
                f"{images.dtype} {list(images.shape)}"
            )
        outputs = self.function(images)
        return {
            "score": np.asarray(outputs["score"], np.float64),
            "heatmap": np.asarray(outputs["heatmap"], np.float32),
        }

    def scores_only(self, images: np.ndarray) -> np.ndarray | None:
        """The scores of an export's ``score_only`` signature (what the servers run when no heatmap is
        wanted), or None when the model has none (a run, an older export, a family's own format)."""
        scores_only = getattr(self.function, "scores_only", None)
        return None if scores_only is None else np.asarray(scores_only(images), np.float64)

    def describe(self) -> str:
        """One line naming what scores (for logs and reports)."""
        version = f" version {self.info['version']}" if self.kind == "savedmodel" else ""
        return f"{self.kind} {self.name}{version} ({self.path})"


def _run_scorer(path: Path) -> Scorer:
    return scorer_from_run(load_run(path))


def scorer_from_run(run: TrainedRun) -> Scorer:
    """A :class:`Scorer` of an already loaded run."""
    import tensorflow as tf

    path = run.run_dir
    size, channels = run.config.data.image_size, run.config.data.channels
    function = run.score_function()
    if family(run.config.model.family).tensorflow:
        function = tf.function(
            function, input_signature=[tf.TensorSpec([None, size, size, channels], tf.uint8)]
        )
    thresholds = acquisition_check = None
    if (path / THRESHOLDS_FILE).is_file():
        block = json.loads((path / THRESHOLDS_FILE).read_text())
        thresholds = ThresholdTable.from_manifest(block["thresholds"])
        try:
            acquisition_check = AcquisitionCheck.from_manifest(block.get("acquisition_check"))
        except ValueError as err:
            raise ValueError(f"{path / THRESHOLDS_FILE}: {err}") from None
    return Scorer(
        run.name,
        "run",
        path,
        size,
        channels,
        thresholds,
        run.config.calibration.run_k,
        run.config.calibration.run_n,
        {**run.info, "checkpoint": run.checkpoint},
        function,
        # as the run's export will be served: tfad export writes blank_patches "reject" and the check
        PatchGate(reject_blank_patches=True, acquisition_check=acquisition_check),
    )


def _export_scorer(path: Path) -> Scorer:
    manifest = json.loads((path / MANIFEST_FILE).read_text())
    try:
        size, width, channels = (int(manifest["input"][k]) for k in ("height", "width", "channels"))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelNotFoundError(
            2, f"manifest has no valid input block ({err})", str(path / MANIFEST_FILE)
        ) from err
    if size != width:
        raise ModelNotFoundError(2, "non-square model input is not supported", str(path / MANIFEST_FILE))
    loaded = None
    runtime = manifest.get("runtime", SAVEDMODEL_RUNTIME)
    if runtime != SAVEDMODEL_RUNTIME:  # a family's own export format (e.g. the blob analyzer's parameters)
        function = runtime_family(runtime).load_exported(path, size, channels)
    else:
        import tensorflow as tf

        from tfad.scoring.native import register_ops_for

        register_ops_for(path)  # the fused scoring kernels, if the export's graph uses them
        loaded = tf.saved_model.load(str(path))
        signature_name = (manifest.get("signature") or {}).get("name", "serving_default")
        signature = loaded.signatures[signature_name]
        input_name = (manifest.get("signature") or {}).get("input", "images")

        def function(images):
            return signature(**{input_name: tf.constant(images)})

        score_only_name = (manifest.get("signature") or {}).get("score_only")
        if score_only_name:
            score_only = loaded.signatures[score_only_name]
            function.scores_only = lambda images: score_only(**{input_name: tf.constant(images)})["score"]

    block = manifest.get("thresholds")
    thresholds = ThresholdTable.from_manifest(block) if block is not None else None
    try:
        acquisition_check = AcquisitionCheck.from_manifest(manifest.get("acquisition_check"))
    except ValueError as err:
        raise ModelNotFoundError(2, f"manifest: {err}", str(path / MANIFEST_FILE)) from err
    preprocessing = manifest.get("preprocessing") or {}
    acceptance = manifest.get("run_acceptance") or {}
    scorer = Scorer(
        manifest.get("name", path.parent.name),
        "savedmodel",
        path,
        size,
        channels,
        thresholds,
        int(acceptance.get("k", 7)),
        int(acceptance.get("n", 10)),
        manifest,
        function,
        PatchGate(preprocessing.get("blank_patches") == "reject", acquisition_check),
    )
    scorer._saved_model = loaded  # keep the loaded object (and its variables) alive
    return scorer


def load_scorer(path: str | Path) -> Scorer:
    """Open a model for scoring.

    ``path`` may be a ``tfad fit`` run directory, an exported version directory
    (``savedmodels/<name>/<version>``) or a model directory (``savedmodels/<name>``: its highest version).
    """
    path = Path(path)
    if not path.exists():
        raise ModelNotFoundError(2, "no such model path", str(path))
    if is_run_dir(path):
        return _run_scorer(path)
    if (path / MANIFEST_FILE).is_file():
        return _export_scorer(path)
    versions = (
        sorted((int(p.name), p) for p in path.iterdir() if p.name.isdigit() and (p / MANIFEST_FILE).is_file())
        if path.is_dir()
        else []
    )
    if versions:
        return _export_scorer(versions[-1][1])
    raise ModelNotFoundError(
        2,
        "neither a run directory (run.json) nor an exported model (tfad_manifest.json, "
        "or numbered version folders holding one)",
        str(path),
    )


class _MaskStore:
    """Ground-truth masks at model resolution; None for defective images that have no mask file."""

    def __init__(self, masks: np.ndarray, available: np.ndarray) -> None:
        self.masks, self.available = masks, available

    def __len__(self) -> int:
        return len(self.masks)

    def get(self, index: int) -> np.ndarray | None:
        return self.masks[index] if self.available[index] else None


def score_records(
    scorer: Scorer,
    records: Sequence[ImageRecord],
    scratch_dir: str | Path | None = None,
    batch_size: int = 32,
    on_corrupt: str = "skip",
    progress: bool = True,
    shift: Shift | None = None,
    shift_seed: int = 0,
) -> tuple[ScoreTable, dict[str, str]]:
    """Score every record; heatmaps and model-resolution masks are memory-mapped in ``scratch_dir``.

    ``shift`` (with ``shift_seed``) transforms each decoded image, and its mask, before scoring
    (:mod:`tfad.data.shift`, ``tfad eval --shift``); the draws are seeded by the record's index.

    Returns the score table (unreadable images left out) and ``{path: reason}`` of the images that could
    not be read (empty unless ``on_corrupt="skip"``; with ``"fail"`` the first one raises). Keep the table
    for a report, then :func:`save_table` it; ``scratch_dir`` can be deleted afterwards.
    """
    from tqdm import tqdm

    from tfad.data.decode import blank_images, pixel_statistics
    from tfad.data.pipeline import make_dataset

    records = list(records)
    n, size = len(records), scorer.image_size
    if scratch_dir is not None:
        scratch = Path(scratch_dir)
        scratch.mkdir(parents=True, exist_ok=True)
        heatmaps = open_heatmap_store(str(scratch / "heatmaps.npy"), n, size, size)
        masks = np.lib.format.open_memmap(
            str(scratch / "masks.npy"), mode="w+", dtype=np.uint8, shape=(n, size, size)
        )
    else:
        heatmaps = np.zeros((n, size, size), np.float32)
        masks = np.zeros((n, size, size), np.uint8)
    scores = np.full(n, np.nan)
    blanks = np.zeros(n, dtype=bool)
    pixel_means, pixel_stds = np.full(n, np.nan), np.full(n, np.nan)
    has_mask = np.asarray([r.mask_path is not None or r.label == LABEL_GOOD for r in records])
    dataset = make_dataset(
        records,
        (size, size),
        channels=scorer.channels,
        batch_size=batch_size,
        on_corrupt=on_corrupt,
        with_masks=True,
        name="score",
    )
    what = scorer.name if shift is None else f"{scorer.name} {shift.name}"
    bar = tqdm(total=n, desc=f"scoring {what}", unit="img", disable=not progress, dynamic_ncols=True)
    for batch in dataset:
        index = batch["index"].numpy()
        # make_dataset yields float32 = uint8/255; undo exactly to feed the uint8 serving contract
        images = np.round(batch["image"].numpy() * 255.0).astype(np.uint8)
        batch_masks = batch["mask"].numpy()[..., 0]
        if shift is not None:
            images, batch_masks = apply_shift(images, batch_masks, index, shift, shift_seed)
        result = scorer(images)
        scores[index] = result["score"]
        blanks[index] = blank_images(images)
        pixel_means[index], pixel_stds[index] = pixel_statistics(images)
        heatmaps[index] = result["heatmap"]
        masks[index] = batch_masks
        bar.update(len(index))
    bar.close()
    corrupt = dataset.corrupt_counter.reasons
    kept = ~np.isnan(scores)
    if not kept.any():
        raise ValueError(
            f"none of the {n} images could be scored (first unreadable: "
            f"{next(iter(corrupt.items()), ('?', '?'))})"
        )
    if isinstance(heatmaps, np.memmap):
        heatmaps.flush()
        masks.flush()
    table = ScoreTable.from_records(
        records,
        np.where(kept, scores, 0.0),
        heatmaps=heatmaps,
        masks=_MaskStore(masks, has_mask),
        blanks=blanks,
        pixel_means=pixel_means,
        pixel_stds=pixel_stds,
    )
    if corrupt:
        log.warning(
            "%d image(s) could not be read and were left out: %s", len(corrupt), ", ".join(list(corrupt)[:5])
        )
    return (table if kept.all() else table.subset(kept)), corrupt


def save_table(table: ScoreTable, out_dir: str | Path) -> None:
    """Write ``scores.csv``, ``heatmaps.npy`` and (when every defective image has one) ``masks.npy``."""
    import dataclasses

    if table.masks is not None and any(table.masks.get(i) is None for i in range(len(table))):
        table = dataclasses.replace(table, masks=None)  # mask_paths in scores.csv still name the files
    table.save(str(out_dir))


def records_from_paths(paths: Sequence[str | Path]) -> list[ImageRecord]:
    """Unlabelled records for loose image files or folders (recursively), for ``tfad predict``."""
    from tfad.data.layouts import is_image_file, parse_line_name

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(q for q in p.rglob("*") if q.is_file() and is_image_file(q.name))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(2, "no such image file or folder", str(p))
    records = []
    for f in files:
        try:  # line-layout names (f<frame>_v<vial>_<region>.png) carry their region
            frame, vial, region = parse_line_name(str(f))
        except ValueError:
            frame, vial, region = 0, 0, "all"
        records.append(
            ImageRecord(
                str(f),
                -1,
                "unknown",
                region=region,
                frame=frame,
                vial=vial,
                product_id=f.parent.name if region != "all" else "",
            )
        )
    return records


def nan_safe(value: float) -> float | None:
    """JSON-friendly float (None for NaN)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
