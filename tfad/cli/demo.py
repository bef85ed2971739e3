"""``tfad demo``: the whole workflow on the embedded synthetic vial line, two models side by side.

Each step runs the real ``tfad`` command (printed before it runs, so the demo doubles as a tutorial):
generate data, then for each model fit -> calibrate per-region thresholds -> export a SavedModel ->
evaluate the exported model; last, the two models' per-patch, per-product and per-run results side by
side. The first model is the embedding family's ``line`` preset (pretrained features, fitted in one pass),
the second line-cpu ResGANAD trained for 750 steps.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tfad demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole workflow on generated vial-line data (make demo)",
        description="Generate the synthetic vial line; fit the embedding line preset and train line-cpu "
        "ResGANAD briefly; calibrate, export and evaluate both exported models. Everything goes under OUT.",
    )
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--products", type=int, default=16, help="training products (default 16)")
    parser.add_argument(
        "--eval-products", type=int, default=10, help="calib and test products each (default 10)"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="acquisitions (runs) of every product (default 3)"
    )
    parser.add_argument("--epochs", type=int, help="override training.epochs of the ResGANAD demo config")
    parser.add_argument("--steps-per-epoch", type=int, help="override training.steps_per_epoch")
    parser.add_argument(
        "--fresh", action="store_true", help="delete OUT first (default: reuse finished steps)"
    )
    parser.set_defaults(func=_demo)


def _step(title: str, argv: list[str]) -> None:
    import shlex
    import time

    from tfad.cli import CLIError, main

    print(f"\n=== {title}\n$ tfad {shlex.join(argv)}", flush=True)
    started = time.perf_counter()
    code = main(argv)
    if code:
        raise CLIError(f"demo step failed ({title}, exit code {code})")
    print(f"--- {title}: {time.perf_counter() - started:.0f} s", flush=True)


# The demo's models, in the order a new user reads them: the pretrained-feature model that detects the
# defects first, then the thesis's line model (ResGANAD) trained briefly on the CPU.
DEMO_CONFIGS = (
    ("demo_embedding.yaml", "embedding line preset (PaDiM on pretrained features, fitted in one pass)"),
    ("demo.yaml", "line-cpu ResGANAD (GAN trained on good patches + synthetic anomalies P_q)"),
)


def _demo(args: argparse.Namespace) -> int:
    import shutil
    import time
    from pathlib import Path

    started = time.perf_counter()
    out = Path(args.out)
    if args.fresh:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    savedmodels = out / "savedmodels"
    steps = 1 + 4 * len(DEMO_CONFIGS)
    if not (data / "layout.yaml").is_file():
        _step(
            f"1/{steps} generate the synthetic vial line (train: good products; calib/test: with defects)",
            [
                "datasets",
                "synth-vials",
                str(data),
                "--products",
                str(args.products),
                "--eval-products",
                str(args.eval_products),
                "--runs",
                str(args.runs),
                "--defect-rate",
                "0.5",
                "--overwrite",
                "--contact-sheet",
                str(out / "test_contact_sheet.png"),
            ],
        )
    else:
        print(f"\n=== 1/{steps} data: reusing {data} (--fresh regenerates)")
    results = []
    for index, (config_file, title) in enumerate(DEMO_CONFIGS):
        first = 2 + 4 * index
        results.append(_fit_calibrate_export_eval(args, out, config_file, title, first, steps))
    print(f"\nDemo finished in {(time.perf_counter() - started) / 60:.1f} min.")
    print(_comparison(results))
    print("Look at:")
    print(f"  {out / 'test_contact_sheet.png'}  - the test products (defects outlined)")
    for name, _, run_dir, eval_dir in results:
        print(f"  {eval_dir / 'summary.txt'}  - {name}: test metrics per region / product / run")
        print(f"  {eval_dir / 'plots'}  - {name}: ROC, score histograms, heatmap examples, pixel ROC/PRO")
        print(f"  {run_dir / 'calibration'}  - {name}: calibration histograms and region thresholds")
    print(f"  {savedmodels}  - the exported SavedModels + tfad_manifest.json")
    print(f"Serve them: tfad serve --models-root {savedmodels}   (or the C++ server, README 'Serving')")
    return 0


def _fit_calibrate_export_eval(
    args: argparse.Namespace, out, config_file: str, title: str, first: int, steps: int
) -> tuple:
    """Fit (or reuse), calibrate, export and evaluate one demo config; (name, title, run dir, eval dir)."""
    import json
    from importlib import resources

    import yaml

    data = out / "data"
    config = yaml.safe_load(resources.files("tfad.configs").joinpath(config_file).read_text())
    config["data"]["root"] = str(data)
    config["output_dir"] = str(out / "runs")
    if "training" in config and args.epochs:
        config["training"]["epochs"] = args.epochs
    if "training" in config and args.steps_per_epoch:
        config["training"]["steps_per_epoch"] = args.steps_per_epoch
    name = config["name"]
    config_path = out / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_dir = out / "runs" / name
    savedmodels = out / "savedmodels"
    eval_dir = out / "eval" / name
    run_info = run_dir / "run.json"
    status = json.loads(run_info.read_text()).get("status") if run_info.is_file() else None
    if status != "finished":
        resume = ["--resume"] if status and "training" in config else []
        _step(f"{first}/{steps} fit the {title}", ["fit", str(config_path), *resume])
    else:
        print(f"\n=== {first}/{steps} fit: reusing the finished run {run_dir}")
    _step(
        f"{first + 1}/{steps} calibrate one threshold per region on the labelled calib split ({name})",
        ["calibrate", str(run_dir), "--data", str(data), "--split", "calib"],
    )
    _step(
        f"{first + 2}/{steps} export the calibrated model as a SavedModel for the line servers ({name})",
        ["export", str(run_dir), "--savedmodels", str(savedmodels)],
    )
    _step(
        f"{first + 3}/{steps} evaluate the exported SavedModel on the test split ({name})",
        ["eval", str(savedmodels / name), "--data", str(data), "--split", "test", "--out", str(eval_dir)],
    )
    return name, title, run_dir, eval_dir


def _comparison(results: list[tuple]) -> str:
    """The demo's models side by side on the test split (from each eval's report.json)."""
    import json

    def rate(conf: dict, hit: str, total: str) -> str:
        return f"{conf[hit]}/{conf[total]}"

    rows = [
        ("", *[name for name, *_ in results]),
        ("image AUROC (patch scores)",),
        ("pixel AUROC (heatmaps)",),
        ("defective patches rejected",),
        ("good patches accepted",),
        ("defective products rejected",),
        ("good products accepted",),
        ("products right in k of n runs",),
    ]
    columns = [list(rows[0])]
    for *_, eval_dir in results:
        report = json.loads((eval_dir / "report.json").read_text())
        patch, product = report["at_thresholds"]["patch"], report["at_thresholds"]["product"]
        acceptance = (report["at_thresholds"]["run_acceptance"] or {}).get("summary") or {}
        auroc = report["image_level"].get("auroc")
        pixel = report["pixel_level"].get("pixel_auroc")
        columns.append(
            [
                "n/a" if auroc is None else f"{auroc:.3f}",
                "n/a" if pixel is None else f"{pixel:.3f}",
                rate(patch, "true_reject", "n_defective"),
                rate(patch, "true_accept", "n_good"),
                rate(product, "true_reject", "n_defective"),
                rate(product, "true_accept", "n_good"),
                f"{acceptance.get('correctly_classified', 'n/a')}/{acceptance.get('n_products', 'n/a')}",
            ]
        )
    labels = [row[0] for row in rows]
    width = max(len(label) for label in labels)
    lines = ["Test split, at the calibrated thresholds:"]
    header = "  " + " " * width + "".join(f"  {name:>22}" for name in columns[0][1:])
    lines.append(header)
    for i, label in enumerate(labels[1:]):
        lines.append("  " + label.ljust(width) + "".join(f"  {col[i]:>22}" for col in columns[1:]))
    return "\n".join(lines)
