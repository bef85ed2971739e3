"""Two exports of one model, before and after a change to its serving graph, side by side in one C++ server.

    ONEDNN_MAX_CPU_ISA=AVX2 TFAD_KERNELS_MAX_ISA=avx2 .venv/bin/python benchmarks/export_ab.py \
        --pair BEFORE/supersimplenet-line-fast/1 AFTER/supersimplenet-line-fast/1 --products 40 \
        --json-out bench_out/export_ab.json

A change to how a family builds its serving function (a folded layer, another order of products) must give the
same outputs and should be faster. For each ``--pair BEFORE AFTER`` (two version directories, e.g. the same
trained run exported at two commits), one C++ server serves both, under the names ``<name>-before`` and
``<name>-after``. Sequential products alternate between them in the order A B B A, so the PC's drift hits both
alike. Reported: each side's server-reported inference and total p50, the median and range of the per-pair
ratios after / before, the server's time outside inference (total - inference: decoding, the acquisition
check, heatmap PNGs) with the median paired difference, and how far apart the two replies are (per-patch
scores, verdicts, and the heatmap PNGs' gray levels when ``--heatmaps all``). Exit status 1 when a pair's
verdicts differ, its scores differ by more than ``--score-tolerance`` (a NaN score differs from everything),
or, with ``--heatmaps all``, its heatmaps differ by more than ``--heatmap-tolerance`` gray levels or one side
sent none: a faster graph that answers differently is not the same model. Both sides get the same request (the
BEFORE export's regions and acquisition check: put the export with the check first); the JSON report is
rewritten after each pair, so a later pair's failure keeps the earlier ones.
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
    p.add_argument(
        "--heatmap-tolerance", type=int, default=1,
        help="largest gray-level difference of the heatmaps allowed (1: float rounding at a level's edge)",
    )  # fmt: skip
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


def addressed(request, model_name: str):
    """A copy of the InspectRequest ``request`` for the model ``model_name``."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.model_name = model_name
    return copy


def serve_and_time(root: Path, requests: dict, order: list[str], args: argparse.Namespace, log: Path):
    """One C++ server (``args.cc_binary``, ``args.cc_flag``) on the models under ``root``: each request of
    ``requests`` sent 3 times untimed (warm-up), then the keys of ``order`` one after another, each timed.
    ``(first replies, {key: {"inference": [ms], "total": [ms]}})``; RuntimeError on an incomplete verdict,
    whose timings are not the product's cost."""
    from tfad.serving.client import InspectionClient

    server_args = argparse.Namespace(
        cc_binary=args.cc_binary, inference_threads=1, warmup_batch=args.patches, patches=args.patches,
        cycle_budget_ms=60000, cc_flag=getattr(args, "cc_flag", []), startup_timeout_s=300,
    )  # fmt: skip
    proc, log_file, target = latency.start_server("cc", root, server_args, log)
    timings = {key: {"inference": [], "total": []} for key in requests}

    def send(key: str):
        reply = client.inspect_request(requests[key], timeout_s=60)
        if reply.verdict == "REJECT_INCOMPLETE":
            raise RuntimeError(f"{key}: incomplete verdict: {reply.reply.incomplete_detail}")
        return reply

    try:
        with InspectionClient(target) as client:
            client.wait_ready(120)
            first = {key: [send(key) for _ in range(3)][0] for key in requests}
            for key in order:
                reply = send(key)
                timings[key]["inference"].append(reply.timings_ms["inference"])
                timings[key]["total"].append(reply.timings_ms["total"])
    finally:
        try:
            proc.terminate()
            proc.wait(timeout=30)
        finally:
            log_file.close()
    return first, timings


def _gray_levels(png: bytes) -> np.ndarray:
    import cv2

    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED).astype(np.int16)


def differences(before, after) -> dict:
    """How far two InspectResults of the same request are apart; a NaN score on either side makes
    ``max_abs_score`` NaN (never within a tolerance)."""
    pairs = list(zip(before.patches, after.patches, strict=True))
    scores = np.abs(np.array([a.score for _, a in pairs], np.float64) - [b.score for b, _ in pairs])
    out = {
        "max_abs_score": float(np.max(scores)) if len(scores) else 0.0,  # np.max propagates a NaN
        "patch_verdicts_differing": sum(a.rejected != b.rejected for b, a in pairs),
        "product_verdicts": [before.verdict, after.verdict],
    }
    sent = [(bool(b.heatmap_png), bool(a.heatmap_png)) for b, a in pairs]
    if any(b or a for b, a in sent):
        out["heatmaps_missing"] = sum(not (b and a) for b, a in sent)  # patches where a side sent none
        out["max_abs_heatmap_gray"] = max(
            (int(np.abs(_gray_levels(a.heatmap_png) - _gray_levels(b.heatmap_png)).max())
             for b, a in pairs if b.heatmap_png and a.heatmap_png),
            default=0,
        )  # fmt: skip
    return out


def measure(pair: list[Path], args: argparse.Namespace, work: Path) -> dict:
    """One C++ server serving both sides of ``pair``; ``args.products`` A B B A pairs."""
    manifests = {
        side: json.loads((d / "tfad_manifest.json").read_text()) for side, d in zip(SIDES, pair, strict=True)
    }
    before_input, after_input = (manifests[side]["input"] for side in SIDES)
    if before_input != after_input:
        raise SystemExit(f"{pair[0]} and {pair[1]} take different inputs: {before_input}, {after_input}")
    root = Path(tempfile.mkdtemp(dir=work, prefix="models-"))
    # one request for both sides (the BEFORE export's regions), so that the replies answer the same question
    _, request = latency.product_request(manifests["before"], args.patches, seed=1, heatmaps=args.heatmaps)
    requests = {}
    for side, model_dir in zip(SIDES, pair, strict=True):
        manifest = dict(manifests[side], name=f"{manifests[side]['name']}-{side}")
        linked_copy(model_dir, root, manifest)
        requests[side] = addressed(request, manifest["name"])
    order: list[str] = []
    alternate(order.append, SIDES, args.products)
    first, timings = serve_and_time(root, requests, order, args, root.with_suffix(".log"))
    after, before = timings["after"]["inference"], timings["before"]["inference"]
    ratios = [a / b for a, b in zip(after, before, strict=True)]
    # the server's own work (decode, checks, PNGs, reply) = total - inference, per product and paired
    outside = {
        s: [tot - inf for tot, inf in zip(t["total"], t["inference"], strict=True)]
        for s, t in timings.items()
    }
    return {
        "pair": [str(d) for d in pair],
        "label": manifests["after"]["name"],
        "heatmaps": args.heatmaps,
        "inference_p50_ms": {s: round(statistics.median(t["inference"]), 2) for s, t in timings.items()},
        "server_total_p50_ms": {s: round(statistics.median(t["total"]), 2) for s, t in timings.items()},
        "paired_inference_ratio_after_over_before": round(statistics.median(ratios), 4),
        "paired_ratio_range": [round(min(ratios), 4), round(max(ratios), 4)],
        "outside_inference_p50_ms": {s: round(statistics.median(v), 2) for s, v in outside.items()},
        "paired_outside_inference_difference_ms": round(
            statistics.median(a - b for a, b in zip(outside["after"], outside["before"], strict=True)), 2
        ),
        "differences": differences(first["before"], first["after"]),
        "timings": timings,
    }


def disagreements(result: dict, score_tolerance: float, heatmap_tolerance: int) -> list[str]:
    """What makes the two sides' answers differ (empty when they agree): verdicts, scores beyond
    ``score_tolerance`` (NaN included), heatmaps beyond ``heatmap_tolerance`` gray levels or missing."""
    d = result["differences"]
    found = []
    if d["product_verdicts"][0] != d["product_verdicts"][1] or d["patch_verdicts_differing"]:
        found.append(f"verdicts ({d['patch_verdicts_differing']} patches, products {d['product_verdicts']})")
    if not d["max_abs_score"] <= score_tolerance:  # NaN compares false
        found.append(f"scores (max |d| {d['max_abs_score']:.3g} > {score_tolerance:g})")
    if d.get("heatmaps_missing"):
        found.append(f"heatmaps missing for {d['heatmaps_missing']} patches")
    if d.get("max_abs_heatmap_gray", 0) > heatmap_tolerance:
        found.append(f"heatmaps ({d['max_abs_heatmap_gray']} gray levels > {heatmap_tolerance})")
    return found


def markdown(results: list[dict]) -> str:
    """The table of every pair."""
    lines = [
        "| model (heatmaps) | inference p50 ms: before / after | paired ratio after / before (range) "
        "| server total p50 ms: before / after | outside inference p50 ms: before / after (paired after - "
        "before) | max \\|d score\\| | patch verdicts differing | max heatmap gray levels apart |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        inf, tot, d = r["inference_p50_ms"], r["server_total_p50_ms"], r["differences"]
        out = r["outside_inference_p50_ms"]
        low, high = r["paired_ratio_range"]
        lines.append(
            f"| {r['label']} ({r['heatmaps']}) | {inf['before']:.1f} / {inf['after']:.1f} | "
            f"{r['paired_inference_ratio_after_over_before']:.3f} ({low:.2f}-{high:.2f}) | "
            f"{tot['before']:.1f} / {tot['after']:.1f} | {out['before']:.2f} / {out['after']:.2f} "
            f"({r['paired_outside_inference_difference_ms']:+.2f}) | {d['max_abs_score']:.2e} | "
            f"{d['patch_verdicts_differing']} | {d.get('max_abs_heatmap_gray', '-')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure every pair, print the table (and write the JSON report); 1 when a pair disagrees."""
    args = parse_args(argv)
    machine = machine_at_start()
    print(machine_line(machine), flush=True)
    results, failing = [], []
    with tempfile.TemporaryDirectory(prefix="tfad-export-ab-") as scratch:
        for pair in args.pair:
            print(f"{pair[0]} / {pair[1]}: {args.products} A B B A pairs ...", flush=True)
            results.append(measure(pair, args, Path(scratch)))
            print(markdown(results[-1:]), flush=True)
            found = disagreements(results[-1], args.score_tolerance, args.heatmap_tolerance)
            if found:
                failing.append(f"{pair[0]} / {pair[1]}: {'; '.join(found)}")
            if args.json_out:  # after each pair: a later pair's failure keeps the earlier ones
                args.json_out.parent.mkdir(parents=True, exist_ok=True)
                args.json_out.write_text(json.dumps({"machine": machine, "models": results}, indent=1))
    print("\n" + markdown(results))
    for line in failing:
        print(f"the two exports answer differently: {line}", file=sys.stderr)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
