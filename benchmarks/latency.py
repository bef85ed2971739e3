"""End-to-end Inspect latency of the C++ and Python inspection servers, for one or several SavedModels.

Measures, in one run, for each model, on the same products:
- bare TensorFlow run time of one product batch (the loaded SavedModel called in a child process) and
  its peak memory, and each server's peak memory,
- Inspect latency (client-side, loopback) of the C++ server and the Python server: p50/p99 over
  --products sequential products per server, both servers running and the products alternating between
  them (ABBA order), and the server overhead = latency - bare TensorFlow time,
- model FLOPs per product (TensorFlow profiler on the frozen graph) and achieved FLOP/s vs --peak-gflops,
- optionally (--sustained-minutes > 0) a sustained load: --stations concurrent stations each sending
  --rate-hz products per second, bounded by time and --max-requests, loopback only.

Models are exported version directories (--model-dir, repeatable) or built here (--build
``family:preset``, repeatable): a few synthetic vial products are generated, the preset is trained for
one step with ``tfad fit``, calibrated and exported with the real CLI. Latency does not depend on how
well a model is trained (same graph, same shapes), so this compares families and presets side by side.

    .venv/bin/python benchmarks/latency.py --model-dir savedmodels/vials/3 --products 200
    .venv/bin/python benchmarks/latency.py --build resganad:line-cpu --build grdnet:crae --products 200
    .venv/bin/python benchmarks/latency.py --model-dir savedmodels/vials/3 --servers cc \
        --sustained-minutes 5 --stations 4 --rate-hz 2

Prints a JSON report (also written to --json-out) and a markdown table of the sequential latencies.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from machine import describe_machine  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model-dir", action="append", default=[], help="a version directory savedmodels/<name>/<version>/"
    )
    p.add_argument(
        "--build",
        action="append",
        default=[],
        help="family:preset to build (1 training step on synthetic vials, calibrated, exported)",
    )
    p.add_argument(
        "--products", type=int, default=200, help="sequential products per server (>= 200 for p99)"
    )
    p.add_argument("--patches", type=int, default=60, help="patches per product")
    p.add_argument("--servers", default="cc,python", help="comma-separated: cc, python")
    p.add_argument("--cc-binary", default=str(REPO / "bazel-bin/cc/tfad_server"), help="C++ server binary")
    p.add_argument("--inference-threads", type=int, default=1, help="servers' --inference_threads")
    p.add_argument("--deadline-ms", type=int, default=2000, help="client deadline per Inspect")
    p.add_argument(
        "--peak-gflops", type=float, default=None, help="float32 peak (default: this machine's, machine.py)"
    )
    p.add_argument("--bare-runs", type=int, default=30, help="bare TensorFlow runs")
    p.add_argument("--sustained-minutes", type=float, default=0.0, help="sustained-load duration (0 = off)")
    p.add_argument("--stations", type=int, default=4, help="concurrent stations in the sustained mode")
    p.add_argument("--rate-hz", type=float, default=2.0, help="products per second per station (sustained)")
    p.add_argument("--max-requests", type=int, default=5000, help="bound on sustained-mode requests")
    p.add_argument("--json-out", default="", help="also write the report here")
    p.add_argument(
        "--cycle-budget-ms",
        type=int,
        default=60000,
        help="servers' cycle budget: large, so that no product is cut short and the full latency is seen",
    )
    p.add_argument("--warmup-batch", type=int, default=0, help="servers' warm-up batch (0 = --patches)")
    p.add_argument("--warmup-calls", type=int, default=5, help="untimed Inspects per server before timing")
    p.add_argument(
        "--build-eval-products", type=int, default=4, help="--build: calibration products (20 patches each)"
    )
    p.add_argument(
        "--one-server-at-a-time",
        action="store_true",
        help="measure the servers one after the other (models too large for two servers' memory at once)",
    )
    p.add_argument("--startup-timeout-s", type=float, default=120.0, help="wait this long for a server")
    p.add_argument(
        "--cc-flag",
        action="append",
        default=[],
        help="extra C++ server flag, e.g. --cc-flag=--tf_inter_op_threads=1",
    )
    return p.parse_args(argv)


def percentiles(values: list[float]) -> dict:
    a = np.sort(np.asarray(values, np.float64))
    if a.size == 0:
        return {"n": 0}

    def q(p: float) -> float:
        return float(a[int(np.clip(np.ceil(p / 100 * a.size), 1, a.size)) - 1])

    return {
        "n": int(a.size),
        "p50_ms": round(q(50), 3),
        "p90_ms": round(q(90), 3),
        "p99_ms": round(q(99), 3),
        "max_ms": round(float(a[-1]), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


def _noise_range(check: dict, region: str) -> tuple[int, int]:
    """``[low, high)`` of uniform grey noise that passes ``region``'s limits of the manifest's acquisition
    check with room: mean 110 moved inside the mean limits, standard deviation 1.5 x ``std_min`` (at least the
    17.3 of the noise 80-140 used without a check). SystemExit when no such noise fits in 0-255."""
    limits = (check.get("regions") or {}).get(region) or check["default"]
    half = max(
        30.0, 1.5 * limits["std_min"] * 3**0.5
    )  # uniform on [m - half, m + half): std = half / sqrt(3)
    mean = min(max(110.0, limits["mean_min"] + 1.0), limits["mean_max"] - 1.0)
    low, high = round(mean - half), round(mean + half)
    if low < 0 or high > 256:
        raise SystemExit(
            f"latency: no seeded noise passes the acquisition check of region {region} ({limits}); "
            "benchmark a copy of the export without its acquisition_check block"
        )
    return low, high


def product_request(manifest: dict, n: int, seed: int, heatmaps: str = "none"):
    """``n`` seeded noise patches for the model of ``manifest`` and their Inspect request, asking for
    ``heatmaps`` ("none", "rejected" or "all"): ``(images, request)``. The noise is grey 80-140 for a model
    without an acquisition check (the figures before 2026-12-08), else wide enough to pass it
    (:func:`_noise_range`)."""
    from tfad.serving.client import build_request

    h, w, c = (manifest["input"][k] for k in ("height", "width", "channels"))
    rng = np.random.default_rng(seed)
    regions = sorted((manifest.get("thresholds") or {}).get("regions") or {}) or ["all"]
    images = rng.integers(80, 140, (n, h, w, c), dtype=np.uint8)
    check = manifest.get("acquisition_check")
    if check:  # noise with the contrast a product has, so the servers run the model (fail-safe rule 8)
        for i in range(n):
            low, high = _noise_range(check, regions[i % len(regions)])
            images[i] = rng.integers(low, high, (h, w, c), dtype=np.uint8)
    return images, build_request(
        images,
        [regions[i % len(regions)] for i in range(n)],
        [i // (len(regions) * 5) for i in range(n)],
        [(i // len(regions)) % 5 for i in range(n)],
        product_id=f"bench-{seed}",
        station_id="bench",
        heatmaps=heatmaps,
    )


def call_in_child(function: str, *args, module: str = "latency") -> object:
    """``function(*args)`` of ``module`` (this one, or another script of benchmarks/) in a fresh Python
    process; its JSON-encoded result.

    The bare TensorFlow run and the FLOP count run apart from the benchmark: TensorFlow's CPU allocator keeps
    its peak, and the `thesis` preset's 60-patch product needs ~11 GB per process, so the servers started
    next would otherwise share the machine's memory with that peak (the first attempts were OOM-killed).
    """
    code = (
        "import sys, json, importlib; sys.path.insert(0, sys.argv[1]); "
        "m = importlib.import_module(sys.argv[4]); "
        "print('RESULT', json.dumps(getattr(m, sys.argv[2])(*json.loads(sys.argv[3]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), function, json.dumps(args), module],
        capture_output=True,
        text=True,
    )
    found = re.search(r"^RESULT (.+)$", done.stdout, re.M)
    if done.returncode != 0 or not found:
        raise RuntimeError(
            f"{function} failed in a child process (exit {done.returncode}): {done.stderr[-2000:]}"
        )
    return json.loads(found.group(1))


def bare_tensorflow(model_dir: Path, batch_shape: tuple[int, ...], runs: int) -> dict:
    """Run time of one product batch through the loaded SavedModel and the peak memory it took (child)."""
    return call_in_child("time_bare_tensorflow", str(model_dir), runs, list(batch_shape))


def serving_signature(model_dir: str, patches: int):
    """The export's serving signature, loaded in this process as the bare TensorFlow runs use it, and a batch
    of ``patches`` of the benchmark's product images for it: ``(signature, images)``."""
    import tensorflow as tf

    from tfad.scoring.native import register_ops_for

    manifest = json.loads((Path(model_dir) / "tfad_manifest.json").read_text())
    images, _ = product_request(manifest, patches, seed=1)
    register_ops_for(model_dir)
    return tf.saved_model.load(model_dir).signatures["serving_default"], tf.constant(images)


def time_bare_tensorflow(model_dir: str, runs: int, batch_shape: list[int]) -> dict:
    """Timed runs of the serving signature on the benchmark's product images (this process)."""
    import resource

    sig, x = serving_signature(model_dir, batch_shape[0])
    sig(images=x)  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sig(images=x)["score"].numpy()
        times.append((time.perf_counter() - t) * 1000)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {**percentiles(times), "peak_rss_mb": round(peak_mb, 1)}


def model_flops(model_dir: Path, batch_shape: tuple[int, ...]) -> float | None:
    """FLOPs of one batch from TensorFlow's profiler on the frozen, inlined graph (None if unavailable).

    Counted on a batch of one image and scaled by the batch size (every op of the serving graph works per
    image), in a child process: freezing a large model's weights into graph constants takes many GB.
    """
    try:
        per_image = call_in_child("profile_flops", str(model_dir), [1, *batch_shape[1:]])
    except RuntimeError as err:
        print(f"FLOPs unavailable: {err}", file=sys.stderr)
        return None
    return None if per_image is None else float(per_image) * batch_shape[0]


def profile_flops(model_dir: str, batch_shape: list[int]) -> float | None:
    """The profiler's FLOP count of the serving signature on a ``batch_shape`` uint8 batch (this process)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from tfad.scoring.native import register_ops_for

    try:
        register_ops_for(model_dir)
        loaded = tf.saved_model.load(str(model_dir))
        sig = loaded.signatures["serving_default"]
        fn = tf.function(lambda x: sig(images=x)).get_concrete_function(tf.TensorSpec(batch_shape, tf.uint8))
        frozen = convert_variables_to_constants_v2(fn)
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(frozen.graph.as_graph_def(), name="")
            opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
            opts["output"] = "none"
            prof = tf.compat.v1.profiler.profile(graph, options=opts)
        return float(prof.total_float_ops) if prof.total_float_ops else None
    except Exception as err:  # profiler support varies by op; report unknown rather than fail
        print(f"FLOPs unavailable: {err}", file=sys.stderr)
        return None


def start_server(kind: str, models_root: Path, args: argparse.Namespace, log_path: Path):
    if kind == "cc":
        cmd = [
            args.cc_binary,
            f"--models_root={models_root}",
            "--listen=127.0.0.1:0",
            f"--inference_threads={args.inference_threads}",
            f"--warmup_batch={args.warmup_batch or args.patches}",
            f"--cycle_budget_ms={args.cycle_budget_ms}",
            # A benchmark's server logs no request lines and queues deeply; args.production_flags (set by
            # qualify_pc.py) keeps the server's own defaults for both, as a line PC runs it.
            *([] if getattr(args, "production_flags", False) else ["--log_requests=false", "--max_queue=64"]),
            *args.cc_flag,
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            "tfad",
            "serve",
            "--models-root",
            str(models_root),
            "--listen",
            "127.0.0.1:0",
            "--log-requests",
            "false",
            "--inference-threads",
            str(args.inference_threads),
            "--warmup-batch",
            str(args.warmup_batch or args.patches),
            "--cycle-budget-ms",
            str(args.cycle_budget_ms),
            "--max-queue",
            "64",
            *getattr(args, "py_flag", []),
        ]
    log = open(log_path, "w")  # noqa: SIM115 (closed by the caller)
    # e.g. ["nice", "-n", "-10"]: start the server at another priority (deadline_under_load.py)
    cmd = [*getattr(args, "command_prefix", []), *cmd]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + args.startup_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} server exited:\n{log_path.read_text()}")
        m = re.search(r"event=serving .*port=(\d+)", log_path.read_text())
        if m:
            return proc, log, f"127.0.0.1:{m.group(1)}"
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"{kind} server did not start:\n{log_path.read_text()}")


def interleaved(clients: dict, request, products: int, deadline_s: float, warmup_calls: int = 5) -> dict:
    """``products`` sequential Inspects per server, alternating between the servers one request at a time;
    client-side latency, server-reported inference, verdicts and errors per server."""
    for _ in range(warmup_calls):  # warm-up calls (generous deadline: a first call may still build kernels)
        for client in clients.values():
            client.inspect_request(request, timeout_s=max(deadline_s, 60.0))
    data = {kind: {"latencies": [], "inference": [], "verdicts": {}, "errors": 0} for kind in clients}
    for i in range(products * len(clients)):
        kinds = list(clients)
        kind = kinds[i % len(kinds)] if (i // len(kinds)) % 2 == 0 else kinds[::-1][i % len(kinds)]
        d = data[kind]
        t = time.perf_counter()
        try:
            r = clients[kind].inspect_request(request, timeout_s=deadline_s)
        except Exception:
            d["errors"] += 1
            continue
        d["latencies"].append((time.perf_counter() - t) * 1000)
        d["inference"].append(r.timings_ms["inference"])
        d["verdicts"][r.verdict] = d["verdicts"].get(r.verdict, 0) + 1
    return {
        kind: {
            "latency": percentiles(d["latencies"]),
            "server_inference": percentiles(d["inference"]),
            "verdicts": d["verdicts"],
            "errors": d["errors"],
        }
        for kind, d in data.items()
    }


def sustained(
    target: str, request, args: argparse.Namespace, samples: list[tuple[float, str]] | None = None
) -> dict:
    """--stations threads each sending --rate-hz products/s for --sustained-minutes; the outcome counts and
    latency percentiles. ``samples``, when given, also receives each request's (client ms, outcome)."""
    from tfad.serving.client import InspectionClient

    duration = args.sustained_minutes * 60.0
    per_station = max(1, min(int(duration * args.rate_hz), args.max_requests // max(1, args.stations)))
    period = 1.0 / args.rate_hz
    lock = threading.Lock()
    latencies: list[float] = []
    outcome: dict[str, int] = {}

    def station(index: int) -> None:
        with InspectionClient(target) as client:
            next_at = time.monotonic() + index * period / args.stations
            for _ in range(per_station):
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += period
                t = time.perf_counter()
                try:
                    key = client.inspect_request(request, timeout_s=args.deadline_ms / 1000).verdict
                except Exception as err:
                    key = f"error:{type(err).__name__}"
                ms = (time.perf_counter() - t) * 1000
                with lock:
                    latencies.append(ms)
                    outcome[key] = outcome.get(key, 0) + 1
                    if samples is not None:
                        samples.append((ms, key))

    start = time.monotonic()
    threads = [threading.Thread(target=station, args=(i,)) for i in range(args.stations)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hist_edges = [0, 50, 100, 150, 200, 300, 450, 1000, float("inf")]
    counts = np.histogram(latencies, bins=hist_edges)[0].tolist()
    return {
        "stations": args.stations,
        "rate_hz_per_station": args.rate_hz,
        "requests": len(latencies),
        "wall_s": round(time.monotonic() - start, 1),
        "outcomes": outcome,
        "errors": sum(v for k, v in outcome.items() if k.startswith("error")),
        "latency": percentiles(latencies),
        "histogram_ms": {f"{hist_edges[i]}-{hist_edges[i + 1]}": counts[i] for i in range(len(counts))},
    }


def build_model(spec: str, work: Path, eval_products: int = 4) -> Path:
    """Train ``family:preset`` for one step on generated vials, calibrate and export it; its version dir."""
    import yaml

    from tfad.data.synth_vials import generate_synth_vials

    family_name, _, preset = spec.partition(":")
    data = work / "vials"
    if not data.is_dir():
        generate_synth_vials(
            str(data), n_products=2, n_runs=1, frames=1, n_eval_products=eval_products, defect_rate=0.5
        )
    name = f"{family_name}-{preset}"
    config = {
        "name": name,
        "output_dir": str(work / "runs"),
        "model": {"family": family_name, "preset": preset},
        "data": {"root": str(data), "layout": "line", "validation_fraction": 0.0},
        "training": {"epochs": 1, "steps_per_epoch": 1, "batch_size": 4},
    }
    # the generated train split has only good patches: the families that read labelled defects get P_q ones
    if family_name in ("classifier", "segmentation", "aexad"):
        config["supervised"] = {"synthetic_probability": 0.5}
    config_path = work / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    steps = (
        ["fit", str(config_path), "--no-progress"],
        ["calibrate", str(work / "runs" / name), "--data", str(data), "--split", "calib", "--no-progress"],
        ["export", str(work / "runs" / name), "--savedmodels", str(work / "built")],
    )
    for argv in steps:  # each in a child process: a large preset's training memory goes with it
        done = subprocess.run([sys.executable, "-m", "tfad", *argv], cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"building {spec}: `tfad {' '.join(argv)}` failed:\n{done.stderr[-2000:]}")
    return work / "built" / name / "1"


def peak_rss_mb(pid: int) -> float | None:
    """A live process's peak resident memory (VmHWM), in MB; None where /proc does not say."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    return round(int(found.group(1)) / 1024, 1) if found else None


def serve_and_measure(kinds: list[str], models_root: Path, request, args: argparse.Namespace, log_stem: Path):
    """Start the ``kinds`` servers together, time them interleaved (then the sustained load, one server at a
    time), record each server's peak memory, stop them."""
    from tfad.serving.client import InspectionClient

    servers = {}
    try:
        for kind in kinds:
            servers[kind] = start_server(kind, models_root, args, Path(f"{log_stem}-{kind}.log"))
        clients = {kind: InspectionClient(servers[kind][2]) for kind in kinds}
        for client in clients.values():
            client.wait_ready(30)
        results = interleaved(clients, request, args.products, args.deadline_ms / 1000, args.warmup_calls)
        for client in clients.values():
            client.close()
        if args.sustained_minutes > 0:  # one server at a time: a station load is meant to use the machine
            for kind in kinds:
                results[kind]["sustained"] = sustained(servers[kind][2], request, args)
        for kind in kinds:
            results[kind]["peak_rss_mb"] = peak_rss_mb(servers[kind][0].pid)
        return results
    finally:
        for proc, log, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
            log.close()


def measure_model(model_dir: Path, args: argparse.Namespace, work: Path, index: int = 0) -> dict:
    """Bare TensorFlow, FLOPs and both servers' latency for one exported version directory (``index``: its
    place in the run, which keeps two exports of the same model name apart)."""
    manifest = json.loads((model_dir / "tfad_manifest.json").read_text())
    name, version = manifest["name"], int(manifest["version"])
    models_root = work / f"models-{index}-{name}"
    (models_root / name).mkdir(parents=True)
    os.symlink(model_dir, models_root / name / str(version))
    images, request = product_request(manifest, args.patches, seed=1)

    report: dict = {
        "model": {
            "dir": str(model_dir),
            "name": name,
            "version": version,
            "family": manifest.get("model_family"),
            "preset": manifest.get("preset"),
            "input": manifest["input"],
        },
    }
    bare = bare_tensorflow(model_dir, images.shape, args.bare_runs)
    report["bare_tensorflow"] = bare
    flops = model_flops(model_dir, images.shape)
    report["flops_per_product"] = flops
    if flops:
        achieved = flops / (bare["p50_ms"] / 1000) / 1e9
        report["achieved_gflops_bare_p50"] = round(achieved, 2)
        report["fraction_of_peak"] = round(achieved / args.peak_gflops, 4)

    # Both servers run at once and the sequential products alternate between them (A, B, A, B, ...): the
    # machine's drift over minutes (this VM's run-to-run spread is +-10-30 %) then hits both alike. A model
    # whose product needs more memory than two servers can hold at once runs them one after the other
    # (--one-server-at-a-time), at the price of that drift compensation.
    kinds = [s for s in args.servers.split(",") if s]
    groups = [[k] for k in kinds] if args.one_server_at_a_time else [kinds]
    results: dict = {}
    for group in groups:
        results.update(serve_and_measure(group, models_root, request, args, work / name))
    for result in results.values():
        result["overhead_vs_bare_tf_p50_ms"] = round(result["latency"]["p50_ms"] - bare["p50_ms"], 3)
        result["overhead_vs_server_inference_p50_ms"] = round(
            result["latency"]["p50_ms"] - result["server_inference"]["p50_ms"], 3
        )
    if len(kinds) == 2:
        a, b = (results[k]["latency"]["p50_ms"] for k in kinds)
        report[f"p50_ratio_{kinds[0]}_over_{kinds[1]}"] = round(a / b, 4)
    report["servers"] = results
    return report


def markdown_table(models: list[dict]) -> str:
    """Sequential latency per model and server, one row each."""
    lines = [
        "| model | server | products | p50 ms | p90 ms | p99 ms | max ms | server inference p50 ms "
        "| bare TF p50 ms | GFLOP/product | server peak MB | bare TF peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    names = [m["model"]["name"] for m in models]
    for m in models:
        label = f"{m['model']['family']}:{m['model']['preset']}"
        if m["model"]["name"] != f"{m['model']['family']}-{m['model']['preset']}":
            label += f" ({m['model']['name']})"  # e.g. the same preset exported before and after a change
        if names.count(m["model"]["name"]) > 1:
            label += f" [{m['model']['dir']}]"  # the same name exported twice: the directory tells them apart
        gflop = f"{m['flops_per_product'] / 1e9:.2f}" if m.get("flops_per_product") else "n/a"
        for kind, r in m["servers"].items():
            lat = r["latency"]
            lines.append(
                f"| {label} | {kind} | {lat['n']} | {lat['p50_ms']:.1f} | {lat['p90_ms']:.1f} | "
                f"{lat['p99_ms']:.1f} | {lat['max_ms']:.1f} | {r['server_inference']['p50_ms']:.1f} | "
                f"{m['bare_tensorflow']['p50_ms']:.1f} | {gflop} | {r.get('peak_rss_mb') or 'n/a'} | "
                f"{m['bare_tensorflow'].get('peak_rss_mb', 'n/a')} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    machine = describe_machine()
    if args.peak_gflops is None:
        args.peak_gflops = machine["peak_gflops"]
    if not args.model_dir and not args.build:
        raise SystemExit("give at least one --model-dir or --build family:preset")
    work = Path(tempfile.mkdtemp(prefix="tfad-bench-"))
    model_dirs = [Path(d).resolve() for d in args.model_dir]
    for d in model_dirs:
        if not (d / "tfad_manifest.json").is_file():
            raise SystemExit(f"{d}: not an exported version directory (no tfad_manifest.json)")
    model_dirs += [build_model(spec, work, args.build_eval_products) for spec in args.build]
    report: dict = {
        "patches_per_product": args.patches,
        "machine": {**machine, "peak_gflops": args.peak_gflops},
        "models": [],
    }
    for index, d in enumerate(model_dirs):
        report["models"].append(measure_model(d, args, work, index))
        print(markdown_table(report["models"][-1:]), flush=True)  # each model's rows as soon as measured
    text = json.dumps(report, indent=2)
    print(text)
    print(markdown_table(report["models"]))
    if args.json_out:
        Path(args.json_out).write_text(text)
    sustained_errors = sum(
        s.get("sustained", {}).get("errors", 0) for m in report["models"] for s in m["servers"].values()
    )
    return 1 if sustained_errors else 0


if __name__ == "__main__":
    sys.exit(main())
