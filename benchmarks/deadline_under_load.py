"""How often the incomplete verdict arrives before the client's deadline when every core is busy.

docs/serving.md promises that a product whose inference cannot finish in time is answered
REJECT_INCOMPLETE *before* the client's gRPC deadline (fail-safe rule 3). That reply is sent by a gRPC
thread woken at the deadline; when TensorFlow (and other processes) hold every core it may wake late, and
the client then sees DEADLINE_EXCEEDED instead. This benchmark measures the rate under full load:

- ``--load-procs`` busy-loop processes (default: one per core) at the normal priority, for the whole run;
- one "line" client sending full products back to back with a long deadline, so that the server's
  TensorFlow is always running a product;
- one probe client sending ``--probes`` full products one after another, each with a deadline drawn
  uniformly from ``--deadline-ms`` (default 20-50 ms, far below a product's inference time): every probe
  must get REJECT_INCOMPLETE before its deadline.

Per server configuration it counts probes answered in time (an OK status before the deadline), probes that
ended in DEADLINE_EXCEEDED at the client, other statuses, and ACCEPTs (must be 0), and prints the in-time
rate next to the target (>= 99.9 %). The configurations run one after another under the same load:
the C++ server at each ``--margins-ms`` reply margin (TensorFlow's threads at the RPC threads'
priority, ``--inference_nice=0``, the default), the same at the widest margin with
``--inference_nice=10``, the same with the whole server started under ``nice -n -10`` (needs root or
CAP_SYS_NICE; TensorFlow's threads then end at nice 0, level with other processes), and the Python
server at each ``--python-margins-ms``.

    .venv/bin/python benchmarks/deadline_under_load.py --build resganad:line-cpu --probes 2000
    .venv/bin/python benchmarks/deadline_under_load.py --model-dir savedmodels/vials/3 --python-margins-ms ''
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
import latency  # noqa: E402  (server start-up, model building and requests shared with the latency benchmark)
from machine import describe_machine  # noqa: E402

TARGET_IN_TIME = 0.999


def configurations(
    margins_ms: list[int], python_margins_ms: list[int]
) -> list[tuple[str, str, list[str], list[str]]]:
    """(label, server kind, flags, command prefix): the C++ server at each reply margin (TensorFlow's
    threads at the RPC threads' priority, the default), the same at the widest margin with TensorFlow at
    nice 10, then also with the whole server at nice -10, and the Python server at each of its margins."""
    configs = [(f"cc margin {m} ms", "cc", [f"--reply_margin_ms={m}"], []) for m in margins_ms]
    widest = max(margins_ms)
    nice10 = [f"--reply_margin_ms={widest}", "--inference_nice=10"]
    configs.append((f"cc margin {widest} ms, TensorFlow at nice 10", "cc", nice10, []))
    # With the privilege to raise a priority (root, or CAP_SYS_NICE: systemd's Nice=-10), the server runs at
    # nice -10 and TensorFlow's threads at -10 + 10 = 0: the RPC threads first, inference level with other
    # processes. The command prefix is `nice -n -10`; without the privilege nice leaves the priority as is.
    label = f"cc margin {widest} ms, server nice -10, TensorFlow at 0"
    configs.append((label, "cc", nice10, ["nice", "-n", "-10"]))
    configs += [
        (f"python margin {m} ms", "python", ["--reply-margin-ms", str(m)], []) for m in python_margins_ms
    ]
    return configs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model-dir", help="a version directory savedmodels/<name>/<version>/")
    source.add_argument("--build", help="family:preset to build (benchmarks/latency.py --build)")
    p.add_argument("--probes", type=int, default=2000, help="probe products per configuration")
    p.add_argument("--deadline-ms", default="20,50", help="probe deadline range MIN,MAX (ms)")
    p.add_argument("--patches", type=int, default=60, help="patches per product")
    p.add_argument("--load-procs", type=int, default=None, help="busy-loop processes (default: one per core)")
    p.add_argument("--margins-ms", default="5,15,25", help="C++ --reply_margin_ms values to compare")
    p.add_argument("--python-margins-ms", default="20,40", help="Python --reply-margin-ms values ('' = none)")
    p.add_argument("--cc-binary", default=str(REPO / "bazel-bin/cc/tfad_server"), help="C++ server binary")
    p.add_argument("--seed", type=int, default=0, help="seed of the probe deadlines")
    p.add_argument("--json-out", default="", help="also write the report here")
    return p.parse_args(argv)


def start_load(processes: int) -> list[subprocess.Popen]:
    """Busy loops at the normal priority: another job holding the cores."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]


def server_args(
    kind: str, extra: list[str], args: argparse.Namespace, prefix: list[str]
) -> argparse.Namespace:
    """The argument namespace latency.start_server expects: production cycle budget and queue."""
    return argparse.Namespace(
        cc_binary=args.cc_binary,
        inference_threads=1,
        warmup_batch=args.patches,
        cycle_budget_ms=450,
        cc_flag=extra if kind == "cc" else [],
        command_prefix=prefix,
        py_flag=extra if kind == "python" else [],
        startup_timeout_s=600,
    )


def measure(
    kind: str,
    extra: list[str],
    prefix: list[str],
    models_root: Path,
    request,
    args: argparse.Namespace,
    work: Path,
) -> dict:
    """Probe one server configuration while the line client keeps its TensorFlow busy."""
    import grpc

    from tfad.serving.client import InspectionClient

    log_path = work / f"server-{kind}-{'-'.join(prefix + extra) or 'default'}.log"
    proc, log, target = latency.start_server(
        kind, models_root, server_args(kind, extra, args, prefix), log_path
    )
    stop = threading.Event()
    line_products = [0]

    def line_client() -> None:
        with InspectionClient(target) as c:
            while not stop.is_set():
                try:
                    c.inspect_request(request, timeout_s=30)
                    line_products[0] += 1
                except grpc.RpcError:
                    pass

    low, high = (float(v) / 1000 for v in args.deadline_ms.split(","))
    rng = random.Random(args.seed)
    counts = {"in_time": 0, "deadline_exceeded": 0, "other_status": 0, "accept": 0, "complete_verdicts": 0}
    late_ms: list[float] = []
    # Client-seen time minus the server's total_ms: what the reply margin has to cover.
    outside_server_ms: list[float] = []
    try:
        with InspectionClient(target) as probe:
            probe.wait_ready(60)
            probe.inspect_request(request, timeout_s=60)  # warm-up
            line = threading.Thread(target=line_client, daemon=True)
            line.start()
            time.sleep(1.0)  # the line client's first product is running
            started = time.perf_counter()
            for _ in range(args.probes):
                deadline = rng.uniform(low, high)
                t0 = time.perf_counter()
                try:
                    result = probe.inspect_request(request, timeout_s=deadline)
                except grpc.RpcError as err:
                    if err.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                        counts["deadline_exceeded"] += 1
                        late_ms.append((time.perf_counter() - t0 - deadline) * 1000)
                    else:
                        counts["other_status"] += 1
                    continue
                counts["in_time"] += 1
                outside_server_ms.append((time.perf_counter() - t0) * 1000 - result.timings_ms["total"])
                counts["accept"] += result.verdict == "ACCEPT"
                counts["complete_verdicts"] += result.verdict in ("ACCEPT", "REJECT")
            elapsed = time.perf_counter() - started
    finally:
        stop.set()
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    rate = counts["in_time"] / max(1, args.probes)
    return {
        "server": kind,
        "flags": extra,
        "command_prefix": prefix,
        "probes": args.probes,
        **counts,
        "in_time_rate": round(rate, 5),
        "meets_target": rate >= TARGET_IN_TIME and counts["accept"] == 0,
        "late_ms": latency.percentiles(late_ms),  # how long after its deadline a late probe ended
        "outside_server_ms": latency.percentiles(outside_server_ms),
        "line_products_during_probes": line_products[0],
        "probe_seconds": round(elapsed, 1),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = describe_machine()
    try:
        margins = [int(v) for v in args.margins_ms.split(",") if v]
        python_margins = [int(v) for v in args.python_margins_ms.split(",") if v]
    except ValueError:
        print("deadline_under_load: --margins-ms and --python-margins-ms are comma-separated integers")
        return 2
    with tempfile.TemporaryDirectory(prefix="tfad-deadline-") as tmp:
        work = Path(tmp)
        if args.model_dir:
            version_dir = Path(args.model_dir).resolve()
        else:
            print(f"building {args.build} (1 training step, calibrated, exported) ...", flush=True)
            version_dir = latency.build_model(args.build, work)
        manifest = json.loads((version_dir / "tfad_manifest.json").read_text())
        models_root = work / "models"
        (models_root / manifest["name"]).mkdir(parents=True)
        os.symlink(version_dir, models_root / manifest["name"] / str(manifest["version"]))
        _, request = latency.product_request(manifest, args.patches, seed=1)
        load_procs = args.load_procs if args.load_procs is not None else machine["cores"]
        load = start_load(load_procs)
        results = []
        try:
            for name, kind, extra, prefix in configurations(margins, python_margins):
                print(f"{name}: {args.probes} probes under load ...", flush=True)
                measured = measure(kind, extra, prefix, models_root, request, args, work)
                results.append({"configuration": name, **measured})
        finally:
            for p in load:
                p.kill()
    report = {
        "machine": machine,
        "model": f"{manifest['name']} ({manifest.get('model_family')}, {args.patches} patches/product)",
        "load": f"{load_procs} busy-loop processes + one client sending products back to back",
        "probe_deadline_ms": args.deadline_ms,
        "target_in_time_rate": TARGET_IN_TIME,
        "results": results,
    }
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    vector = "AVX-512" if machine["avx512f"] else "AVX2" if machine["avx2"] else "SSE"
    print(f"\nmachine: {machine['cpu']}, {machine['cores']} cores, {vector}")
    print(f"load: {report['load']}; probe deadlines {args.deadline_ms} ms\n")
    print(
        "| configuration | probes | in time | DEADLINE_EXCEEDED | other status | ACCEPT | in-time rate "
        "| target | outside-server p50 / p99 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['configuration']} | {r['probes']} | {r['in_time']} | {r['deadline_exceeded']} | "
            f"{r['other_status']} | {r['accept']} | {100 * r['in_time_rate']:.2f} % | "
            f"{'met' if r['meets_target'] else 'MISSED'} | "
            f"{r['outside_server_ms'].get('p50_ms', '-')} / {r['outside_server_ms'].get('p99_ms', '-')} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
