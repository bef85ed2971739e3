"""What batching products across stations, a second inference worker, or pinning workers to cores buys.

    .venv/bin/python benchmarks/serving_modes.py --build embedding:line-fast --rounds 3 --seconds 12
    .venv/bin/python benchmarks/serving_modes.py --model-dir EXPORT/1 --model-dir OTHER/1 --json-out m.json

Issue 13 asks how one PC serves several stations. The C++ server offers one inference thread with TensorFlow
on every core (its default), or ``--inference_threads=2 --tf_intra_op_threads=1`` (docs/performance.md,
"Several stations on one PC"). Two more ways are possible: run several stations' products as one batch, or
pin each single-core worker to its own core. Before either is built into the server, this script measures
what each would buy, in bare TensorFlow on the export's serving signature (the function the server runs), as
products per second kept up for ``--seconds``:

- ``1 worker, all cores, k per call``: one process calls the signature on ``k`` products at once (k = 1 is
  the server's default; k = 2, 4 batch across stations: every product of a call waits for the whole call);
- ``2 workers x 1 core``: two processes, each with one intra-op and one inter-op thread, calling on one
  product at a time (the server's two-thread mode; processes stand in for threads);
- ``2 workers x 1 core, pinned``: the same, each process pinned to its own core (``sched_setaffinity``).

Every mode runs in fresh child processes: they load the export and warm up, then all start their timed loop
together. Modes alternate round by round, in a rotated order, so that drift on this PC hits them alike; the
table gives medians over the rounds and the median of each round's ratio to that round's default. The
products are the benchmark's usual 60-patch product images. It measures throughput, not the server: qualify
a chosen mode through the C++ server with ``benchmarks/qualify_pc.py --cc-flag=...``. A worker that does not
load in ``--load-timeout`` seconds ends the run with its log.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency  # noqa: E402
from qualify_pc import machine_at_start, machine_line  # noqa: E402

# mode name -> (workers, threads per worker (0: TensorFlow's default, every core), products per call, pinned)
MODES: dict[str, tuple[int, int, int, bool]] = {
    "1 worker, all cores, 1 per call (default)": (1, 0, 1, False),
    "1 worker, all cores, 2 per call": (1, 0, 2, False),
    "1 worker, all cores, 4 per call": (1, 0, 4, False),
    "2 workers x 1 core": (2, 1, 1, False),
    "2 workers x 1 core, pinned": (2, 1, 1, True),
}
DEFAULT_MODE = next(iter(MODES))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model-dir", action="append", default=[], help="an exported version directory (repeatable)"
    )
    p.add_argument("--build", action="append", default=[], help="family:preset to build first (repeatable)")
    p.add_argument("--patches", type=int, default=60, help="patches per product")
    p.add_argument("--seconds", type=float, default=12.0, help="timed loop per mode and round")
    p.add_argument("--rounds", type=int, default=3, help="rounds over all modes (medians are over these)")
    p.add_argument(
        "--modes",
        default=",".join(str(i) for i in range(len(MODES))),
        help="indices of the modes to run, comma-separated (default all: "
        + "; ".join(f"{i} = {m}" for i, m in enumerate(MODES))
        + ")",
    )
    p.add_argument(
        "--load-timeout",
        type=float,
        default=600.0,
        help="seconds a worker may take to load and warm up, and beyond --seconds to report (default 600)",
    )
    p.add_argument("--json-out", type=Path)
    # internal: one worker process
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--per-call", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, default=-1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.patches < 1 or args.seconds <= 0 or args.rounds < 1 or args.load_timeout <= 0:
        p.error("--patches, --seconds, --rounds and --load-timeout must be positive")
    try:
        indices = [int(i) for i in args.modes.split(",") if i.strip()]
    except ValueError:
        indices = []
    if not indices or len(set(indices)) != len(indices) or not all(0 <= i < len(MODES) for i in indices):
        p.error(f"--modes: distinct indices of {list(range(len(MODES)))}, got {args.modes!r}")
    args.mode_names = [list(MODES)[i] for i in indices]
    if not args.worker and not (args.model_dir or args.build):
        p.error("give --model-dir or --build")
    if not args.worker and any(MODES[m][3] for m in args.mode_names):
        try:
            pinned_cpus(max(MODES[m][0] for m in args.mode_names if MODES[m][3]))
        except RuntimeError as error:
            p.error(str(error))
    return args


def pinned_cpus(workers: int) -> list[int]:
    """One CPU this process may use on each of ``workers`` different physical cores (hyperthreads of one
    core would share its FMA units); RuntimeError when there are not enough."""
    by_core: dict[str, int] = {}
    for cpu in sorted(os.sched_getaffinity(0)):
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            core = (
                (topology / "physical_package_id").read_text().strip()
                + ":"
                + (topology / "core_id").read_text().strip()
            )
        except OSError:  # no topology: count each CPU as a core
            core = f"cpu{cpu}"
        by_core.setdefault(core, cpu)
    if len(by_core) < workers:
        raise RuntimeError(
            f"pinning {workers} workers needs {workers} physical cores, this process may use "
            f"{len(by_core)} ({sorted(by_core.values())})"
        )
    return list(by_core.values())[:workers]


def run_worker(args: argparse.Namespace) -> None:
    """A child process: load, warm up, print READY, wait for GO on stdin, then call for ``--seconds`` and
    print the products done and each call's time as one JSON line."""
    if args.cpu >= 0:
        os.sched_setaffinity(0, {args.cpu})  # before TensorFlow starts its threads, which inherit it
    import tensorflow as tf

    if args.threads:  # before anything runs: TensorFlow fixes its pools at the first op
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    signature, batch = latency.serving_signature(args.worker, args.patches * args.per_call)
    for _ in range(2):
        signature(images=batch)["score"].numpy()
    print("READY", flush=True)
    sys.stdin.readline()
    calls, start = [], time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        t = time.perf_counter()
        signature(images=batch)["score"].numpy()
        calls.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - start
    print(
        "RESULT "
        + json.dumps({"products": len(calls) * args.per_call, "seconds": elapsed, "calls_ms": calls})
    )


def worker_command(
    model_dir: Path, threads: int, per_call: int, cpu: int, args: argparse.Namespace
) -> list[str]:
    """The command line of one worker process (``run_worker``)."""
    return [
        sys.executable,
        __file__,
        "--worker",
        str(model_dir),
        "--threads",
        str(threads),
        "--per-call",
        str(per_call),
        "--patches",
        str(args.patches),
        "--seconds",
        str(args.seconds),
        "--cpu",
        str(cpu),
    ]


def _read_lines(stream, out: queue.Queue) -> None:
    """Put each line of ``stream`` on ``out``, then None at its end."""
    for line in stream:
        out.put(line)
    out.put(None)


def run_mode(model_dir: Path, mode: str, args: argparse.Namespace) -> dict:
    """One round of ``mode``: its workers started together; products/s summed over them."""
    workers, threads, per_call, pinned = MODES[mode]
    cpus = pinned_cpus(workers) if pinned else []
    children, logs = [], []
    for w in range(workers):
        command = worker_command(model_dir, threads, per_call, cpus[w] if pinned else -1, args)
        # stderr to a file, not a pipe: TensorFlow's start-up logging would fill an unread pipe and block
        logs.append(tempfile.TemporaryFile("w+"))
        children.append(
            subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=logs[-1], text=True
            )
        )

    def failure(index: int) -> str:
        logs[index].seek(0)
        return logs[index].read()[-2000:]

    # A reader thread per worker: a worker that hangs (a load that never ends) becomes a timeout with its
    # log, not a benchmark that waits for ever.
    lines = [queue.Queue() for _ in children]
    for child, out in zip(children, lines, strict=True):
        threading.Thread(target=_read_lines, args=(child.stdout, out), daemon=True).start()

    def wait_for(index: int, prefix: str, deadline: float, stage: str) -> str:
        while True:
            try:
                line = lines[index].get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(
                    f"{mode}: worker {index} did not {stage} in time (--load-timeout "
                    f"{args.load_timeout:g} s): {failure(index)}"
                ) from None
            if line is None:
                children[index].wait()
                raise RuntimeError(
                    f"{mode}: worker {index} exited ({children[index].returncode}) before it could "
                    f"{stage}: {failure(index)}"
                )
            if line.startswith(prefix):
                return line

    try:
        deadline = time.monotonic() + args.load_timeout
        for index in range(len(children)):  # each has loaded and warmed up
            wait_for(index, "READY", deadline, "load and warm up")
        for child in children:
            child.stdin.write("GO\n")
            child.stdin.flush()
        deadline = time.monotonic() + args.seconds + args.load_timeout
        results = []
        for index, child in enumerate(children):
            found = wait_for(index, "RESULT ", deadline, "report its loop")
            results.append(json.loads(found.removeprefix("RESULT ")))
            if child.wait(timeout=max(1.0, deadline - time.monotonic())) != 0:
                raise RuntimeError(
                    f"{mode}: worker {index} failed (exit {child.returncode}): {failure(index)}"
                )
    finally:
        for child in children:  # a failed mode leaves no worker behind
            if child.poll() is None:
                child.kill()
                child.wait()
        for log in logs:
            log.close()
    calls = [c for r in results for c in r["calls_ms"]]
    return {
        "products_per_s": sum(r["products"] / r["seconds"] for r in results),
        "call": latency.percentiles(calls),
    }


def measure(model_dir: Path, args: argparse.Namespace) -> dict:
    """Every mode of ``args.mode_names`` for ``args.rounds`` rounds, rotated; medians and ratios."""
    names = args.mode_names
    rounds: dict[str, list[dict]] = {m: [] for m in names}
    for r in range(args.rounds):
        for mode in names[r % len(names) :] + names[: r % len(names)]:
            print(f"  round {r + 1}/{args.rounds}: {mode} ...", flush=True)
            rounds[mode].append(run_mode(model_dir, mode, args))
    rates = {m: [x["products_per_s"] for x in rounds[m]] for m in names}
    table = []
    for m in names:
        median = statistics.median(rates[m])
        # each round's ratio to that round's default, so drift between rounds cancels; their median and range
        defaults = rates.get(DEFAULT_MODE, [])
        ratios = [a / b for a, b in zip(rates[m], defaults, strict=True)] if defaults else []
        table.append(
            {
                "mode": m,
                "products_per_s": round(median, 2),
                "range": [round(min(rates[m]), 2), round(max(rates[m]), 2)],
                "ratio_to_default": round(statistics.median(ratios), 3) if ratios else None,
                "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)] if ratios else None,
                "call_p50_ms": statistics.median(x["call"]["p50_ms"] for x in rounds[m]),
                "call_p99_ms": statistics.median(x["call"]["p99_ms"] for x in rounds[m]),
            }
        )
    return {"model_dir": str(model_dir), "rounds": rounds, "table": table}


def markdown(model_label: str, table: list[dict]) -> str:
    """One model's table."""
    lines = [
        f"{model_label}:",
        "",
        "| mode | products/s (range) | x default, paired by round (range) | call p50 / p99 ms |",
        "|---|---|---|---|",
    ]
    for row in table:
        ratio = "-"
        if row["ratio_to_default"] is not None:
            low, high = row["ratio_range"]
            ratio = f"{row['ratio_to_default']:.2f} ({low:.2f}-{high:.2f})"
        lines.append(
            f"| {row['mode']} | {row['products_per_s']:.2f} ({row['range'][0]:.2f}-{row['range'][1]:.2f})"
            f" | {ratio} | {row['call_p50_ms']:.1f} / {row['call_p99_ms']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build what is asked, measure every model, print the tables (and write the JSON report)."""
    args = parse_args(argv)
    if args.worker:
        run_worker(args)
        return 0
    machine = machine_at_start()
    print(machine_line(machine), flush=True)
    model_dirs = [Path(d) for d in args.model_dir]
    with tempfile.TemporaryDirectory(prefix="tfad-modes-") as work:
        for spec in args.build:
            print(
                f"building {spec} (1 training step on generated vials, calibrated, exported) ...", flush=True
            )
            model_dirs.append(latency.build_model(spec, Path(work)))
        report = {"machine": machine, "patches": args.patches, "seconds": args.seconds, "models": []}
        for model_dir in model_dirs:
            manifest = json.loads((model_dir / "tfad_manifest.json").read_text())
            label = f"{manifest.get('model_family')}:{manifest.get('preset')}"
            print(f"{label} ({model_dir}):", flush=True)
            result = {"label": label, **measure(model_dir, args)}
            report["models"].append(result)
            print(markdown(label, result["table"]) + "\n", flush=True)
    for result in report["models"]:
        print(markdown(result["label"], result["table"]) + "\n")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
