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
    table = _comparison(results)
    (args.demo / "patch_scores.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
