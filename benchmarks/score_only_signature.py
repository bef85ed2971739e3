"""What the export's score-only signature saves the C++ server on a product without heatmaps.

    ONEDNN_MAX_CPU_ISA=AVX2 TFAD_KERNELS_MAX_ISA=avx2 .venv/bin/python benchmarks/score_only_signature.py \
        --build resganad:line-cpu --build embedding:line-fast --products 40 --json-out bench_out/so.json

A TensorFlow session runs every output of a signature it calls (the call is one node of the graph), so before
exports had a ``score_only`` signature, a request without heatmaps paid for the heatmap's ops too. For each
model this script serves two copies of one export from one C++ server: ``with`` (the export as written, whose
manifest names its score-only signature) and ``without`` (the same files, the manifest's
``signature.score_only`` removed: the server then runs ``serving_default``, as it did for every export
before). Sequential 60-patch products without heatmaps alternate between the copies in the order A B B A,
so drift hits both alike; the table gives the server-reported inference and total times (receipt to reply
built) and the median of the per-pair ratios. A third column times the full signature with heatmaps (``all``),
for scale.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency  # noqa: E402
from export_ab import addressed, alternate, linked_copy, serve_and_time  # noqa: E402
from qualify_pc import machine_at_start, machine_line  # noqa: E402

VARIANTS = ("with", "without")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--model-dir", action="append", default=[], help="an exported version directory (repeatable)"
    )
    p.add_argument("--build", action="append", default=[], help="family:preset to build first (repeatable)")
    p.add_argument("--products", type=int, default=40, help="timed products per variant")
    p.add_argument("--patches", type=int, default=60, help="patches per product")
    p.add_argument("--cc-binary", default=str(latency.REPO / "bazel-bin/cc/tfad_server"))
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if args.products < 2 or args.patches < 1:
        p.error("--products must be at least 2 and --patches positive")
    if not (args.model_dir or args.build):
        p.error("give --model-dir or --build")
    return args


def model_pair(model_dir: Path, root: Path) -> dict[str, str]:
    """Under ``root``, the two copies of ``model_dir`` (symlinked files, own manifests); their model names."""
    manifest = json.loads((model_dir / "tfad_manifest.json").read_text())
    if not (manifest.get("signature") or {}).get("score_only"):
        raise SystemExit(f"{model_dir}: the manifest names no score-only signature (an export older than it)")
    names = {}
    for variant in VARIANTS:
        copy = json.loads(json.dumps(manifest))
        copy["name"] = f"{manifest['name']}-{variant}"
        if variant == "without":
            del copy["signature"]["score_only"]
        linked_copy(model_dir, root, copy)
        names[variant] = copy["name"]
    return names


def measure(model_dir: Path, args: argparse.Namespace, work: Path) -> dict:
    """One C++ server serving both copies; ``args.products`` A B B A pairs, then the heatmap run."""
    root = Path(tempfile.mkdtemp(dir=work, prefix="models-"))
    names = model_pair(model_dir, root)
    manifest = json.loads((model_dir / "tfad_manifest.json").read_text())
    _, plain = latency.product_request(manifest, args.patches, seed=1)
    _, with_heatmaps = latency.product_request(manifest, args.patches, seed=1, heatmaps="all")
    requests = {variant: addressed(plain, names[variant]) for variant in VARIANTS}
    requests["with, heatmaps all"] = addressed(with_heatmaps, names["with"])
    order: list[str] = []
    alternate(order.append, VARIANTS, args.products)
    order += ["with, heatmaps all"] * max(2, args.products // 4)
    _, timings = serve_and_time(root, requests, order, args, root.with_suffix(".log"))
    ratios = [
        a / b for a, b in zip(timings["with"]["inference"], timings["without"]["inference"], strict=True)
    ]
    return {
        "model_dir": str(model_dir),
        "label": f"{manifest.get('model_family')}:{manifest.get('preset')}",
        "inference_p50_ms": {v: round(statistics.median(t["inference"]), 2) for v, t in timings.items()},
        "server_total_p50_ms": {v: round(statistics.median(t["total"]), 2) for v, t in timings.items()},
        "paired_inference_ratio_with_over_without": round(statistics.median(ratios), 4),
        "paired_ratio_range": [round(min(ratios), 4), round(max(ratios), 4)],
        "timings": timings,
    }


def markdown(results: list[dict]) -> str:
    """The table of every model."""
    lines = [
        "| model | inference p50 ms: score-only / serving_default (no heatmaps) | paired ratio (range) "
        "| server total p50 ms: score-only / serving_default | with heatmaps all: inference / total |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        inf, tot = r["inference_p50_ms"], r["server_total_p50_ms"]
        low, high = r["paired_ratio_range"]
        lines.append(
            f"| {r['label']} | {inf['with']:.1f} / {inf['without']:.1f} | "
            f"{r['paired_inference_ratio_with_over_without']:.3f} ({low:.2f}-{high:.2f}) | "
            f"{tot['with']:.1f} / {tot['without']:.1f} | "
            f"{inf['with, heatmaps all']:.1f} / {tot['with, heatmaps all']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build what is asked, measure every model, print the table (and write the JSON report)."""
    args = parse_args(argv)
    machine = machine_at_start()
    print(machine_line(machine), flush=True)
    with tempfile.TemporaryDirectory(prefix="tfad-score-only-") as scratch:
        work = Path(scratch)
        model_dirs = [Path(d) for d in args.model_dir]
        for spec in args.build:
            print(
                f"building {spec} (1 training step on generated vials, calibrated, exported) ...", flush=True
            )
            model_dirs.append(latency.build_model(spec, work / "built"))
        results = []
        for model_dir in model_dirs:
            print(f"{model_dir}: {args.products} A B B A pairs ...", flush=True)
            runs = work / "runs"
            runs.mkdir(exist_ok=True)
            results.append(measure(model_dir, args, runs))
            print(markdown(results[-1:]), flush=True)
        shutil.rmtree(work / "runs", ignore_errors=True)
    print("\n" + markdown(results))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"machine": machine, "models": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
