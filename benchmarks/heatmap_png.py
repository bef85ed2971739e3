"""What encoding one product's heatmaps as PNGs costs the C++ server, and what its encoder saves.

    bash scripts/build_cc.sh        # builds bazel-bin/cc/heatmap_png_bench too
    .venv/bin/python benchmarks/heatmap_png.py --json-out bench_out/heatmap_png.json
    .venv/bin/python benchmarks/heatmap_png.py --model-dir savedmodels/vials/1 --json-out bench_out/hp.json

A request with heatmap mode ``ALL`` gets a PNG per patch, encoded by the server after inference and inside
the cycle. ``bazel-bin/cc/heatmap_png_bench`` encodes the same heatmaps with the server's encoder
(``cc/png_codec.cc``: PNG "Up" row filter, literal-only Huffman deflate of ``cc/deflate_literals.cc``) and
with zlib's run-length deflate without row filters (the server's encoder until 2026-12-07), one product's
heatmaps per timing, in rounds of A B B A; it checks first that both decode (libpng) to the heatmaps' 8-bit
pixels, and fails otherwise. Both map the floats to gray the server's way, so the ratio is the encoders'.

The heatmaps are either an export's (``--model-dir``: its serving signature on patches of vials the
package generates, resized to the model's input), or, by default, seeded synthetic ones: Gaussian-filtered
noise with a bright blob, min-max normalised per patch as the families' heatmaps are. Noisier heatmaps
compress less.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
from qualify_pc import machine_at_start, machine_line  # noqa: E402

TOOL = REPO / "bazel-bin" / "cc" / "heatmap_png_bench"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-dir", type=Path, help="an export's version directory (default: synthetic)")
    p.add_argument("--patches", type=int, default=60, help="heatmaps per product")
    p.add_argument("--size", type=int, default=256, help="side of the synthetic heatmaps")
    p.add_argument("--rounds", type=int, default=25, help="A B B A rounds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tool", type=Path, default=TOOL, help="the heatmap_png_bench binary")
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    if args.patches < 1 or args.size < 8 or args.rounds < 1:
        p.error("--patches and --rounds must be positive and --size at least 8")
    if args.model_dir is not None and not (args.model_dir / "tfad_manifest.json").is_file():
        p.error(f"--model-dir {args.model_dir}: no tfad_manifest.json (give an exported version directory)")
    if not args.tool.is_file():
        p.error(f"{args.tool} not found: build it with `bash scripts/build_cc.sh`")
    return args


def synthetic_heatmaps(patches: int, size: int, seed: int) -> np.ndarray:
    """``[patches, size, size]`` float32 in [0, 1]: smoothed noise plus one blob, min-max normalised."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    maps = []
    for _ in range(patches):
        noise = gaussian_filter(rng.standard_normal((size, size)), 2.0)
        cy, cx = rng.uniform(0.2, 0.8, 2) * size
        blob = 4.0 * noise.std() * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (size / 16) ** 2))
        m = noise + blob
        maps.append((m - m.min()) / max(np.ptp(m), 1e-12))
    return np.stack(maps).astype(np.float32)


def model_heatmaps(model_dir: Path, patches: int, work: Path) -> np.ndarray:
    """The export's heatmaps for ``patches`` patches of generated vials, ``[patches, H, W]`` float32."""
    from tfad.data.decode import load_images
    from tfad.data.synth_vials import generate_synth_vials
    from tfad.evaluation.scorer import load_scorer

    scorer = load_scorer(model_dir)  # the export's serving signature, as tfad eval runs it
    vials = work / "vials"
    generate_synth_vials(str(vials), n_products=max(1, -(-patches // 20)), frames=1, defect_rate=0.5)
    files = sorted((vials / "train").rglob("*.png"))
    if len(files) < patches:
        raise SystemExit(f"generated {len(files)} patches, {patches} asked")
    images = load_images(files[:patches], (scorer.image_size, scorer.image_size), scorer.channels)
    return scorer(images)["heatmap"].reshape(patches, scorer.image_size, scorer.image_size)


def run(args: argparse.Namespace) -> dict:
    """Write the heatmaps, run the tool; its report with the machine and the heatmaps' source."""
    with tempfile.TemporaryDirectory(prefix="tfad-heatmap-png-") as tmp:
        if args.model_dir is not None:
            heatmaps = model_heatmaps(args.model_dir, args.patches, Path(tmp))
            source = str(args.model_dir)
        else:
            heatmaps = synthetic_heatmaps(args.patches, args.size, args.seed)
            source = f"synthetic (seed {args.seed})"
        raw = Path(tmp) / "heatmaps.f32"
        heatmaps.tofile(raw)
        n, h, w = heatmaps.shape
        done = subprocess.run(
            [str(args.tool), str(raw), str(n), str(h), str(w), str(args.rounds)],
            capture_output=True,
            text=True,
        )
    if done.returncode != 0:
        raise SystemExit(f"heatmap_png_bench failed (exit {done.returncode}): {done.stderr.strip()}")
    return {"machine": machine_at_start(), "source": source, **json.loads(done.stdout)}


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints the machine, a table and the JSON report."""
    args = parse_args(argv)
    report = run(args)
    print(machine_line(report["machine"]))
    print(f"{report['heatmaps']} heatmaps of {report['height']}x{report['width']} from {report['source']}")
    print("| encoder | p50 ms per product | bytes per product |")
    print("|---|---|---|")
    for key, label in (
        ("server", "server (Up filter + literal Huffman)"),
        ("zlib_rle", "zlib Z_RLE level 1"),
    ):
        print(f"| {label} | {report[key]['p50_ms']:.2f} | {report[key]['bytes']} |")
    print(
        f"paired ratio server / zlib: median {report['paired_ratio_median']:.3f} "
        f"(range {report['paired_ratio_min']:.3f}-{report['paired_ratio_max']:.3f}), "
        f"{report['rounds']} rounds"
    )
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
