"""``tfad demo``: the whole workflow on the embedded synthetic vial line, in about 5 minutes on 2 cores.

Each step runs the real ``tfad`` command (printed before it runs, so the demo doubles as a tutorial):
generate data -> fit line-cpu -> calibrate per-region thresholds -> export a SavedModel -> evaluate the
exported model -> per-product and per-run results.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tfad demo``."""
    parser = subparsers.add_parser(
        "demo",
        help="run the whole workflow on generated vial-line data (make demo)",
        description="Generate the synthetic vial line, train line-cpu ResGANAD briefly, calibrate, export, "
        "evaluate the exported model. Everything goes under OUT.",
    )
    parser.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    parser.add_argument("--products", type=int, default=16, help="training products (default 16)")
    parser.add_argument(
        "--eval-products", type=int, default=10, help="calib and test products each (default 10)"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="acquisitions (runs) of every product (default 3)"
    )
    parser.add_argument("--epochs", type=int, help="override training.epochs of the demo config")
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


def _demo(args: argparse.Namespace) -> int:
    import json
    import shutil
    import time
    from importlib import resources
    from pathlib import Path

    import yaml

    started = time.perf_counter()
    out = Path(args.out)
    if args.fresh:
        shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    data = out / "data"
    config = yaml.safe_load(resources.files("tfad.configs").joinpath("demo.yaml").read_text())
    config["data"]["root"] = str(data)
    config["output_dir"] = str(out / "runs")
    if args.epochs:
        config["training"]["epochs"] = args.epochs
    if args.steps_per_epoch:
        config["training"]["steps_per_epoch"] = args.steps_per_epoch
    config_path = out / "config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    run_dir = out / "runs" / config["name"]
    savedmodels = out / "savedmodels"

    if not (data / "layout.yaml").is_file():
        _step(
            "1/5 generate the synthetic vial line (train: good products; calib/test: with defects)",
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
        print(f"\n=== 1/5 data: reusing {data} (--fresh regenerates)")
    run_info = run_dir / "run.json"
    status = json.loads(run_info.read_text()).get("status") if run_info.is_file() else None
    if status != "finished":
        _step(
            "2/5 train line-cpu ResGANAD on good patches with synthetic anomalies P_q",
            ["fit", str(config_path)] + (["--resume"] if status else []),
        )
    else:
        print(f"\n=== 2/5 training: reusing the finished run {run_dir}")
    _step(
        "3/5 calibrate one threshold per region on the labelled calib split",
        ["calibrate", str(run_dir), "--data", str(data), "--split", "calib"],
    )
    _step(
        "4/5 export the calibrated model as a SavedModel for the line servers",
        ["export", str(run_dir), "--savedmodels", str(savedmodels)],
    )
    _step(
        "5/5 evaluate the exported SavedModel on the test split",
        [
            "eval",
            str(savedmodels / config["name"]),
            "--data",
            str(data),
            "--split",
            "test",
            "--out",
            str(out / "eval"),
        ],
    )
    print(f"\nDemo finished in {(time.perf_counter() - started) / 60:.1f} min. Look at:")
    for path, what in (
        (out / "test_contact_sheet.png", "the test products (defects outlined)"),
        (run_dir / "plots", "training curves and validation reconstructions"),
        (run_dir / "calibration", "calibration score histograms and region thresholds"),
        (out / "eval" / "summary.txt", "test metrics, per region / product / run"),
        (out / "eval" / "plots", "ROC, score histograms, heatmap examples, pixel ROC/PRO"),
        (savedmodels / config["name"], "the exported SavedModel + tfad_manifest.json"),
    ):
        print(f"  {path}  - {what}")
    print(f"Serve it: tfad serve --models-root {savedmodels}   (or the C++ server, README 'Serving')")
    return 0
