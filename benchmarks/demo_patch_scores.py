"""Compare ResGANAD's patch scores on the demo's data with the demo's trained model (no training).

    make demo                                                    # once: trains demo_out/runs/vials-line-cpu
    .venv/bin/python benchmarks/demo_patch_scores.py             # then: every patch score, side by side

For each patch score of :data:`VARIANTS` the demo's finished ResGANAD run is copied (checkpoints only, no
thresholds) under ``<demo>/runs/<run>-<variant>``, its ``config.yaml`` given that score, then put through
the demo's own steps: ``tfad calibrate`` on the calib split (max-accuracy per region), ``tfad export``,
``tfad eval`` of the exported SavedModel on the test split. The demo's run itself is the reference (its
configured score; its eval report must exist). The table is the demo's closing comparison (image AUROC,
pixel AUROC, defective / good patches and products at the calibrated thresholds, k-of-n) of all of them,
also written to ``<demo>/patch_scores.md``. Finished steps are reused (``--fresh`` redoes them).

Below the table, where the map-max score looks on the test split (:func:`where_the_maximum_is`): for each
map, the median map-max of good and of defective patches, and in how many defective patches the window of
the maximum overlaps the defect's mask.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import yaml

#: Patch scores compared with the demo's run (name suffix -> resganad section). Filter 21, GRD-Net's and the
#: thesis's size, fixed before measuring.
VARIANTS = {
    "mapmax-ssim": {"patch_score": "map-max", "score_map": "ssim", "score_filter_size": 21},
    "mapmax-abs": {"patch_score": "map-max", "score_map": "abs-error", "score_filter_size": 21},
}


def _step(argv: list[str]) -> None:
    from tfad.cli import main

    print("$ tfad " + " ".join(argv), flush=True)
    if main(argv):
        raise SystemExit(f"failed: tfad {' '.join(argv)}")


def rescore(demo: Path, run_name: str, suffix: str, section: dict, fresh: bool) -> Path:
    """Copy the demo's run with the patch score ``section``, calibrate, export, evaluate; its eval folder."""
    name = f"{run_name}-{suffix}"
    run_dir, eval_dir = demo / "runs" / name, demo / "eval" / name
    if fresh:
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.rmtree(eval_dir, ignore_errors=True)
        shutil.rmtree(demo / "savedmodels" / name, ignore_errors=True)
    if (eval_dir / "report.json").is_file():
        return eval_dir
    if not run_dir.is_dir():
        shutil.copytree(
            demo / "runs" / run_name,
            run_dir,
            ignore=shutil.ignore_patterns("thresholds.json", "calibration", "eval"),
        )
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        config["name"] = name
        config.setdefault("resganad", {}).update(section)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    data = str(demo / "data")
    _step(["calibrate", str(run_dir), "--data", data, "--split", "calib", "--no-progress"])
    shutil.rmtree(demo / "savedmodels" / name, ignore_errors=True)  # one version per comparison
    _step(["export", str(run_dir), "--savedmodels", str(demo / "savedmodels")])
    _step(
        ["eval", str(demo / "savedmodels" / name), "--data", data, "--split", "test", "--out", str(eval_dir)]
        + ["--no-progress"]
    )
    return eval_dir


def where_the_maximum_is(demo: Path, run_name: str, filter_size: int = 21) -> str:
    """For each map-max map on the test split: median map-max of good and of defective patches, and the
    defective patches whose maximum's ``filter_size`` x ``filter_size`` window overlaps the defect mask."""
    import cv2
    import numpy as np
    import tensorflow as tf

    from tfad.data.decode import load_images
    from tfad.data.layouts import read_dataset
    from tfad.scoring.discriminative import mean_filter
    from tfad.scoring.reconstruction import abs_error_map, ssim_error_map
    from tfad.training.runs import load_run

    run = load_run(demo / "runs" / run_name)
    size = run.config.data.image_size
    records = read_dataset(str(demo / "data"), "test")
    maps = {"ssim": ssim_error_map, "abs-error": abs_error_map}
    peaks = {name: [] for name in maps}  # (map-max, (row, col) in image pixels) per patch
    for start in range(0, len(records), 60):
        x = tf.constant(load_images(records[start : start + 60], (size, size), 1).astype(np.float32) / 255.0)
        reconstruction = run.inference_model(x, training=False)
        for name, error_map in maps.items():
            filtered = mean_filter(error_map(x, reconstruction)[..., None], filter_size).numpy()[..., 0]
            offset = (size - filtered.shape[1]) // 2  # the SSIM map is the VALID region, 5 px in
            for one in filtered:
                row, col = np.unravel_index(np.argmax(one), one.shape)
                peaks[name].append((float(one[row, col]), (row + offset, col + offset)))
    defective = [i for i, r in enumerate(records) if r.label == 1]
    good = [i for i, r in enumerate(records) if r.label == 0]
    window = np.ones((filter_size, filter_size), np.uint8)
    counts = f"{len(good)} good, {len(defective)} defective"
    lines = [f"Where map-max (filter {filter_size}) looks, test split ({counts}):"]
    for name in maps:
        on_defect = 0
        for i in defective:
            mask = cv2.resize(cv2.imread(records[i].mask_path, cv2.IMREAD_GRAYSCALE), (size, size)) > 0
            reach = cv2.dilate(mask.astype(np.uint8), window) > 0  # windows that overlap the defect
            on_defect += bool(reach[peaks[name][i][1]])
        lines.append(
            f"  {name} map: median map-max good {np.median([peaks[name][i][0] for i in good]):.3f}, "
            f"defective {np.median([peaks[name][i][0] for i in defective]):.3f}; "
            f"maximum on the defect in {on_defect}/{len(defective)} defective patches"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--demo", type=Path, default=Path("demo_out"), help="the demo's output folder")
    parser.add_argument("--run", default="vials-line-cpu", help="the demo's ResGANAD run name")
    parser.add_argument("--fresh", action="store_true", help="redo the copies, calibrations and evals")
    args = parser.parse_args()
    from tfad.cli.demo import _comparison

    reference = args.demo / "eval" / args.run
    if not (reference / "report.json").is_file():
        raise SystemExit(f"no demo evaluation at {reference}: run `make demo` first")
    config = yaml.safe_load((args.demo / "runs" / args.run / "config.yaml").read_text())
    score = (config.get("resganad") or {}).get("patch_score", "ssim")
    results = [(f"{score} (the demo's)", None, None, reference)]
    for suffix, section in VARIANTS.items():
        label = f"{section['patch_score']} {section['score_map']} {section['score_filter_size']}"
        results.append((label, None, None, rescore(args.demo, args.run, suffix, section, args.fresh)))
    table = _comparison(results) + "\n\n" + where_the_maximum_is(args.demo, args.run)
    (args.demo / "patch_scores.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
