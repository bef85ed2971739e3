"""What the benchmark machine is: cores, vector width, clock, and the float32 peak derived from them.

The peak is an upper bound for the achieved-FLOP/s ratios the benchmarks print:
cores x FMA units per core x float32 lanes x 2 FLOP (multiply + add) x clock. Lanes come from
/proc/cpuinfo's flags (16 with AVX-512F, 8 with AVX2; 8 on AMD Zen 4, family 25, whose AVX-512
instructions run on 256-bit FMA units); two FMA units per core is what server Xeons
have (an assumption: /proc/cpuinfo does not say); the clock is the nominal one in the model name
("@ 2.80GHz"), else "cpu MHz" (a core that boosts above it can exceed the peak). Machines of this
project have differed (2.45 GHz AVX2 and 2.80 GHz AVX-512 were both seen),
so every benchmark report states the machine it ran on.

``ONEDNN_MAX_CPU_ISA=AVX2`` in the environment keeps oneDNN (TensorFlow's convolutions and matrix products)
to its AVX2 kernels; the benchmarks' children and the C++ server inherit it. On an AVX-512 machine that runs
the slow machine kind's kernel set (not its clock, caches or memory): the report then says so and the peak
counts 8 lanes. TensorFlow's own (Eigen) kernels in the tensorflow-cpu wheel do not use AVX2 or AVX-512
either way (its start-up message lists them as not compiled in).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

FMA_UNITS_PER_CORE = 2


def describe_machine(cpuinfo: str | None = None) -> dict:
    """``{"cpu", "cpu_id", "cores", "lanes_fp32", "clock_ghz", "peak_gflops", "peak_formula",
    "onednn_max_cpu_isa", "tfad_kernels_max_isa", "avx2", "avx512f"}`` of this machine (lanes and peak
    within the ``ONEDNN_MAX_CPU_ISA`` limit, if set; ``tfad_kernels_max_isa``: the cap on tfad's own
    scoring kernels, ``TFAD_KERNELS_MAX_ISA``, if set); ``cpuinfo``: the text of /proc/cpuinfo, read when
    not given."""
    if cpuinfo is None:
        cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    text = cpuinfo
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    flag_set = set(flags.group(1).split()) if flags else set()
    lanes = 16 if "avx512f" in flag_set else 8 if "avx2" in flag_set else 4
    vendor = re.search(r"^vendor_id\s*:\s*(\S+)", text, re.M)
    family = re.search(r"^cpu family\s*:\s*(\d+)", text, re.M)
    if lanes == 16 and vendor and vendor.group(1) == "AuthenticAMD" and family and int(family.group(1)) == 25:
        lanes = 8  # AMD Zen 4 (family 25) runs AVX-512 on 256-bit FMA units: the AVX2 peak
    isa_limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().lower() or None
    if isa_limit is not None and isa_limit.startswith("avx2"):
        lanes = min(lanes, 8)
    elif isa_limit is not None and isa_limit in ("sse41", "avx"):
        lanes = min(lanes, 4)
    clock = None
    if model:
        m = re.search(r"@\s*([\d.]+)\s*GHz", model.group(1))
        clock = float(m.group(1)) if m else None
    if clock is None:
        mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)
        clock = round(float(mhz.group(1)) / 1000, 3) if mhz else 2.0
    model_number = re.search(r"^model\s*:\s*(\d+)", text, re.M)
    # The model name can be as vague as "AMD EPYC": vendor, family and model number say which generation.
    cpu_id = " ".join(
        part
        for part in (
            vendor.group(1) if vendor else None,
            f"family {family.group(1)}" if family else None,
            f"model {model_number.group(1)}" if model_number else None,
        )
        if part
    )
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    peak = cores * FMA_UNITS_PER_CORE * lanes * 2 * clock
    return {
        "cpu": model.group(1).strip() if model else "unknown",
        "cpu_id": cpu_id or "unknown",
        "cores": cores,
        "lanes_fp32": lanes,
        "clock_ghz": clock,
        "peak_gflops": round(peak, 1),
        "peak_formula": f"{cores} cores x {FMA_UNITS_PER_CORE} FMA x {lanes} lanes x 2 FLOP x {clock} GHz",
        "onednn_max_cpu_isa": isa_limit,
        "tfad_kernels_max_isa": os.environ.get("TFAD_KERNELS_MAX_ISA", "").strip().lower() or None,
        "avx2": "avx2" in flag_set,
        "avx512f": "avx512f" in flag_set,
    }
