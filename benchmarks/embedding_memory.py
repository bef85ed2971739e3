"""Peak memory of fitting the embedding family against the number of training images (issue 12).

MhBC-PatchCore keeps only per-cell moments and a fixed number of centroids, so its fitting memory should be
flat in the number of images; PatchCore collects every patch feature before its coreset, so its memory
grows linearly. Each fit runs in its own child process (peak RSS of that process, from the kernel), on
1x, 4x and 16x a base set of good magnetic_tile training images (the set is repeated to reach the larger
counts: memory does not depend on which images they are).

    .venv/bin/python benchmarks/embedding_memory.py                       # 100, 400, 1600 images
    .venv/bin/python benchmarks/embedding_memory.py --base 50 --presets mhbc-patchcore

Prints a markdown table and writes --json-out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
DEFAULT_ROOT = REPO.parent / "shared" / "datasets" / "magnetic_tile"


def fit_once(root: str, preset: str, images: int, queue: multiprocessing.Queue) -> None:
    """Fit ``preset`` on ``images`` good training images (repeated as needed); report to ``queue``."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tfad.config import architecture, from_dict
    from tfad.data.layouts import read_dataset
    from tfad.data.pipeline import make_dataset
    from tfad.families.embedding.fitter import build_model, fit_state

    config = from_dict(
        {"model": {"family": "embedding", "preset": preset}, "data": {"root": root, "image_size": 256}}
    )
    arch = architecture(config)
    good = read_dataset(root, "train", "mvtec")
    records = [good[i % len(good)] for i in range(images)]
    model = build_model(arch)

    def batches():
        dataset = make_dataset(records, (256, 256), channels=1, batch_size=16, name="fit")
        return (batch["image"] for batch in dataset)

    started = time.perf_counter()
    state, build = fit_state(arch, model.extractor, batches, len(records), progress=False)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    state_mb = sum(v.nbytes for v in state.values()) / 2**20
    queue.put({"preset": preset, "images": images, "peak_rss_mb": peak_mb, "fitted_state_mb": state_mb,
               "fit_seconds": seconds, "build": build})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--base", type=int, default=100, help="images at 1x")
    parser.add_argument("--multiples", default="1,4,16")
    parser.add_argument("--presets", default="mhbc-patchcore,patchcore")
    parser.add_argument("--json-out", type=Path, default=Path("bench_out/embedding_memory.json"))
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"magnetic_tile not found at {args.data} (pass --data)")
    from machine import describe_machine

    context = multiprocessing.get_context("spawn")  # a fresh process per fit: its own peak
    rows = []
    for preset in args.presets.split(","):
        for multiple in (int(m) for m in args.multiples.split(",")):
            queue = context.Queue()
            child = context.Process(
                target=fit_once, args=(str(args.data), preset, args.base * multiple, queue)
            )
            child.start()
            row = queue.get()
            child.join()
            row["multiple"] = multiple
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({"machine": describe_machine(), "rows": rows}, indent=2) + "\n")
    print(f"\n{describe_machine()}\n")
    print("| preset | images | peak RSS MB | fitted state MB | fit s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['preset']} | {r['images']} ({r['multiple']}x) | {r['peak_rss_mb']:.0f} | "
              f"{r['fitted_state_mb']:.1f} | {r['fit_seconds']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
