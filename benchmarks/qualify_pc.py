"""Qualify a line PC: does each family's line model give every verdict within the machine cycle here?

A line integrator runs this once on the candidate PC (idle but for it). It prints the machine (CPU model,
clock, cores, AVX2 / AVX-512, float32 peak; benchmarks/machine.py), then for each model, served by the C++
server with production settings (``--cycle_budget_ms=450``, every other flag at its default):

1. sequential: ``--products`` 60-patch products one after another, client deadline 2 s (generous, to see
   the real latency): p50 / p99 client-side latency, REJECT_INCOMPLETE counted apart;
2. load: ``--stations`` concurrent stations x ``--rate-hz`` products/s each for ``--minutes``, client
   deadline 500 ms (the machine cycle): verdicts inside the 450 ms budget, REJECT_INCOMPLETE, late
   verdicts and errors;
3. ramp: total rates ``--ramp-rates`` (products/s over all stations) for ``--ramp-seconds`` each, stopping
   at the first rate with any verdict that is not a complete one inside the budget, or whose stations
   could not send at that rate (they wait for each reply, so a slow server stretches the step: a step
   holds its rate when they sent >= 97 % of it); the last rate that passed is the highest sustained rate
   this PC holds (the full line rate is 8/s);
4. the model's FLOPs per product and the FLOP/s the bare TensorFlow run achieves against the peak.

Every request asks for ``--heatmaps`` (default ``none``: verdicts and scores only). A line whose firmware
asks for heatmaps qualifies with ``all``, the worst case: a PNG per patch, which is also what ``rejected``
costs for a product whose every patch is rejected. With ``rejected``, what the server encodes depends on the
model's verdicts on the benchmark's noise patches, not on the line's reject rate; the report's
``heatmaps_per_product`` says how many heatmaps a product got back (the table's model column too, when
any did).

PASS for a model: sequential p99 <= 450 ms with no gRPC error, and the load had 0 REJECT_INCOMPLETE,
0 errors, every verdict inside 450 ms and its rate held. Exit 0 when every model passes, 1 otherwise, 2 on
usage errors.

Models: ``--build family:preset`` (repeatable; 1 training step on generated vials, calibrated, exported;
latency does not depend on training) and ``--model-dir`` (repeatable; exported version directories).
With neither, the models README recommends for a slow line PC are built (``make qualify-pc``):
``embedding:line-fast``, ``supersimplenet:line-fast`` (unsupervised: the generated vials have no labelled
defects to train the supervised regime on; give its real export with ``--model-dir``) and
``resganad:line-cpu``.

    .venv/bin/python benchmarks/qualify_pc.py --json-out qualify.json
    .venv/bin/python benchmarks/qualify_pc.py --model-dir savedmodels/vials/3 --json-out qualify.json

A full run takes an estimated 16 min per model (10 min load, up to 4 min ramp, the sequential products, the
FLOP count and bare run) plus the builds: about 50 min for the default three. The clients run on the same PC
over loopback and take some CPU from the server, so the figures are slightly pessimistic for stations sending
over the network.
docs/performance.md, "Qualifying a line PC", explains the columns.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
import latency  # noqa: E402  (model building, server start-up, requests and loads shared with latency.py)
from machine import describe_machine  # noqa: E402

BUDGET_MS = 450  # the C++ server's default --cycle_budget_ms: verdict time on the line
LINE_DEADLINE_MS = 500  # the machine cycle: the stations' gRPC deadline
LINE_RATE_HZ = 8.0  # the full line's products per second
# The stations are closed-loop clients (each waits for its reply before the next product), so a server that
# cannot keep up stretches a step instead of queueing more: a step holds its rate only if the products sent
# per second reached this share of it.
RATE_KEPT_SHARE = 0.97
# README's "Which model for a slow line PC": the families' defaults sized for the slowest PC kind
DEFAULT_BUILDS = ["embedding:line-fast", "supersimplenet:line-fast", "resganad:line-cpu"]
COMPLETE_VERDICTS = ("ACCEPT", "REJECT")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line; defaults are the qualification issue 13 asks for."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--build",
        action="append",
        default=[],
        help=f"family:preset to build and qualify (repeatable; default {' '.join(DEFAULT_BUILDS)} "
        "when neither --build nor --model-dir is given)",
    )
    p.add_argument(
        "--model-dir", action="append", default=[], help="an exported version directory (repeatable)"
    )
    p.add_argument("--products", type=int, default=200, help="sequential products (>= 200 for a p99)")
    p.add_argument(
        "--heatmaps",
        choices=("none", "rejected", "all"),
        default="none",
        help="the heatmap mode of every request: the line's own; 'all' is the worst case, a PNG per patch "
        "(also what 'rejected' costs for a product whose every patch is rejected)",
    )
    p.add_argument("--patches", type=int, default=60, help="patches per product")
    p.add_argument("--stations", type=int, default=4, help="concurrent stations in the load and the ramp")
    p.add_argument("--rate-hz", type=float, default=1.0, help="products per second per station (load)")
    p.add_argument("--minutes", type=float, default=10.0, help="duration of the load")
    p.add_argument(
        "--ramp-rates",
        default="2,4,6,8",
        help="total products/s of the ramp's steps, comma-separated ('' = none)",
    )
    p.add_argument("--ramp-seconds", type=float, default=60.0, help="duration of each ramp step")
    p.add_argument(
        "--sequential-deadline-ms", type=int, default=2000, help="client deadline of the sequential products"
    )
    p.add_argument("--bare-runs", type=int, default=10, help="bare TensorFlow runs (achieved FLOP/s)")
    p.add_argument("--warmup-calls", type=int, default=5, help="untimed products before the sequential ones")
    p.add_argument("--cc-binary", default=str(REPO / "bazel-bin/cc/tfad_server"), help="C++ server binary")
    p.add_argument("--startup-timeout-s", type=float, default=300.0, help="wait this long for the server")
    p.add_argument(
        "--build-eval-products", type=int, default=4, help="--build: calibration products (20 patches each)"
    )
    p.add_argument(
        "--cc-flag",
        action="append",
        default=[],
        help="a C++ server flag to qualify with, e.g. --cc-flag=--inference_threads=2 (repeatable; the "
        "report's server_command lists them): sizing a PC for several stations (docs/performance.md)",
    )
    p.add_argument("--json-out", default="", help="also write the JSON report here")
    args = p.parse_args(argv)
    if not args.build and not args.model_dir:
        args.build = list(DEFAULT_BUILDS)
    try:
        args.ramp = [float(r) for r in args.ramp_rates.split(",") if r.strip()]
    except ValueError:
        p.error("--ramp-rates: comma-separated numbers, e.g. 2,4,6,8")
    if args.products < 1 or args.stations < 1 or args.patches < 1:
        p.error("--products, --stations and --patches must be >= 1")
    if args.minutes <= 0 or args.rate_hz <= 0 or args.ramp_seconds <= 0 or any(r <= 0 for r in args.ramp):
        p.error("--minutes, --rate-hz, --ramp-seconds and the ramp rates must be > 0")
    return args


def server_args(args: argparse.Namespace) -> argparse.Namespace:
    """What latency.start_server reads: the C++ server as on a line PC (production budget, default flags)."""
    threads = [f.split("=", 1)[1] for f in args.cc_flag if f.startswith("--inference_threads=")]
    return argparse.Namespace(
        cc_binary=args.cc_binary,
        inference_threads=threads[-1] if threads else 1,  # the server's default unless --cc-flag sets it
        cc_flag=[f for f in args.cc_flag if not f.startswith("--inference_threads=")],
        warmup_batch=0,  # = --patches: the server's advice is the usual product size (default 60)
        patches=args.patches,
        cycle_budget_ms=BUDGET_MS,
        production_flags=True,  # no benchmark-only flags (request log off, deep queue)
        startup_timeout_s=args.startup_timeout_s,
    )


def classify(samples: list[tuple[float, str]]) -> dict:
    """Counts of a load's requests: complete verdicts inside the budget, late ones, incomplete, errors."""
    in_budget = sum(1 for ms, key in samples if key in COMPLETE_VERDICTS and ms <= BUDGET_MS)
    late = sum(1 for ms, key in samples if key in COMPLETE_VERDICTS and ms > BUDGET_MS)
    incomplete = sum(1 for _, key in samples if key == "REJECT_INCOMPLETE")
    errors = sum(1 for _, key in samples if key.startswith("error"))
    return {
        "in_budget": in_budget,
        "late": late,
        "reject_incomplete": incomplete,
        "errors": errors,
        # Every product must get a complete verdict in time: an incomplete one is a rejected good product.
        "all_in_budget": bool(samples) and in_budget == len(samples),
    }


def load(target: str, request, stations: int, total_rate_hz: float, seconds: float) -> dict:
    """``stations`` stations sending ``total_rate_hz`` products/s between them for ``seconds``, each with the
    production deadline (latency.sustained; evenly staggered, so arrivals are spaced 1/total_rate_hz)."""
    per_station_hz = total_rate_hz / stations
    ns = argparse.Namespace(
        sustained_minutes=seconds / 60.0,
        stations=stations,
        rate_hz=per_station_hz,
        # latency.sustained bounds the requests; here the duration alone decides.
        max_requests=stations * (math.ceil(seconds * per_station_hz) + 1),
        deadline_ms=LINE_DEADLINE_MS,
    )
    samples: list[tuple[float, str]] = []
    result = latency.sustained(target, request, ns, samples)
    result["total_rate_hz"] = total_rate_hz
    result["achieved_products_per_s"] = round(result["requests"] / max(result["wall_s"], 1e-9), 2)
    result["rate_kept"] = rate_kept(result["achieved_products_per_s"], total_rate_hz)
    return {**result, **classify(samples)}


def rate_kept(sent_per_s: float, asked_per_s: float) -> bool:
    """Whether the stations sent at the rate asked for (at least :data:`RATE_KEPT_SHARE` of it)."""
    return sent_per_s >= RATE_KEPT_SHARE * asked_per_s


def step_held(step: dict) -> bool:
    """A load or ramp step passed: every product got a complete verdict in time, at the rate asked for."""
    return bool(step["all_in_budget"] and step["rate_kept"])


def ramp(target: str, request, stations: int, rates: list[float], seconds: float) -> dict:
    """Rising total rates until the first step with a verdict that is not complete and in time."""
    steps: list[dict] = []
    highest = None
    for rate in rates:
        print(f"  ramp: {rate:g} products/s for {seconds:g} s ...", flush=True)
        step = load(target, request, stations, rate, seconds)
        steps.append(step)
        if not step_held(step):
            print(f"  ramp: {rate:g} products/s not held (sent {step['achieved_products_per_s']:g}/s, "
                  f"{step['in_budget']} of {step['requests']} in budget)", flush=True)  # fmt: skip
            break
        highest = rate
    return {
        "rates": rates,
        "seconds_per_step": seconds,
        "highest_in_budget_rate_hz": highest,  # None: even the first rate failed
        "reached_line_rate": highest is not None and highest >= LINE_RATE_HZ,
        "steps": steps,
    }


def qualify_model(model_dir: Path, args: argparse.Namespace, work: Path, index: int = 0) -> dict:
    """Bare run and FLOPs (child processes), then the sequential products, the load and the ramp through one
    C++ server; the model's PASS / FAIL (``index``: its place in the run, which keeps two exports of the same
    model name apart)."""
    from tfad.serving.client import InspectionClient

    manifest = json.loads((model_dir / "tfad_manifest.json").read_text())
    name, version = manifest["name"], int(manifest["version"])
    label = f"{manifest.get('model_family')}:{manifest.get('preset')}"
    models_root = work / f"models-{index}-{name}"  # the server sees this model only
    (models_root / name).mkdir(parents=True)
    os.symlink(model_dir, models_root / name / str(version))
    images, request = latency.product_request(manifest, args.patches, seed=1, heatmaps=args.heatmaps)

    # Before the server starts: both run in child processes whose memory is gone when they end.
    print(f"{label}: FLOP count and {args.bare_runs} bare TensorFlow runs ...", flush=True)
    bare = latency.bare_tensorflow(model_dir, images.shape, args.bare_runs)
    flops = latency.model_flops(model_dir, images.shape)
    peak = args.machine["peak_gflops"]
    achieved = flops / (bare["p50_ms"] / 1000) / 1e9 if flops and bare.get("p50_ms") else None

    proc, log, target = latency.start_server("cc", models_root, server_args(args), work / f"{name}-cc.log")
    try:
        with InspectionClient(target) as client:
            client.wait_ready(30)
            print(f"{label}: {args.products} sequential products ...", flush=True)
            sequential = latency.interleaved(
                {"cc": client}, request, args.products, args.sequential_deadline_ms / 1000, args.warmup_calls
            )["cc"]
            # how many PNGs the server encodes per product: with "rejected" it depends on the verdicts
            returned = client.inspect_request(request, timeout_s=args.sequential_deadline_ms / 1000)
            heatmaps_returned = sum(1 for p in returned.patches if p.heatmap_png)
        rate = args.stations * args.rate_hz
        print(
            f"{label}: {args.stations} stations x {args.rate_hz:g}/s for {args.minutes:g} min ...", flush=True
        )
        line_load = load(target, request, args.stations, rate, args.minutes * 60.0)
        ramped = ramp(target, request, args.stations, args.ramp, args.ramp_seconds) if args.ramp else None
        server_peak_mb = latency.peak_rss_mb(proc.pid)
        server_cmd = [str(a) for a in proc.args]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()

    seq_incomplete = sequential["verdicts"].get("REJECT_INCOMPLETE", 0)
    seq_pass = (
        sequential["latency"].get("n", 0) > 0
        and sequential["latency"]["p99_ms"] <= BUDGET_MS
        and sequential["errors"] == 0  # a product with no verdict at all cannot count as in time
    )
    load_pass = step_held(line_load) and line_load["reject_incomplete"] == 0 and line_load["errors"] == 0
    return {
        "model": {
            "dir": str(model_dir),
            "name": name,
            "version": version,
            "label": label,
            "family": manifest.get("model_family"),
            "preset": manifest.get("preset"),
            "input": manifest["input"],
        },
        "heatmaps_per_product": heatmaps_returned,
        "server_command": server_cmd,
        "server_peak_rss_mb": server_peak_mb,
        "sequential": {
            **sequential,
            "deadline_ms": args.sequential_deadline_ms,
            "reject_incomplete": seq_incomplete,
        },
        "load": line_load,
        "ramp": ramped,
        "bare_tensorflow": bare,
        "flops_per_product": flops,
        "achieved_gflops_bare_p50": None if achieved is None else round(achieved, 2),
        "fraction_of_peak": None if achieved is None else round(achieved / peak, 4),
        "pass_sequential": seq_pass,
        "pass_load": load_pass,
        "pass": seq_pass and load_pass,
    }


def machine_at_start() -> dict:
    """:func:`machine.describe_machine` plus the 1-minute load average now, which :func:`machine_line` prints:
    a busy PC gives pessimistic figures, and the report makes that visible."""
    return {**describe_machine(), "load_average_1min": round(os.getloadavg()[0], 2)}


def machine_line(machine: dict) -> str:
    """One line naming the machine: AVX2 / AVX-512 from the CPU flags, the peak from machine.py."""
    limit = machine["onednn_max_cpu_isa"]
    kernels_limit = machine.get("tfad_kernels_max_isa")
    return (
        f"machine: {machine['cpu']} ({machine['cpu_id']}), {machine['cores']} cores, "
        f"{machine['clock_ghz']} GHz, "
        f"AVX2 {'yes' if machine['avx2'] else 'no'}, AVX-512 {'yes' if machine['avx512f'] else 'no'}"
        + (f" (oneDNN limited by ONEDNN_MAX_CPU_ISA={limit})" if limit else "")
        + (f" (tfad's kernels limited by TFAD_KERNELS_MAX_ISA={kernels_limit})" if kernels_limit else "")
        + ", "
        f"float32 peak {machine['peak_gflops']} GFLOP/s ({machine['peak_formula']}); "
        f"load average at start {machine['load_average_1min']}"
    )


def table(models: list[dict]) -> str:
    """The PASS / FAIL table, one row per model."""
    lines = [
        "| model | seq n | seq p50 ms | seq p99 ms | seq incomplete | load products | in budget | incomplete "
        "| late | errors | load p99 ms | max in-budget rate /s | GFLOP/product | achieved GFLOP/s (% peak) "
        "| result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in models:
        seq, ld, rp = m["sequential"], m["load"], m["ramp"]
        lat = seq["latency"]
        if rp is None:
            highest = "not run"
        elif rp["highest_in_budget_rate_hz"] is None:
            highest = f"< {rp['rates'][0]:g}"
        else:
            highest = f"{rp['highest_in_budget_rate_hz']:g}"
            every_step = len(rp["steps"]) == len(rp["rates"]) and step_held(rp["steps"][-1])
            highest += " (all steps)" if every_step else ""
        flops = f"{m['flops_per_product'] / 1e9:.2f}" if m["flops_per_product"] else "n/a"
        achieved = (
            f"{m['achieved_gflops_bare_p50']:.1f} ({100 * m['fraction_of_peak']:.1f} %)"
            if m["achieved_gflops_bare_p50"] is not None
            else "n/a"
        )
        heatmaps = m.get("heatmaps_per_product")
        label = m["model"]["label"] + (f" ({heatmaps} heatmaps/product)" if heatmaps else "")
        lines.append(
            f"| {label} | {lat.get('n', 0)} | {lat.get('p50_ms', float('nan')):.1f} | "
            f"{lat.get('p99_ms', float('nan')):.1f} | {seq['reject_incomplete']} | {ld['requests']} | "
            f"{ld['in_budget']} | {ld['reject_incomplete']} | {ld['late']} | {ld['errors']} | "
            f"{ld['latency'].get('p99_ms', float('nan')):.1f} | {highest} | {flops} | {achieved} | "
            f"{'PASS' if m['pass'] else 'FAIL'} |"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Build or check the models, qualify each, print the JSON report and the table; the exit code."""
    model_dirs = [Path(d).resolve() for d in args.model_dir]
    for d in model_dirs:
        if not (d / "tfad_manifest.json").is_file():
            print(
                f"qualify_pc: {d}: not an exported version directory (no tfad_manifest.json)", file=sys.stderr
            )
            return 2
    if not Path(args.cc_binary).is_file():
        print(f"qualify_pc: no C++ server at {args.cc_binary} (make cc-build builds it)", file=sys.stderr)
        return 2
    print(machine_line(args.machine), flush=True)
    with tempfile.TemporaryDirectory(prefix="tfad-qualify-") as tmp:
        work = Path(tmp)
        for spec in args.build:
            print(
                f"building {spec} (1 training step on generated vials, calibrated, exported) ...", flush=True
            )
            model_dirs.append(latency.build_model(spec, work, args.build_eval_products))
        models = []
        for index, d in enumerate(model_dirs):
            models.append(qualify_model(d, args, work, index))
            print(table(models[-1:]), flush=True)  # each model's row as soon as it is measured
    report = {
        "machine": args.machine,
        "settings": {
            "patches_per_product": args.patches,
            "heatmaps": args.heatmaps,
            "cycle_budget_ms": BUDGET_MS,
            "load_deadline_ms": LINE_DEADLINE_MS,
            "sequential_products": args.products,
            "stations": args.stations,
            "rate_hz_per_station": args.rate_hz,
            "minutes": args.minutes,
            "ramp_rates_total_hz": args.ramp,
            "ramp_seconds": args.ramp_seconds,
            "line_rate_hz": LINE_RATE_HZ,
        },
        "models": models,
        "pass": all(m["pass"] for m in models),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text)
    print(f"\n{machine_line(args.machine)}")
    print(
        f"load: {args.stations} stations x {args.rate_hz:g} products/s for {args.minutes:g} min, "
        f"{LINE_DEADLINE_MS} ms deadline; cycle budget {BUDGET_MS} ms; {args.patches} patches/product, "
        f"heatmaps {args.heatmaps}\n"
    )
    print(table(models))
    passed = sum(m["pass"] for m in models)
    print(f"\n{'PASS' if report['pass'] else 'FAIL'}: {passed} of {len(models)} models pass")
    return 0 if report["pass"] else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args.machine = machine_at_start()
    try:
        return run(args)
    except KeyboardInterrupt:
        # The server is stopped by then (finally), but latency.sustained's station threads keep their
        # schedule until the load's end: leave without waiting for them.
        print("qualify_pc: interrupted", file=sys.stderr, flush=True)
        os._exit(130)


if __name__ == "__main__":
    sys.exit(main())
