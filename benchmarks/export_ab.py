"""Two exports of one model, before and after a change to its serving graph, side by side in one C++ server.

    ONEDNN_MAX_CPU_ISA=AVX2 TFAD_KERNELS_MAX_ISA=avx2 .venv/bin/python benchmarks/export_ab.py \
        --pair BEFORE/supersimplenet-line-fast/1 AFTER/supersimplenet-line-fast/1 --products 40 \
        --json-out bench_out/export_ab.json

A change to how a family builds its serving function (a folded layer, another order of products) must give the
same outputs and should be faster. For each ``--pair BEFORE AFTER`` (two version directories, e.g. the same
trained run exported at two commits), one C++ server serves both, under the names ``<name>-before`` and
``<name>-after``. Sequential products alternate between them in the order A B B A, so the PC's drift hits
both alike. Reported: each side's server-reported inference and total p50, the median and range of the
per-pair ratios after / before, and how far apart the two replies are (per-patch scores, verdicts, and the
heatmap PNGs' gray levels when ``--heatmaps all``). Exit status 1 when a pair's verdicts differ, or its scores
differ by more than ``--score-tolerance``: a faster graph that answers differently is not the same model.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency  # noqa: E402
from qualify_pc import machine_at_start, machine_line  # noqa: E402

SIDES = ("before", "after")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--pair", nargs=2, action="append", default=[], type=Path, metavar=("BEFORE", "AFTER"),
        help="two exported version directories of one model (repeatable)",
    )  # fmt: skip
    p.add_argument("--products", type=int, default=40, help="A B B A pairs of timed products")
    p.add_argument("--patches", type=int, default=60, help="patches per product")
    p.add_argument("--heatmaps", choices=("none", "all"), default="none", help="the requests' heatmap mode")
    p.add_argument(
        "--score-tolerance", type=float, default=1e-4, help="largest |score after - score before| allowed"
    )
    p.add_argument("--cc-binary", default=str(latency.REPO / "bazel-bin/cc/tfad_server"))
    p.add_argument("--cc-flag", action="append", default=[], help="a flag passed to the C++ server")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if not args.pair:
        p.error("give at least one --pair BEFORE AFTER")
    if args.products < 2 or args.patches < 1:
        p.error("--products must be at least 2 and --patches positive")
    for pair in args.pair:
        for model_dir in pair:
            if not (model_dir / "tfad_manifest.json").is_file():
                p.error(f"{model_dir}: not an exported version directory (no tfad_manifest.json)")
    return args


def linked_copy(model_dir: Path, root: Path, manifest: dict) -> None:
    """``model_dir``'s files symlinked under ``root/<manifest name>/<version>``, with ``manifest`` as its
    manifest: the same SavedModel served under another name (or with another manifest)."""
    version_dir = root / manifest["name"] / str(manifest["version"])
    version_dir.mkdir(parents=True)
    for item in model_dir.iterdir():
        if item.name != "tfad_manifest.json":
            (version_dir / item.name).symlink_to(item.resolve())
    (version_dir / "tfad_manifest.json").write_text(json.dumps(manifest, indent=1))


def alternate(timed, variants: tuple[str, ...], products: int) -> None:
    """``timed(variant)`` for ``products`` rounds, in the order A B, B A, A B, ...: drift hits all alike."""
    for i in range(products):
        for variant in variants if i % 2 == 0 else variants[::-1]:
            timed(variant)


def _gray_levels(png: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).astype(np.int16)


def differences(before, after) -> dict:
    """How far two InspectResults of the same request are apart."""
    scores = [abs(a.score - b.score) for a, b in zip(after.patches, before.patches, strict=True)]
    verdicts = sum(a.rejected != b.rejected for a, b in zip(after.patches, before.patches, strict=True))
    out = {
        "max_abs_score": max(scores),
        "patch_verdicts_differing": verdicts,
        "product_verdicts": [before.verdict, after.verdict],
    }
    pngs = [(a.heatmap_png, b.heatmap_png) for a, b in zip(after.patches, before.patches, strict=True)]
    if all(a and b for a, b in pngs):
        out["max_abs_heatmap_gray"] = max(
            int(np.abs(_gray_levels(a) - _gray_levels(b)).max()) for a, b in pngs
        )
    return out


def measure(pair: list[Path], args: argparse.Namespace, work: Path) -> dict:
    """One C++ server serving both sides of ``pair``; ``args.products`` A B B A pairs."""
    from tfad.serving.client import InspectionClient

    manifests = {
        side: json.loads((d / "tfad_manifest.json").read_text()) for side, d in zip(SIDES, pair, strict=True)
    }
    before_input, after_input = (manifests[side]["input"] for side in SIDES)
    if before_input != after_input:
        raise SystemExit(f"{pair[0]} and {pair[1]} take different inputs: {before_input}, {after_input}")
    root = work / f"models-{len(list(work.iterdir()))}"
    requests = {}
    for side, model_dir in zip(SIDES, pair, strict=True):
        manifest = dict(manifests[side], name=f"{manifests[side]['name']}-{side}")
        linked_copy(model_dir, root, manifest)
        _, request = latency.product_request(manifest, args.patches, seed=1, heatmaps=args.heatmaps)
        request.model_name = manifest["name"]
        requests[side] = request
    server_args = argparse.Namespace(
        cc_binary=args.cc_binary, inference_threads=1, warmup_batch=args.patches, patches=args.patches,
        cycle_budget_ms=60000, cc_flag=args.cc_flag, startup_timeout_s=300,
    )  # fmt: skip
    proc, log, target = latency.start_server("cc", root, server_args, work / f"{root.name}.log")
    timings: dict[str, dict[str, list[float]]] = {s: {"inference": [], "total": []} for s in SIDES}
    try:
        with InspectionClient(target) as client:
            client.wait_ready(120)
            first = {}
            for side, request in requests.items():  # warm-up calls, untimed; the first reply is compared
                for _ in range(3):
                    first.setdefault(side, client.inspect_request(request, timeout_s=60))
                if first[side].verdict == "REJECT_INCOMPLETE":  # no scores to compare
                    raise RuntimeError(f"{side}: incomplete verdict: {first[side].reply.incomplete_detail}")

            def timed(side: str) -> None:
                reply = client.inspect_request(requests[side], timeout_s=60)
                if reply.verdict == "REJECT_INCOMPLETE":  # an incomplete product's timings are not its cost
                    raise RuntimeError(f"{side}: incomplete verdict: {reply.reply.incomplete_detail}")
                timings[side]["inference"].append(reply.timings_ms["inference"])
                timings[side]["total"].append(reply.timings_ms["total"])

            alternate(timed, SIDES, args.products)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    after, before = timings["after"]["inference"], timings["before"]["inference"]
    ratios = [a / b for a, b in zip(after, before, strict=True)]
    return {
        "pair": [str(d) for d in pair],
        "label": manifests["after"]["name"],
        "heatmaps": args.heatmaps,
        "inference_p50_ms": {s: round(statistics.median(t["inference"]), 2) for s, t in timings.items()},
        "server_total_p50_ms": {s: round(statistics.median(t["total"]), 2) for s, t in timings.items()},
        "paired_inference_ratio_after_over_before": round(statistics.median(ratios), 4),
        "paired_ratio_range": [round(min(ratios), 4), round(max(ratios), 4)],
        "differences": differences(first["before"], first["after"]),
        "timings": timings,
    }


def agrees(result: dict, tolerance: float) -> bool:
    """Whether the two sides gave the same verdicts and scores within ``tolerance``."""
    d = result["differences"]
    return (
        d["max_abs_score"] <= tolerance
        and d["patch_verdicts_differing"] == 0
        and d["product_verdicts"][0] == d["product_verdicts"][1]
    )


def markdown(results: list[dict]) -> str:
    """The table of every pair."""
    lines = [
        "| model (heatmaps) | inference p50 ms: before / after | paired ratio after / before (range) "
        "| server total p50 ms: before / after | max \\|d score\\| | patch verdicts differing |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        inf, tot, d = r["inference_p50_ms"], r["server_total_p50_ms"], r["differences"]
        low, high = r["paired_ratio_range"]
        lines.append(
            f"| {r['label']} ({r['heatmaps']}) | {inf['before']:.1f} / {inf['after']:.1f} | "
            f"{r['paired_inference_ratio_after_over_before']:.3f} ({low:.2f}-{high:.2f}) | "
            f"{tot['before']:.1f} / {tot['after']:.1f} | {d['max_abs_score']:.2e} | "
            f"{d['patch_verdicts_differing']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure every pair, print the table (and write the JSON report); 1 when a pair disagrees."""
    args = parse_args(argv)
    machine = machine_at_start()
    print(machine_line(machine), flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="tfad-export-ab-") as scratch:
        for pair in args.pair:
            print(f"{pair[0]} / {pair[1]}: {args.products} A B B A pairs ...", flush=True)
            results.append(measure(pair, args, Path(scratch)))
            print(markdown(results[-1:]), flush=True)
    print("\n" + markdown(results))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"machine": machine, "models": results}, indent=1))
    disagreeing = [r["label"] for r in results if not agrees(r, args.score_tolerance)]
    if disagreeing:
        print(f"the two exports answer differently: {', '.join(disagreeing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
