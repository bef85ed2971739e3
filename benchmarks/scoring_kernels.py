"""Time tfad's scoring kernels (``TfadSsim``, ``TfadMinmaxHeatmap``) of two kernel sources side by side.

    .venv/bin/python benchmarks/scoring_kernels.py --reference 72d0d99       # this tree against 72d0d99
    .venv/bin/python benchmarks/scoring_kernels.py --reference HEAD --isa avx2 --threads 1 --rounds 9

Each source (``tfad.scoring.native.KERNEL_SOURCES`` at ``--reference``, and this tree's) is compiled with
the flags ``tfad.scoring.native`` uses. For each instruction-set cap (``TFAD_KERNELS_MAX_ISA``) and
intra-op thread count, a child process per library and round loads it and times both ops on one product
(``--patches`` grey 256x256 pairs); the two libraries alternate round by round, A B B A, so that drift on this
machine, and going first or second, hit both alike. Times are the medians over the rounds of each round's
median; the ratio is this tree / reference. An op whose source did not change between the two gives the
method's own noise: a ratio away from 1.00 for it is not the kernel's doing.
The SSIM values and heatmaps of the two libraries are compared too (the largest absolute difference).

The ops' speed does not depend on the pixels' values: the pairs are uniform noise and that noise plus a small
perturbation, as a reconstruction would be.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from qualify_pc import machine_at_start, machine_line  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def _child(library: str, patches: int, repeats: int, threads: int) -> None:
    """Runs in a child process: load ``library``, time both ops, print one JSON line."""
    import numpy as np
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    ops = tf.load_op_library(library)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (patches, 256, 256, 1)).astype(np.float32)
    y = np.clip(x + rng.normal(0.0, 0.05, x.shape), 0.0, 1.0).astype(np.float32)
    x, y = tf.constant(x), tf.constant(y)
    times: dict[str, list[float]] = {"ssim_ms": [], "heatmap_ms": []}
    for name, op in (("ssim_ms", ops.tfad_ssim), ("heatmap_ms", ops.tfad_minmax_heatmap)):
        op(x, y).numpy()  # warm-up: first-call allocations
        for _ in range(repeats):
            start = time.perf_counter()
            op(x, y).numpy()
            times[name].append((time.perf_counter() - start) * 1e3)
    ssim = ops.tfad_ssim(x, y).numpy()
    heatmap = ops.tfad_minmax_heatmap(x, y).numpy()
    print(
        json.dumps(
            {
                **{name: statistics.median(values) for name, values in times.items()},
                "ssim": ssim.tolist(),
                "heatmap_digest": heatmap[:, ::16, ::16].ravel().tolist(),
            }
        )
    )


def _reference_sources(reference: str, sources: tuple[Path, ...], directory: Path) -> tuple[Path, ...]:
    """The kernel ``sources`` as they were at git revision ``reference``, written into ``directory``."""
    directory.mkdir(parents=True)
    copies = []
    for source in sources:
        path = source.relative_to(REPO).as_posix()
        result = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{reference}:{path}"], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise SystemExit(f"cannot read {path} at {reference!r}: {result.stderr.strip()}")
        copies.append(directory / source.name)
        copies[-1].write_text(result.stdout)
    return tuple(copies)


def _run_child(library: Path, isa: str, threads: int, patches: int, repeats: int) -> dict:
    env = {**os.environ, "TFAD_KERNELS_MAX_ISA": isa, "TF_CPP_MIN_LOG_LEVEL": "2"}
    command = [sys.executable, __file__, "--child", str(library), "--patches", str(patches)]
    command += ["--repeats", str(repeats), "--threads", str(threads)]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"timing {library} ({isa}, {threads} threads) failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reference", default="HEAD", help="git revision of the kernels to compare against")
    parser.add_argument("--isa", action="append", choices=["avx512", "avx2", "baseline"], help="repeatable")
    parser.add_argument("--threads", type=int, action="append", help="intra-op threads (repeatable)")
    parser.add_argument("--patches", type=int, default=60, help="pairs per op call (one product)")
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per child process")
    parser.add_argument("--rounds", type=int, default=5, help="alternating child processes per library")
    parser.add_argument("--json-out", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.patches, args.repeats, (args.threads or [1])[0])
        return
    if min(args.patches, args.repeats, args.rounds) < 1:
        parser.error("--patches, --repeats and --rounds must be at least 1")

    from tfad.scoring import native

    machine = machine_at_start()
    print(machine_line(machine), flush=True)
    isas = args.isa or (["avx2", "avx512"] if machine["avx512f"] else ["avx2"])
    thread_counts = args.threads or [1, 2]
    report: dict = {"machine": machine, "reference": args.reference, "configurations": []}
    with tempfile.TemporaryDirectory(prefix="tfad_scoring_kernels_") as scratch:
        reference = _reference_sources(args.reference, native.KERNEL_SOURCES, Path(scratch) / "reference")
        libraries = {"reference": Path(scratch) / "reference.so", "this tree": Path(scratch) / "tree.so"}
        native.compile_library(libraries["reference"], reference)
        native.compile_library(libraries["this tree"])
        print(f"{'isa':8} {'threads':>7} {'op':8} {'reference ms':>13} {'this tree ms':>13} {'ratio':>6}")
        for isa in isas:
            for threads in thread_counts:
                runs: dict[str, list[dict]] = {label: [] for label in libraries}
                for round_number in range(args.rounds):
                    # A B B A: which library runs first alternates, so that an advantage of going first or
                    # second (caches, clocks) falls on both alike.
                    order = list(libraries.items())
                    for label, library in order if round_number % 2 == 0 else order[::-1]:
                        runs[label].append(_run_child(library, isa, threads, args.patches, args.repeats))
                entry = {"isa": isa, "threads": threads}
                for op in ("ssim_ms", "heatmap_ms"):
                    ref = statistics.median(run[op] for run in runs["reference"])
                    new = statistics.median(run[op] for run in runs["this tree"])
                    entry[op] = {"reference": ref, "this_tree": new, "ratio": new / ref}
                    print(
                        f"{isa:8} {threads:7d} {op[:-3]:8} {ref:13.2f} {new:13.2f} {new / ref:6.2f}",
                        flush=True,
                    )
                first_ref, first_new = runs["reference"][0], runs["this tree"][0]
                entry["ssim_max_abs_difference"] = max(
                    abs(a - b) for a, b in zip(first_ref["ssim"], first_new["ssim"], strict=True)
                )
                entry["heatmap_max_abs_difference"] = max(
                    abs(a - b)
                    for a, b in zip(first_ref["heatmap_digest"], first_new["heatmap_digest"], strict=True)
                )
                print(
                    f"{'':8} {'':7} outputs: SSIM differs by at most {entry['ssim_max_abs_difference']:.2e}, "
                    f"heatmap by {entry['heatmap_max_abs_difference']:.2e}",
                    flush=True,
                )
                report["configurations"].append(entry)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json_out}")


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow's first import
    main()
