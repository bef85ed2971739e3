"""Train model presets on magnetic_tile within a fixed step budget and compare their accuracy.

    .venv/bin/python benchmarks/train_magnetic_tile.py                       # line-cpu vs line-cpu-wide
    .venv/bin/python benchmarks/train_magnetic_tile.py --presets line-cpu --steps 400
    .venv/bin/python benchmarks/train_magnetic_tile.py --presets line-cpu,grdnet:crae,grdnet:crae+roi

A preset is ``[family:]preset[+roi][@knob=value...]`` (family ``resganad`` when omitted), e.g.
``grdnet:crae``, ``classifier:mobilenetv3-small``, ``segmentation:unet``, ``blob:standard``,
``embedding:padim@feature_channels=0`` (``@`` sets an architecture knob, as ``model.overrides`` would),
the comparison baselines ``ganomaly:line`` and ``draem:line`` (docs/baselines.md), ``autoencoder:line``
(``--set autoencoder.variant=self-supervised`` trains the autoencoder's self-supervised variant).
AE-XAD (``aexad:line``) is few-shot supervised: run it with ``--labelled-share`` (0.05 moves 13 labelled
defects, 6 blowhole / 4 break / 3 crack, out of the evaluated set into ``train/``), and ``--learning-rate
5e-4`` (the seed's); without a share it learns from synthetic defects like the supervised families.
The supervised families (classifier, segmentation) cannot use magnetic_tile's labelled defects - they are
all in ``test/``, which is never trained on - so they learn from ``train/good`` with synthetic defects
(P_q, a share ``--synthetic-probability`` of the good images) as their defect class. The blob baseline
uses its documented default parameters (docs/blob.md), not tuned on the test set; its thresholds are
calibrated like every
model's. ``+roi`` trains and scores with a
region of interest: every image's central area without a border of ``--roi-border`` (a fraction of each
side; default 1/16, i.e. 16 px at 256x256, where the tiles' machined edges, glare and background slivers
are): per-image ROI masks for training (GRD-Net's case-2 focal loss learns no anomalies outside it) and
the same mask at model size as ``grdnet.inference_roi`` (the served map is A x ROI). The script reports
how many test defects lie entirely outside that ROI (they cannot be found with it).

Protocol (the same for every preset, in one run): train on ``train/good`` only (never on ``test/``) for
``--steps`` steps of batch ``--batch-size`` at 256x256 with the preset's defaults from tfad's config
(P_q, augmentation, loss weights), Adam at ``--learning-rate`` (ResGANAD: one cosine cycle over the
budget; GRD-Net: its plateau rule). Then
score the whole test split and report image AUROC, pixel AUROC, AUPRO (FPR <= 0.3) and F1-max on it. For
decisions, the test split is halved by a fixed seed (stratified by defect type): thresholds are calibrated
(max-accuracy) on one half and accuracy / true-accept / true-reject rates are measured on the other.
Results go to ``--out`` (one run directory and eval report per preset) and a table to stdout and
``results.md``; the training wall time is stated beside each row (the machine is shared: compare rows of
one run).

Patch scores: ResGANAD and GRD-Net are scored with every patch score of :data:`SCORE_VARIANTS` (the same
trained model, no second training; ``--no-score-variants`` keeps only the configured one): one row each,
e.g. ``line-cpu (ssim)`` and ``line-cpu (map-max, ssim map, filter 21)``, each with its own thresholds
calibrated on the same half. The pixel metrics come from the heatmaps, which no patch score changes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
from pathlib import Path

import numpy as np
import yaml

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile"

#: The patch scores each family is evaluated with (label, config section, keys; tfad.scoring.reconstruction).
#: The filter size is the thesis's 21 (GRD-Net's default), fixed before measuring, not tuned on the test set.
SCORE_VARIANTS = {
    "resganad": [
        ("ssim", "resganad", {"patch_score": "ssim"}),
        ("map-max, ssim map, filter 21", "resganad", {"patch_score": "map-max", "score_map": "ssim",
                                                      "score_filter_size": 21}),
        ("map-max, abs-error map, filter 21", "resganad", {"patch_score": "map-max", "score_map": "abs-error",
                                                           "score_filter_size": 21}),
    ],
    "supersimplenet": [
        ("classification head", "supersimplenet", {"score": "classification"}),
        ("map-max", "supersimplenet", {"score": "map-max"}),
    ],
    "autoencoder": [  # seed 004's alpha (0.1, the default) and both of its terms alone
        ("alpha 0.1", "autoencoder", {"score_alpha": 0.1}),
        ("alpha 1: MSE", "autoencoder", {"score_alpha": 1.0}),
        ("alpha 0: 1-SSIM", "autoencoder", {"score_alpha": 0.0}),
    ],
    "aexad": [
        ("filtered-error max", "aexad", {"score": "max"}),
        ("filtered-error mean", "aexad", {"score": "mean"}),
        ("mean+std binarised area", "aexad", {"score": "area"}),
    ],
    "grdnet": [
        ("map-max, filter 21", "grdnet", {"patch_score": "map-max", "score_filter_size": 21}),
        ("ssim", "grdnet", {"patch_score": "ssim"}),  # not with an inference ROI (a config error)
    ],
}  # fmt: skip


def roi_dataset(data: Path, out: Path, border: float) -> tuple[Path, Path, int]:
    """A mirror of ``data`` (symlinks) with a per-image ROI for every train/good image: the image without a
    ``border`` fraction on each side. Returns (mirror root, the model-size ROI file, the number of test
    defects whose mask lies entirely outside the ROI)."""
    import cv2

    from tfad.data.layouts import read_dataset

    def border_roi(height: int, width: int) -> np.ndarray:
        roi = np.zeros((height, width), np.uint8)
        dy, dx = round(border * height), round(border * width)
        roi[dy : height - dy, dx : width - dx] = 255
        return roi

    mirror = out / "magnetic_tile_roi"
    for name in ("train", "test", "ground_truth"):
        link = mirror / name
        if not link.exists():
            mirror.mkdir(parents=True, exist_ok=True)
            link.symlink_to((data / name).resolve(), target_is_directory=True)
    roi_dir = mirror / "roi" / "train" / "good"
    roi_dir.mkdir(parents=True, exist_ok=True)
    for record in read_dataset(str(data), "train", "mvtec"):
        image = cv2.imread(record.path, cv2.IMREAD_GRAYSCALE)
        if image is None:
            continue  # the training pipeline counts it as corrupt
        cv2.imwrite(str(roi_dir / (Path(record.path).stem + ".png")), border_roi(*image.shape[:2]))
    model_roi = out / "roi_256.png"
    cv2.imwrite(str(model_roi), border_roi(256, 256))
    outside = 0
    for record in read_dataset(str(data), "test", "mvtec"):
        if record.mask_path:
            mask = cv2.imread(record.mask_path, cv2.IMREAD_GRAYSCALE)
            outside += int(not (mask[border_roi(*mask.shape[:2]) > 0] > 0).any())
    return mirror, model_roi, outside


def contaminated_dataset(data: Path, out: Path, share: float, seed: int) -> tuple[Path, int, float]:
    """A mirror of ``data`` (symlinks) whose train/good also holds ``share`` x |train/good| defective test
    images (seeded, stratified by nothing: a uniform draw), which leave the mirror's test split (seed 002's
    contamination study). Returns (mirror root, images moved, their mean anomalous-pixel fraction)."""
    import cv2

    from tfad.data.layouts import read_dataset
    from tfad.data.records import LABEL_DEFECTIVE

    train = read_dataset(str(data), "train", "mvtec")
    defects = [r for r in read_dataset(str(data), "test", "mvtec") if r.label == LABEL_DEFECTIVE]
    count = min(len(defects), round(share * len(train)))
    rng = np.random.default_rng(seed)
    moved = {defects[i].path for i in rng.choice(len(defects), count, replace=False)}
    mirror = out / f"magnetic_tile_contaminated_{round(100 * share)}"
    if mirror.exists():
        import shutil

        shutil.rmtree(mirror)
    fractions = []
    for split in ("train", "test"):
        for record in read_dataset(str(data), split, "mvtec"):
            source = Path(record.path)
            if record.path in moved:  # a defect presented as good training data
                target = mirror / "train" / "good" / f"contaminated_{source.parent.name}_{source.name}"
                mask = cv2.imread(record.mask_path, cv2.IMREAD_GRAYSCALE) if record.mask_path else None
                fractions.append(float((mask > 0).mean()) if mask is not None else 0.0)
            else:
                target = mirror / split / source.parent.name / source.name
                if record.mask_path:
                    mask_target = mirror / "ground_truth" / source.parent.name / Path(record.mask_path).name
                    mask_target.parent.mkdir(parents=True, exist_ok=True)
                    mask_target.symlink_to(Path(record.mask_path).resolve())
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve())
    return mirror, count, float(np.mean(fractions)) if fractions else 0.0


def labelled_dataset(data: Path, out: Path, share: float, seed: int) -> tuple[Path, int]:
    """A mirror of ``data`` (symlinks) whose ``train/<defect type>/`` folders hold a seeded ``share`` of each
    defect type's test images (with their masks), which leave the mirror's test split: the few labelled
    defects a line has, for the supervised regimes. Returns (mirror root, images moved)."""
    from tfad.data.layouts import read_dataset
    from tfad.data.records import LABEL_DEFECTIVE

    test = read_dataset(str(data), "test", "mvtec")
    rng = np.random.default_rng(seed)
    moved: set[str] = set()
    for defect in sorted({r.defect_type for r in test if r.label == LABEL_DEFECTIVE}):
        paths = sorted(r.path for r in test if r.label == LABEL_DEFECTIVE and r.defect_type == defect)
        count = round(share * len(paths))
        moved.update(paths[i] for i in rng.choice(len(paths), count, replace=False))
    mirror = out / f"magnetic_tile_labelled_{round(100 * share)}"
    if mirror.exists():
        import shutil

        shutil.rmtree(mirror)
    for split in ("train", "test"):
        for record in read_dataset(str(data), split, "mvtec"):
            source = Path(record.path)
            target_split = "train" if record.path in moved else split
            target = mirror / target_split / source.parent.name / source.name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source.resolve())
            if record.mask_path:
                mask_target = mirror / "ground_truth" / source.parent.name / Path(record.mask_path).name
                mask_target.parent.mkdir(parents=True, exist_ok=True)
                if not mask_target.exists():
                    mask_target.symlink_to(Path(record.mask_path).resolve())
    return mirror, len(moved)


def run_preset(spec: str, args: argparse.Namespace, contamination: float = 0.0) -> list[dict]:
    """Train (or reuse) ``spec`` and evaluate it: one row per patch score (:data:`SCORE_VARIANTS`)."""
    from tfad.config import from_dict, validate
    from tfad.data.layouts import read_dataset
    from tfad.evaluation.scorer import load_scorer, scorer_from_run
    from tfad.training.fit import fit
    from tfad.training.runs import load_run

    spec_preset, *knobs = spec.split("@")
    knobs = [k for k in knobs if not k.startswith("contamination=")]
    family_name, _, preset = spec_preset.rpartition(":")
    family_name = family_name or "resganad"
    preset, _, roi_flag = preset.partition("+")
    overrides = {}
    for knob in knobs:  # "@key=value": an architecture override (model.overrides), YAML-typed
        key, _, value = knob.partition("=")
        overrides[key] = yaml.safe_load(value)
    if roi_flag not in ("", "roi"):
        raise SystemExit(f"preset {spec!r}: the only suffix is '+roi'")
    data_root, extra, defects_outside_roi = args.data, {}, None
    moved, moved_pixels = 0, None
    if contamination:
        data_root, moved, moved_pixels = contaminated_dataset(args.data, args.out, contamination, args.seed)
        spec = f"{spec}@contamination={contamination:g}"
    if args.labelled_share:
        data_root, moved = labelled_dataset(args.data, args.out, args.labelled_share, args.seed)
        spec = f"{spec}@labelled={args.labelled_share:g}"
    if roi_flag:
        if family_name != "grdnet":
            raise SystemExit(f"preset {spec!r}: '+roi' needs the grdnet family (ResGANAD has no ROI)")
        data_root, model_roi, defects_outside_roi = roi_dataset(args.data, args.out, args.roi_border)
        extra = {"grdnet": {"inference_roi": str(model_roi)}}
    if family_name in ("classifier", "segmentation") or (family_name == "aexad" and not args.labelled_share):
        # magnetic_tile's labelled defects are all in test/, which is never trained on: the supervised
        # families learn from train/good with synthetic defects (P_q) as their defect class (AE-XAD too when
        # --labelled-share gives it no labelled defects)
        extra = {"supervised": {"synthetic_probability": args.synthetic_probability}}
    for assignment in args.set:  # "--set section.key=value": a config key (YAML-typed), e.g. noise_sigma
        dotted, _, value = assignment.partition("=")
        section, _, key = dotted.partition(".")
        if not key:
            raise SystemExit(f"--set {assignment!r}: expected section.key=value")
        extra.setdefault(section, {})[key] = yaml.safe_load(value)
    name_suffix = "".join(f"@{a.partition('.')[2]}" for a in args.set)
    epochs = 4
    config = from_dict(
        {
            "name": "mt-"
            + (spec + name_suffix)
            .replace(":", "-")
            .replace("+", "-")
            .replace("@", "-")
            .replace("=", "")
            .replace(",", "_")
            .replace(".", "p"),
            "output_dir": str(args.out),
            "model": {"family": family_name, "preset": preset, "overrides": overrides},
            "data": {
                "root": str(data_root),
                "layout": "mvtec",
                "image_size": 256,
                "channels": 1,
                "validation_fraction": 0.05,
            },
            "training": {
                "epochs": epochs,
                "batch_size": args.batch_size,
                "steps_per_epoch": max(1, args.steps // epochs),
                "learning_rate": args.learning_rate,
                "restart_epochs": float(epochs),
                "checkpoint_every_steps": 100,
                "validation_steps": 2,
                "seed": args.seed,
            },
            **extra,
        }
    )
    run_dir = config.run_dir
    if (run_dir / "run.json").is_file() and json.loads((run_dir / "run.json").read_text())[
        "status"
    ] == "finished":
        result = None  # trained by an earlier invocation: reuse it
    else:
        result = fit(config, resume=(run_dir / "checkpoints").is_dir(), progress=not args.no_progress)
    info = json.loads((run_dir / "run.json").read_text())
    steps = info["global_step"]
    # Wall time from the per-epoch history, so a run resumed after an interruption reports its whole
    # training time (an epoch split across sessions counts only the steps of the session that finished it,
    # scaled to the full epoch). The blob baseline is fitted, not trained: its fit time.
    if steps:
        seconds_per_step = [h["seconds"] / h["steps_this_session"] for h in info["history"]]
        train_seconds = float(np.median(seconds_per_step)) * steps
    else:
        train_seconds = sum(h["seconds"] for h in info["history"])
    del result

    base = {
        "preset": spec + name_suffix.replace("@", " @"),
        "contamination": contamination,
        "defects_moved_to_train": moved,
        "moved_anomalous_pixel_fraction": moved_pixels,
        "defects_outside_roi": defects_outside_roi,
        "gflops_per_patch": info["inference_gflops_per_patch"],
        "params_inference": (info.get("parameters") or {}).get("inference"),
        "steps": steps,
        "batch_size": args.batch_size,
        "train_minutes": train_seconds / 60,
    }
    test = read_dataset(str(data_root), "test", "mvtec")
    variants = [] if args.no_score_variants else SCORE_VARIANTS.get(family_name, [])
    if roi_flag:  # 1-SSIM scores the whole patch: it cannot honour the inference ROI
        variants = [v for v in variants if v[2].get("patch_score") != "ssim"]
    if not variants:
        return [{**base, **evaluate(load_scorer(run_dir), test, run_dir, "", args)}]
    run = load_run(run_dir)  # the trained weights, loaded once and scored with each patch score
    rows = []
    for label, section, keys in variants:
        config = validate(
            dataclasses.replace(
                run.config, **{section: dataclasses.replace(getattr(run.config, section), **keys)}
            )
        )
        scorer = scorer_from_run(dataclasses.replace(run, config=config))
        slug = "_" + label.replace(", ", "_").replace(" ", "-")
        rows.append(
            {
                **base,
                "preset": f"{spec}{name_suffix.replace('@', ' @')} ({label})",
                **evaluate(scorer, test, run_dir, slug, args),
            }
        )
    return rows


def evaluate(scorer, test: list, run_dir: Path, slug: str, args: argparse.Namespace) -> dict:
    """Score the test split with ``scorer`` and report its metrics (outputs under ``run_dir``, ``slug``
    appended to their folder names): thresholds calibrated on a stratified half, decisions on the other."""
    from tfad.data.records import LABEL_GOOD
    from tfad.evaluation.report import write_report
    from tfad.evaluation.scorer import score_records
    from tfad.scoring.metrics import f1_max, image_auroc
    from tfad.scoring.thresholds import calibrate_table

    table, corrupt = score_records(
        scorer, test, run_dir / f"bench_scratch{slug}", batch_size=32, progress=not args.no_progress
    )
    rng = np.random.default_rng(args.seed)
    calib = np.zeros(len(table), bool)
    for defect in sorted(set(table.defect_types.tolist())):  # stratified halves
        rows = np.flatnonzero(table.defect_types == defect)
        calib[rng.permutation(rows)[: len(rows) // 2]] = True
    thresholds = calibrate_table(table.subset(calib), "max-accuracy", default="pooled")
    report = write_report(table.subset(~calib), thresholds, str(run_dir / f"bench_eval{slug}"), k=1, n=1)
    full_pixel = write_report(
        table, thresholds, str(run_dir / f"bench_eval_full{slug}"), k=1, n=1, plots=False
    )
    shift_rows = None
    if args.shift:  # the same thresholds; every test image (threshold-free metrics over the whole split)
        from tfad.data.shift import parse_shifts
        from tfad.evaluation.shift import evaluate_shifts

        shift_rows = evaluate_shifts(
            scorer,
            test,
            thresholds,
            parse_shifts(args.shift, args.shift_strengths),
            run_dir / f"bench_shift_scratch{slug}",
            seed=args.seed,
            progress=not args.no_progress,
            baseline=full_pixel,
        )
    decisions = report["at_thresholds"]["patch"]
    f1, _ = f1_max(table.labels, table.scores)
    good = table.labels == LABEL_GOOD
    by_defect = {}
    for defect in sorted(set(table.defect_types[~good].tolist())):
        rows = good | (table.defect_types == defect)
        by_defect[defect] = image_auroc(table.labels[rows], table.scores[rows])
    return {
        "image_auroc": image_auroc(table.labels, table.scores),
        "pixel_auroc": full_pixel["pixel_level"]["pixel_auroc"],
        "aupro_0.3": full_pixel["pixel_level"]["aupro"],
        "f1_max": f1,
        "auroc_by_defect": " ".join(f"{k} {v:.3f}" for k, v in by_defect.items()),
        "heldout_accuracy": decisions.get("accuracy"),
        "heldout_true_accept_rate": decisions.get("true_accept_rate"),
        "heldout_true_reject_rate": decisions.get("true_reject_rate"),
        "heldout_defective_rejected": f"{decisions.get('true_reject')}/{decisions.get('n_defective')}",
        "heldout_good_accepted": f"{decisions.get('true_accept')}/{decisions.get('n_good')}",
        "test_images": len(table),
        "unreadable": len(corrupt),
        **({"shift": shift_rows} if shift_rows is not None else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT, help="magnetic_tile in the MVTec layout")
    parser.add_argument("--presets", default="line-cpu,line-cpu-wide")
    parser.add_argument(
        "--preset", action="append", default=[], help="one more preset (its knobs may hold commas)"
    )
    parser.add_argument("--steps", type=int, default=800, help="training steps per preset (the budget)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--roi-border", type=float, default=1 / 16, help="'+roi': border fraction per side")
    parser.add_argument(
        "--synthetic-probability",
        type=float,
        default=0.5,
        help="classifier/segmentation (and AE-XAD without --labelled-share): share of good training images "
        "made synthetic defects",
    )
    parser.add_argument(
        "--contamination",
        default="",
        help="comma-separated shares p of |train| (e.g. 0.05,0.1,0.2): each preset is also fitted with p x "
        "|train| defective test images moved into train/good (seeded) and out of the evaluated set",
    )
    parser.add_argument(
        "--no-score-variants",
        action="store_true",
        help="score ResGANAD / GRD-Net with their configured patch score only (default: every SCORE_VARIANTS "
        "entry, one row each, from the same trained model)",
    )
    parser.add_argument(
        "--labelled-share", type=float, default=0.0,
        help="move this seeded share of each defect type's test images (with masks) into train/<type>/ "
        "as labelled defects (they leave the evaluated set), for the supervised regimes",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="a config key for every preset of the run (repeatable), e.g. supersimplenet.noise_sigma=0.3",
    )  # fmt: skip
    parser.add_argument(
        "--shift", metavar="KINDS",
        help="also score the test split under domain shift (affine, scale, brightness, noise or all; seeded "
        "by --seed) with the same thresholds: shift.md, shift_auroc.png (tfad.data.shift)",
    )  # fmt: skip
    parser.add_argument("--shift-strengths", default="0.25,0.5,1", help="strengths of --shift in [0, 1]")
    parser.add_argument(
        "--merge", metavar="DIRS",
        help="train nothing: merge the results.json of these comma-separated --out folders of earlier "
        "runs into --out (results.md, results.json, and shift.md / shift_auroc.png for the rows scored "
        "with --shift)",
    )  # fmt: skip
    parser.add_argument(
        "--only", metavar="REGEX",
        help="with --merge: keep the models whose name matches this regular expression (re.search), e.g. "
        "one patch score per family for a readable plot",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("bench_out/magnetic_tile"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.data.is_dir():
        raise SystemExit(f"magnetic_tile not found at {args.data} (pass --data)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        rows = merged_rows([Path(d.strip()) for d in args.merge.split(",") if d.strip()], args.only)
    else:
        specs = [p.strip() for p in args.presets.split(",") if p.strip()] if not args.preset else []
        shares = [0.0] + [float(p) for p in args.contamination.split(",") if p.strip()]
        rows = [
            row for spec in specs + args.preset for share in shares for row in run_preset(spec, args, share)
        ]
    (args.out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")

    def fmt(v) -> str:
        return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    columns = [
        "preset",
        "defects_moved_to_train",
        "defects_outside_roi",
        "gflops_per_patch",
        "steps",
        "train_minutes",
        "image_auroc",
        "pixel_auroc",
        "aupro_0.3",
        "f1_max",
        "auroc_by_defect",
        "heldout_accuracy",
        "heldout_true_accept_rate",
        "heldout_true_reject_rate",
        "heldout_defective_rejected",
        "heldout_good_accepted",
    ]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r[c]) for c in columns) + " |" for r in rows]
    table = "\n".join(lines)
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    if args.shift or (args.merge and any(r.get("shift") for r in rows)):
        write_shift_table(rows, args.out)


def merged_rows(folders: list[Path], only: str | None = None) -> list[dict]:
    """The rows of earlier runs' results.json, in the order given, optionally only the models whose name
    matches ``only``; a missing file, a model named twice or no model left is an error (the tables are keyed
    by model)."""
    rows: list[dict] = []
    for folder in folders:
        path = folder / "results.json"
        if not path.is_file():
            raise SystemExit(f"--merge: {path} not found (run the benchmark with --out {folder} first)")
        rows += json.loads(path.read_text())
    if only:
        try:
            pattern = re.compile(only)
        except re.error as err:
            raise SystemExit(f"--only {only!r}: not a regular expression ({err})") from None
        rows = [r for r in rows if pattern.search(r["preset"])]
        if not rows:
            raise SystemExit(f"--only {only!r}: no model of the merged folders matches")
    names = [r["preset"] for r in rows]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SystemExit(f"--merge: these models appear in more than one folder: {', '.join(twice)}")
    return rows


def write_shift_table(rows: list[dict], out: Path) -> None:
    """shift.md (image / pixel AUROC per preset and shift condition, drop in brackets) and shift_auroc.png."""
    from tfad.evaluation.plots import plot_shift_curves

    results = {r["preset"]: r["shift"] for r in rows if r.get("shift")}
    if not results:
        raise SystemExit("no row was scored under shift (run with --shift)")
    conditions = [(r["kind"], r["strength"]) for r in next(iter(results.values())) if r["kind"] != "none"]

    def cell(row: dict, metric: str) -> str:
        value, drop = row.get(metric), row.get(f"{metric}_drop")
        return "n/a" if value is None else f"{value:.3f}" + ("" if drop is None else f" ({-drop:+.3f})")

    lines = []
    for metric in ("image_auroc", "pixel_auroc"):
        header = ["model", "none", *(f"{kind} {strength:g}" for kind, strength in conditions)]
        lines += [f"**{metric}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for preset, shift_rows in results.items():
            by_condition = {(r["kind"], r["strength"]): r for r in shift_rows}
            cells = [cell(by_condition["none", 0.0], metric)]
            cells += [cell(by_condition[c], metric) if c in by_condition else "-" for c in conditions]
            lines.append("| " + " | ".join([preset, *cells]) + " |")
        lines.append("")
    header = ["model", "none", *(f"{kind} {strength:g}" for kind, strength in conditions)]
    lines += [
        "**true-accept / true-reject rate at the thresholds calibrated on unshifted images "
        "(all test images)**",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for preset, shift_rows in results.items():
        by_condition = {(r["kind"], r["strength"]): r for r in shift_rows}
        rates = [
            f"{r['true_accept_rate']:.2f} / {r['true_reject_rate']:.2f}" if r else "-"
            for r in [by_condition["none", 0.0], *(by_condition.get(c) for c in conditions)]
        ]
        lines.append("| " + " | ".join([preset, *rates]) + " |")
    lines.append("")
    text = "\n".join(lines)
    (out / "shift.md").write_text(text)
    plot_shift_curves(results, str(out / "shift_auroc.png"))
    print(text)
    print(f"wrote {out / 'shift.md'} and {out / 'shift_auroc.png'}")


if __name__ == "__main__":
    main()
