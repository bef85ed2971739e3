"""``tfad export RUN``: write savedmodels/<name>/<version>/ (SavedModel + tfad_manifest.json)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tfad export``."""
    parser = subparsers.add_parser(
        "export",
        help="export a calibrated run as a SavedModel for the line servers",
        description="Write <savedmodels>/<name>/<version>/ with the serving signature (uint8 images -> score,"
        " "
        "heatmap, reconstruction) and tfad_manifest.json (input, preprocessing, region thresholds and "
        "policy, run acceptance, provenance). Versions are immutable; the folder appears atomically.",
    )
    parser.add_argument("run", metavar="RUN", help="run directory (calibrated with tfad calibrate)")
    parser.add_argument("--savedmodels", default="savedmodels", help="models root (default: savedmodels)")
    parser.add_argument("--version", type=int, help="version number (default: next free)")
    parser.add_argument(
        "--allow-uncalibrated",
        action="store_true",
        help="export without thresholds (the servers refuse to serve it)",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip reloading the exported model and comparing its scores with the run's",
    )
    parser.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    import numpy as np

    from tfad.cli import CLIError
    from tfad.export.savedmodel import ExportError, export_run
    from tfad.scoring.scorer import load_scorer

    try:
        target = export_run(args.run, args.savedmodels, args.version, args.allow_uncalibrated)
    except ExportError as err:
        raise CLIError(str(err)) from err
    print(f"exported {target}")
    if not args.no_check:
        # Parity of the artefact with the run on random patches: what the line serves is what was evaluated.
        run, saved = load_scorer(args.run), load_scorer(target)
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (4, run.image_size, run.image_size, run.channels), dtype=np.uint8)
        a, b = run(images), saved(images)
        diff = float(np.max(np.abs(a["score"] - b["score"])))
        heat = float(np.max(np.abs(a["heatmap"] - b["heatmap"])))
        if diff > 1e-4 or heat > 1e-3:
            raise CLIError(
                f"{target}: exported model's scores differ from the run's (max |d score| {diff:.2e}, "
                f"|d heatmap| {heat:.2e}); do not deploy it"
            )
        print(
            f"check: exported model reloaded, scores equal the run's (max |d score| {diff:.1e}, "
            f"max |d heatmap| {heat:.1e})"
        )
    return 0
