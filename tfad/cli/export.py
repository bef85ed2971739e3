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
        help="skip reloading the exported model and comparing its scores with the run's (done in the "
        "temporary folder, before the version is published)",
    )
    parser.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from tfad.cli import CLIError
    from tfad.export.savedmodel import ExportError, export_run

    try:
        # The check (reload, compare the scores with the run's) runs before the version is published.
        target = export_run(
            args.run, args.savedmodels, args.version, args.allow_uncalibrated, check=not args.no_check
        )
    except ExportError as err:
        raise CLIError(str(err)) from err
    checked = "" if args.no_check else " (checked before publishing: its scores equal the run's)"
    print(f"exported {target}{checked}")
    return 0
