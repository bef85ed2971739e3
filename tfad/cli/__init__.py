"""The ``tfad`` command line.

Each command group lives in its own module under ``tfad.cli`` and exposes
``register(subparsers) -> None``, which adds its sub-command(s) and sets ``func`` (a callable taking the
parsed ``argparse.Namespace`` and returning an exit code). Heavy imports (TensorFlow) happen inside the
handlers so that ``tfad --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# TensorFlow's C++ INFO lines (CPU feature guard, oneDNN notice, tf.data sharding) say nothing a user can
# act on; warnings and errors still show. Set before any command module imports TensorFlow;
# TF_CPP_MIN_LOG_LEVEL=0 in the environment brings them back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

from tfad import __version__  # noqa: E402

# Order here is the order shown by ``tfad --help``.
COMMAND_MODULES = ("demo", "fit", "calibrate", "eval", "export", "predict", "datasets", "serve", "inspect")


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every command group that is installed."""
    parser = argparse.ArgumentParser(
        prog="tfad",
        description="Visual anomaly detection for pharmaceutical inspection lines.",
    )
    parser.add_argument("--version", action="version", version=f"tfad {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"tfad.cli.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"tfad.cli.{name}":
                raise
            continue  # command group not built yet
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tfad`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        for noisy in ("tensorflow", "absl"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as err:
        print(f"tfad {args.command}: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        what = err.strerror or "file not found"
        print(f"tfad {args.command}: error: {what}: {err.filename or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tfad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
