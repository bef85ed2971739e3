"""``tfad fit CONFIG``: train a model from a YAML configuration (see README, "Configuration")."""

from __future__ import annotations

import argparse
import logging
import os
import sys

#: Exit code of a multi-worker ``tfad fit`` that lost a worker: restart the whole job (EX_TEMPFAIL).
EXIT_RESTART = 75


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``tfad fit``."""
    parser = subparsers.add_parser(
        "fit",
        help="train a model from a YAML config",
        description="Train the configured model into <output_dir>/<name>/ (config.yaml, run.json,"
        " history.csv, "
        "checkpoints/, tensorboard/, plots/). Interrupt with Ctrl-C or SIGTERM at any time: a checkpoint is "
        "saved, and --resume continues from it.",
    )
    parser.add_argument("config", metavar="CONFIG", help="YAML configuration file")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run of this config")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set training.epochs=3 (value parsed as YAML; repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (log lines only)")
    parser.add_argument(
        "--strategy",
        choices=("auto", "one-device", "mirrored", "multi-worker"),
        default="auto",
        help="tf.distribute strategy (docs/cluster.md): auto (default) = multi-worker when TF_CONFIG or "
        "--workers names several workers, else mirrored when there are several GPUs, else one-device",
    )
    parser.add_argument(
        "--workers",
        metavar="HOST:PORT,...",
        help="multi-worker cluster, chief first (builds TF_CONFIG instead of setting it); with --task-index",
    )
    parser.add_argument(
        "--task-index", type=int, metavar="N", help="this process's position in --workers (0 = chief)"
    )
    parser.set_defaults(func=_fit)


def apply_overrides(data: dict, assignments: list[str]) -> dict:
    """Apply ``dotted.key=value`` assignments to a nested config dict (values parsed as YAML)."""
    import yaml

    from tfad.cli import CLIError

    for assignment in assignments:
        key, sep, raw = assignment.partition("=")
        if not sep or not key:
            raise CLIError(f"--set expects KEY=VALUE, got {assignment!r}")
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise CLIError(f"--set {key}: {part} is not a section")
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise CLIError(f"--set {key}: {raw!r} is not a YAML value ({_one_line(err)})") from err
    return data


def _one_line(err: Exception) -> str:
    """``err``'s message on one line (YAML errors span several; tfad errors are one line)."""
    return " ".join(str(err).split())


def _fit(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from tfad.cli import CLIError
    from tfad.config import ConfigError, from_dict
    from tfad.data.errors import DataError
    from tfad.training.distributed import ClusterConfigError, choose_strategy

    try:  # before reading the config: a bad cluster argument is reported without touching TensorFlow
        choice = choose_strategy(args.strategy, args.workers, args.task_index)
    except ClusterConfigError as err:
        raise CLIError(str(err)) from err
    if choice.kind == "multi-worker":
        _tag_log_lines(choice.worker_index)
    path = Path(args.config)
    if not path.is_file():
        raise CLIError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise CLIError(f"{path}: not valid YAML: {_one_line(err)}") from err
    if not isinstance(data, dict):
        raise CLIError(f"{path}: the top level must be a mapping of sections")
    # Only now, after the checks above answered at once: these modules load TensorFlow.
    from tfad.training.fit import fit
    from tfad.training.run_directory import RunError
    from tfad.training.strategy import PeerLostError

    try:
        config = from_dict(apply_overrides(data, args.set))
        result = fit(config, resume=args.resume, progress=not args.no_progress, strategy=choice)
    except PeerLostError as err:
        print(f"tfad fit: error: {err}", file=sys.stderr)
        return _leave(choice, EXIT_RESTART)
    except (ConfigError, RunError, DataError) as err:
        raise CLIError(f"{path}: {err}") from err
    return _leave(choice, _report(result, path))


def _leave(choice, code: int) -> int:
    """``code``; a multi-worker process ends here at once (os._exit after flushing): tearing TensorFlow
    down after a peer has gone waits for its missed heartbeats (measured: ~40 s), and everything the run
    writes is closed by now (fit ends with a barrier after the chief's last write)."""
    if choice.kind != "multi-worker":
        return code
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _report(result, path) -> int:
    """Print the outcome of a run; its exit code."""
    if result.status != "finished":
        print(f"interrupted after step {result.global_step}; resume with: tfad fit {path} --resume")
        return 130
    last = result.history[-1] if result.history else {}
    print(f"trained {result.epochs_done} epoch(s), {result.global_step} steps -> {result.run_dir}")
    if last:
        print(
            "last epoch: "
            + ", ".join(
                f"{k}={v:.4g}"
                for k, v in last.items()
                if isinstance(v, float) and k.endswith(("loss", "score"))
            )
        )
    print(f"next: tfad calibrate {result.run_dir} --data <labelled data> --split <calibration split>")
    return 0


def _tag_log_lines(worker_index: int) -> None:
    """Prefix this worker's log lines with its rank (their logs are often merged), and keep TensorFlow's
    per-collective INFO chatter out of them."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s [worker {worker_index}] %(name)s: %(message)s")
        )
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
