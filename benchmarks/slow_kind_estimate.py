"""Estimate the current models' times on the slow line-PC kind (2.45 GHz, AVX2) from a calibration here.

    .venv/bin/python benchmarks/slow_kind_estimate.py                      # ResGANAD line-cpu, 5 rounds
    .venv/bin/python benchmarks/slow_kind_estimate.py --build embedding:line --model-dir EXPORT/1 --rounds 7

No session has had the slow kind since November. Its only idle measurement is ``benchmarks/preset_cost.py``
at commit ``0a178bd`` (2026-11-25): four presets' 60-patch products in bare TensorFlow (``REFERENCES``). This
script runs that same commit's ``preset_cost.py`` on this machine (a temporary ``git worktree``), with
``ONEDNN_MAX_CPU_ISA=AVX2`` so that oneDNN runs the slow kind's kernel set (TensorFlow's own Eigen kernels are
built for the same baseline on both kinds). The ratio of the two times, per reference preset, is what the
slow kind's clock and micro-architecture cost. It then times the current exports' serving functions in
bare TensorFlow (``benchmarks/latency.py``'s bare run: models given by ``--model-dir`` or built by
``--build``), with ``TFAD_KERNELS_MAX_ISA=avx2`` too, and scales them by the lowest, median and highest
ratio. Reference and current runs alternate, round by round, so that drift on this machine hits both alike;
times are medians over the rounds.

The result is an estimate, not a measurement: one November measurement per preset (whose own run-to-run
spread was about 10 %), and the assumption that the current ops slow down as the reference's did. Only
``benchmarks/qualify_pc.py`` on the slow PC itself can qualify it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import latency  # noqa: E402
from qualify_pc import machine_at_start, machine_line  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# The November measurement on the slow kind (README at 0a178bd, "Presets and the CPU budget").
REFERENCE_COMMIT = "0a178bd"
# preset: 60-patch product ms in bare TensorFlow on the slow kind (README at 0a178bd)
REFERENCES = {"line-cpu": 304.0, "line-cpu-wide": 512.0, "grdnet:crae": 622.0, "grdnet:drae": 594.0}


def slow_kind_ratio(slow_ms: float, here_ms: list[float]) -> float:
    """How many times slower the slow kind ran the reference than this machine (median of ``here_ms``)."""
    if not here_ms or any(t <= 0 for t in here_ms) or slow_ms <= 0:
        raise ValueError(f"need positive times, got slow {slow_ms} and here {here_ms}")
    return slow_ms / statistics.median(here_ms)


def estimate_slow_ms(here_ms: list[float], ratio: float) -> float:
    """A current time on the slow kind: its median here scaled by the reference's ratio."""
    if not here_ms:
        raise ValueError("no times to scale")
    return statistics.median(here_ms) * ratio


def _preset_cost(tree: Path, presets: str, patches: int, repeats: int, env: dict[str, str]) -> list[dict]:
    """Run ``tree``'s ``benchmarks/preset_cost.py`` in a child process and return its JSON rows."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.json"
        command = [
            sys.executable,
            str(tree / "benchmarks" / "preset_cost.py"),
            "--presets",
            presets,
            "--patches",
            str(patches),
            "--repeats",
            str(repeats),
            "--json-out",
            str(out),
        ]
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", action="append", default=[], help="an export's version directory")
    parser.add_argument(
        "--build",
        action="append",
        default=[],
        help="family:preset to build with benchmarks/latency.py (resganad:line-cpu if no --model-dir)",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per model per round")
    parser.add_argument("--patches", type=int, default=60)
    parser.add_argument(
        "--reference-tree",
        default="",
        help=f"a checkout of {REFERENCE_COMMIT} (default: a temporary git worktree of this repository)",
    )
    parser.add_argument("--json-out", default="")
    args = parser.parse_args()
    if args.rounds < 1 or args.repeats < 1:
        parser.error("--rounds and --repeats must be at least 1")

    # Both sides run oneDNN's AVX2 kernels; the current exports are timed in children of this process
    # (latency.bare_tensorflow), which inherit tfad's AVX2 cap too. The reference has no tfad kernels and
    # imports its own tree.
    os.environ.update(ONEDNN_MAX_CPU_ISA="AVX2", TFAD_KERNELS_MAX_ISA="avx2", TF_CPP_MIN_LOG_LEVEL="2")
    machine = machine_at_start()
    print(f"{machine_line(machine)}; reference {REFERENCE_COMMIT}, measured on the slow kind on 2026-11-25")
    unset = ("PYTHONPATH", "TFAD_KERNELS_MAX_ISA")
    reference_env = {k: v for k, v in os.environ.items() if k not in unset}

    model_dirs = [Path(d).resolve() for d in args.model_dir]
    for model_dir in model_dirs:
        if not (model_dir / "tfad_manifest.json").exists():
            parser.error(
                f"--model-dir {model_dir} has no tfad_manifest.json (give an export's version directory)"
            )
    builds = args.build or ([] if model_dirs else ["resganad:line-cpu"])

    worktree = None
    if args.reference_tree:
        reference_tree = Path(args.reference_tree).resolve()
        if not (reference_tree / "benchmarks" / "preset_cost.py").exists():
            parser.error(f"--reference-tree {reference_tree} has no benchmarks/preset_cost.py")
    else:
        held = subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-e", f"{REFERENCE_COMMIT}^{{commit}}"], capture_output=True
        )
        if held.returncode != 0:
            parser.error(
                f"this clone does not hold commit {REFERENCE_COMMIT} (a shallow clone?): run `git fetch "
                f"--unshallow`, or give --reference-tree a checkout of it"
            )
        worktree = Path(tempfile.mkdtemp(prefix="tfad_reference_"))
        subprocess.run(
            [
                "git",
                "-C",
                str(REPO),
                "worktree",
                "add",
                "--force",
                "--detach",
                str(worktree),
                REFERENCE_COMMIT,
            ],
            check=True,
            capture_output=True,
        )
        reference_tree = worktree
    reference_env["PYTHONPATH"] = str(reference_tree)

    reference = {name: [] for name in REFERENCES}
    current: dict[str, list[float]] = {}
    build_work = Path(tempfile.mkdtemp(prefix="tfad_slow_kind_"))
    try:
        model_dirs += [latency.build_model(spec, build_work) for spec in builds]
        models = {}
        for model_dir in model_dirs:
            manifest = json.loads((model_dir / "tfad_manifest.json").read_text())
            shape = manifest["input"]
            name = f"{manifest['model_family']}:{manifest.get('preset')}"
            if name in models:
                name = f"{name} ({model_dir})"
            models[name] = (model_dir, (args.patches, shape["height"], shape["width"], shape["channels"]))
        for round_index in range(args.rounds):
            for row in _preset_cost(
                reference_tree, ",".join(REFERENCES), args.patches, args.repeats, reference_env
            ):
                reference[row["preset"]].append(row["product_60_ms"])
            for name, (model_dir, batch_shape) in models.items():
                bare = latency.bare_tensorflow(model_dir, batch_shape, args.repeats)
                current.setdefault(name, []).append(bare["p50_ms"])
            print(
                f"round {round_index + 1}/{args.rounds}: "
                + ", ".join(
                    f"{REFERENCE_COMMIT} {name} {times[-1]:.0f} ms" for name, times in reference.items()
                )
                + "; "
                + ", ".join(f"{name} {times[-1]:.0f} ms" for name, times in current.items()),
                flush=True,
            )
    finally:
        shutil.rmtree(build_work, ignore_errors=True)
        if worktree is not None:
            subprocess.run(
                ["git", "-C", str(REPO), "worktree", "remove", "--force", str(worktree)], capture_output=True
            )

    print(
        f"\n| reference preset ({REFERENCE_COMMIT}) | slow kind ms | here, AVX2 kernels: median (range) ms "
        "| ratio |"
    )
    print("|---|---|---|---|")
    ratios = {}
    for name, times in reference.items():
        ratios[name] = slow_kind_ratio(REFERENCES[name], times)
        print(
            f"| {name} | {REFERENCES[name]:.0f} | {statistics.median(times):.0f} ({min(times):.0f}-"
            f"{max(times):.0f}) | {ratios[name]:.2f}x |"
        )
    low, mid, high = min(ratios.values()), statistics.median(ratios.values()), max(ratios.values())
    print(
        f"\n| current export | here, AVX2 kernels: median (range) ms | slow kind, estimated ms ({low:.2f}x / "
        f"{mid:.2f}x / {high:.2f}x) |"
    )
    print("|---|---|---|")
    rows = []
    for name, times in current.items():
        row = {
            "model": name,
            "model_dir": str(models[name][0]),
            "here_product_ms": times,
            "slow_kind_product_ms": {
                "low": estimate_slow_ms(times, low),
                "median": estimate_slow_ms(times, mid),
                "high": estimate_slow_ms(times, high),
            },
        }
        rows.append(row)
        slow = row["slow_kind_product_ms"]
        print(
            f"| {name} | {statistics.median(times):.0f} ({min(times):.0f}-{max(times):.0f}) | "
            f"{slow['low']:.0f} / {slow['median']:.0f} / {slow['high']:.0f} |"
        )
    if args.json_out:
        report = {
            "machine": machine,
            "reference": {
                "commit": REFERENCE_COMMIT,
                "slow_kind_ms": REFERENCES,
                "here_product_ms": reference,
                "ratios": ratios,
            },
            "current": rows,
        }
        Path(args.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
