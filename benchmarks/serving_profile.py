"""Where the time goes in a family's exported serving function: per-op times of one product, by op class.

For each model (``--build family:preset``, as benchmarks/latency.py builds them, or ``--model-dir``), in a
child process of its own:

1. the SavedModel is loaded into a TensorFlow session, as the C++ server's ``LoadSavedModel`` does (the same
   graph and grappler rewrites: fused convolutions, oneDNN kernels, function inlining);
2. one ``--patches`` product (random grey patches) is run through the signature ``--signature``
   (``serving_default``; ``score_only`` is what a request without heatmaps runs) ``--warmup`` times, then
   ``--runs`` times untraced (the wall-clock p50: what a product costs) and ``--runs`` times with a full
   trace;
3. every executed op's time (median over the traced runs) is summed by **op class** (dense convolution,
   depthwise convolution, matrix product, resize / pad / pool, element-wise, data movement, other) and by
   **scope** (the op's name scope, two levels deep, under the serving call: e.g. ``reconstructor_1/encoder_1``
   is ResGANAD's encoder, ``map/while`` its per-image SSIM score loop);
4. the FLOPs of the convolutions and matrix products, from their input and output shapes in the trace, give
   each class's achieved GFLOP/s against the machine's float32 peak (benchmarks/machine.py).

Ops run in parallel on TensorFlow's inter-op threads, so the summed op time exceeds the wall time; the
shares are of the summed op time. A traced run is slower than an untraced one (the tracer's overhead):
the shares, not the traced milliseconds, are the result.

    .venv/bin/python benchmarks/serving_profile.py --build embedding:line-fast --build resganad:line-cpu
    .venv/bin/python benchmarks/serving_profile.py --model-dir savedmodels/vials/3 --json-out profile.json

Prints a markdown report (classes, top scopes, top ops per model) and the JSON (also to --json-out).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency  # noqa: E402  (model building and child processes shared with latency.py)
from machine import describe_machine  # noqa: E402

#: op class -> regex on the executed op type (oneDNN's ``_Mkl``/``_MklNative`` and grappler's ``_Fused``
#: prefixes removed first). The first match wins.
OP_CLASSES: tuple[tuple[str, str], ...] = (
    ("depthwise convolution", r"^DepthwiseConv2dNative"),
    ("transposed convolution", r"^Conv2DBackpropInput"),
    ("dense convolution", r"^Conv[23]D"),
    ("matrix product", r"^(MatMul|BatchMatMul|Einsum)"),
    ("resize / pad / pool", r"^(Resize|ScaleAndTranslate|MirrorPad|Pad|AvgPool|MaxPool)"),
    (
        "data movement",
        r"^(ConcatV2|Concat|Split|SplitV|StridedSlice|Slice|Transpose|Reshape|GatherV2|Gather|Tile|"
        r"SpaceToDepth|DepthToSpace|Pack|Unpack|TensorList|Identity|Cast)",
    ),
    (
        "element-wise / reduction",
        r"^(Add|AddV2|AddN|Sub|Mul|RealDiv|Div|Square|Sqrt|Rsqrt|Abs|Relu|Relu6|Sigmoid|Tanh|Exp|Log|"
        r"Minimum|Maximum|Min|Max|Mean|Sum|Prod|BiasAdd|Neg|SquaredDifference|Select|Less|Greater|Erf|"
        r"Softmax|Clip|LeakyRelu|Elu|Selu)",
    ),
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", action="append", default=[], help="family:preset to build (1 training step)")
    p.add_argument("--model-dir", action="append", default=[], help="an exported version directory")
    p.add_argument("--patches", type=int, default=60, help="patches per product")
    p.add_argument("--runs", type=int, default=5, help="untraced and traced runs each")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    p.add_argument("--top", type=int, default=8, help="scopes and ops listed per model")
    p.add_argument("--json-out", type=Path, help="write the JSON report here too")
    p.add_argument(
        "--signature",
        default="serving_default",
        help="the signature to run: serving_default (with heatmaps) or score_only (what a request without "
        "heatmaps runs)",
    )
    args = p.parse_args(argv)
    if not args.build and not args.model_dir:
        p.error("give at least one --build family:preset or --model-dir")
    for name in ("patches", "runs", "warmup", "top"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


def op_class(op_type: str) -> str:
    """The :data:`OP_CLASSES` name of an executed op type (``"other"`` when none matches)."""
    base = re.sub(r"^(_MklNative|_Mkl|_)", "", op_type)
    base = re.sub(r"^Fused", "", base)
    for name, pattern in OP_CLASSES:
        if re.match(pattern, base):
            return name
    return "other"


def scope_of(node_name: str, depth: int = 2) -> str:
    """The name scope of a node, ``depth`` levels under the serving call's wrappers (``(top)`` for ops of
    the serving function itself)."""
    name = re.sub(r"^(StatefulPartitionedCall(_\d+)?/)+", "", node_name)
    name = re.sub(r"/body/_\d+/", "/", name)  # a while loop's body: keep the loop's own scope
    parts = name.split("/")[:-1]  # the last component is the op
    return "/".join(parts[:depth]) or "(top)"


def _shape(stats, slot: int) -> list[int] | None:
    if slot >= len(stats.output):
        return None
    dims = [d.size for d in stats.output[slot].tensor_description.shape.dim]
    return dims if dims and all(d >= 0 for d in dims) else None


def node_flops(op_type: str, node, shapes: dict[str, list[int]], output: list[int] | None) -> float | None:
    """FLOPs (multiply-add = 2) of a convolution or matrix product from its traced shapes; None otherwise."""
    cls = op_class(op_type)
    if output is None or cls not in (
        "dense convolution", "depthwise convolution", "transposed convolution", "matrix product"
    ):  # fmt: skip
        return None

    def input_shape(i: int) -> list[int] | None:
        if i >= len(node.input):
            return None
        name, _, slot = node.input[i].lstrip("^").partition(":")
        return shapes.get(f"{name}:{slot or 0}")

    out = float(np.prod(output))
    if cls == "dense convolution":
        kernel = input_shape(1)
        return 2 * out * kernel[0] * kernel[1] * kernel[2] if kernel and len(kernel) == 4 else None
    if cls == "depthwise convolution":
        kernel = input_shape(1)
        return 2 * out * kernel[0] * kernel[1] if kernel and len(kernel) == 4 else None
    if cls == "transposed convolution":  # inputs: output sizes, kernel [kh, kw, out, in], gradient
        kernel, source = input_shape(1), input_shape(2)
        if kernel and source and len(kernel) == 4:
            return 2 * float(np.prod(source)) * kernel[0] * kernel[1] * kernel[2]
        return None
    if "Einsum" in op_type:
        return None  # the contraction is in the equation; not counted
    a = input_shape(0)
    if not a or len(a) < 2:
        return None
    transposed = node.attr["transpose_a"].b or node.attr["adj_x"].b
    return 2 * out * (a[-2] if transposed else a[-1])


def profile_model(
    model_dir: str, patches: int, runs: int, warmup: int, signature_name: str = "serving_default"
) -> dict:
    """Per-node times (median over ``runs`` traced runs) and the untraced wall times of the export's
    signature ``signature_name`` (this process)."""
    import time

    import tensorflow as tf

    from tfad.scoring.native import register_ops_for

    register_ops_for(model_dir)
    tf.compat.v1.disable_eager_execution()
    manifest = json.loads((Path(model_dir) / "tfad_manifest.json").read_text())
    images, _ = latency.product_request(manifest, patches, seed=1)
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], model_dir)
        if signature_name not in meta.signature_def:
            raise KeyError(
                f"{model_dir} has no signature {signature_name!r} (it has {sorted(meta.signature_def)})"
            )
        signature = meta.signature_def[signature_name]
        feed = {signature.inputs["images"].name: images}
        fetch = {k: v.name for k, v in signature.outputs.items()}
        for _ in range(warmup):
            session.run(fetch, feed)
        wall = []
        for _ in range(runs):
            start = time.perf_counter()
            session.run(fetch, feed)
            wall.append((time.perf_counter() - start) * 1000)
        options = tf.compat.v1.RunOptions(
            trace_level=tf.compat.v1.RunOptions.FULL_TRACE, output_partition_graphs=True
        )
        per_node: dict[str, list[float]] = defaultdict(list)
        kinds: dict[str, str] = {}
        flops: dict[str, float | None] = {}
        traced = []
        for run in range(runs):
            metadata = tf.compat.v1.RunMetadata()
            start = time.perf_counter()
            session.run(fetch, feed, options=options, run_metadata=metadata)
            traced.append((time.perf_counter() - start) * 1000)
            stats = [s for device in metadata.step_stats.dev_stats for s in device.node_stats]
            counts: dict[str, int] = defaultdict(int)
            for s in stats:  # a loop body runs once per image: sum its executions within the run
                counts[s.node_name] += 1
            run_time: dict[str, float] = defaultdict(float)
            for s in stats:
                run_time[s.node_name] += (s.op_end_rel_micros - s.op_start_rel_micros) / 1000
            for name, ms in run_time.items():
                per_node[name].append(ms)
            if run == 0:
                shapes = {f"{s.node_name}:{i}": _shape(s, i) for s in stats for i in range(len(s.output))}
                nodes = {n.name: n for g in metadata.partition_graphs for n in g.node}
                for s in stats:
                    node = nodes.get(s.node_name)
                    op_type = node.op if node is not None else s.timeline_label.split("(")[0].split()[-1]
                    kinds[s.node_name] = op_type
                    if node is not None and s.node_name not in flops:
                        one = node_flops(op_type, node, shapes, _shape(s, 0))
                        flops[s.node_name] = None if one is None else one * counts[s.node_name]
    return {
        "wall": latency.percentiles(wall),
        "traced": latency.percentiles(traced),
        "nodes": [
            {"name": n, "op": kinds.get(n, "?"), "ms": float(np.median(t)), "flops": flops.get(n)}
            for n, t in per_node.items()
        ],
    }


def summarise(raw: dict, peak_gflops: float, top: int) -> dict:
    """Totals by op class and by scope, and the top ops, from :func:`profile_model`'s nodes."""
    nodes = raw["nodes"]
    total = sum(n["ms"] for n in nodes) or 1.0
    classes: dict[str, dict] = defaultdict(lambda: {"ms": 0.0, "flops": 0.0, "counted_ms": 0.0})
    scopes: dict[str, float] = defaultdict(float)
    for n in nodes:
        c = classes[op_class(n["op"])]
        c["ms"] += n["ms"]
        if n["flops"]:
            c["flops"] += n["flops"]
            c["counted_ms"] += n["ms"]
        scopes[scope_of(n["name"])] += n["ms"]
    class_rows = []
    for name, c in sorted(classes.items(), key=lambda kv: -kv[1]["ms"]):
        gflops = c["flops"] / (c["counted_ms"] / 1000) / 1e9 if c["counted_ms"] else None
        class_rows.append(
            {
                "class": name,
                "ms": round(c["ms"], 2),
                "share": round(c["ms"] / total, 4),
                "gflop": round(c["flops"] / 1e9, 3) if c["flops"] else None,
                "gflops_per_s": round(gflops, 1) if gflops else None,
                "peak_share": round(gflops / peak_gflops, 4) if gflops else None,
            }
        )
    scope_rows = [
        {"scope": s, "ms": round(ms, 2), "share": round(ms / total, 4)}
        for s, ms in sorted(scopes.items(), key=lambda kv: -kv[1])[:top]
    ]
    top_ops = [
        {"name": n["name"], "op": n["op"], "ms": round(n["ms"], 2), "share": round(n["ms"] / total, 4)}
        for n in sorted(nodes, key=lambda n: -n["ms"])[:top]
    ]
    return {
        "wall": raw["wall"],
        "traced": raw["traced"],
        "op_time_ms": round(total, 2),
        "classes": class_rows,
        "scopes": scope_rows,
        "top_ops": top_ops,
    }


def markdown(name: str, summary: dict) -> str:
    """One model's report: wall time, the op classes, the top scopes."""

    def cell(value, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        f"### {name}",
        "",
        f"Untraced product p50 {summary['wall']['p50_ms']:.1f} ms; summed op time of a traced run "
        f"{summary['op_time_ms']:.1f} ms (ops overlap on the inter-op threads; traced p50 "
        f"{summary['traced']['p50_ms']:.1f} ms).",
        "",
        "| op class | op ms | share | GFLOP | GFLOP/s | % of peak |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary["classes"]:
        peak = None if r["peak_share"] is None else 100 * r["peak_share"]
        lines.append(
            f"| {r['class']} | {r['ms']:.1f} | {100 * r['share']:.1f} % | {cell(r['gflop'], '.2f')} | "
            f"{cell(r['gflops_per_s'], '.1f')} | {cell(peak, '.1f')} |"
        )
    lines += ["", "| scope | op ms | share |", "|---|---|---|"]
    lines += [f"| `{r['scope']}` | {r['ms']:.1f} | {100 * r['share']:.1f} % |" for r in summary["scopes"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = describe_machine()
    print(
        f"machine: {machine['cpu']} ({machine['cpu_id']}), {machine['cores']} cores, "
        f"{machine['clock_ghz']} GHz, "
        f"{machine['lanes_fp32']} float32 lanes per FMA, peak {machine['peak_gflops']} GFLOP/s "
        f"({machine['peak_formula']})",
        flush=True,
    )
    models = [Path(d) for d in args.model_dir]
    for d in models:
        if not (d / "saved_model.pb").is_file() or not (d / "tfad_manifest.json").is_file():
            print(f"error: {d} is not an exported version directory (saved_model.pb, tfad_manifest.json)",
                  file=sys.stderr)  # fmt: skip
            return 2
    report = {
        "machine": machine,
        "patches": args.patches,
        "runs": args.runs,
        "signature": args.signature,
        "models": {},
    }
    with tempfile.TemporaryDirectory(prefix="tfad-profile-") as tmp:
        for spec in args.build:
            print(f"building {spec} ...", flush=True)
            models.append(latency.build_model(spec, Path(tmp) / spec.replace(":", "-")))
        for model_dir in models:
            manifest = json.loads((model_dir / "tfad_manifest.json").read_text())
            family, preset = manifest.get("model_family", "?"), manifest.get("preset", "?")
            name = f"{family}:{preset}"
            if manifest.get("name") != f"{family}-{preset}":  # e.g. the same preset before and after a change
                name += f" ({manifest.get('name')})"
            if name in report["models"]:  # the same name exported twice: the directory tells them apart
                name += f" [{model_dir}]"
            print(f"profiling {name} ({model_dir}) ...", flush=True)
            raw = latency.call_in_child(
                "profile_model", str(model_dir), args.patches, args.runs, args.warmup, args.signature,
                module="serving_profile",
            )  # fmt: skip
            summary = summarise(raw, machine["peak_gflops"], args.top)
            report["models"][name] = summary
            print(markdown(name, summary), "\n", flush=True)
    text = json.dumps(report, indent=1)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
