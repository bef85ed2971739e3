"""benchmarks/machine.py: the float32 peak follows the oneDNN ISA limit a benchmark runs under."""

from __future__ import annotations

import pytest

from benchmarks.machine import describe_machine


def test_avx2_limit_caps_the_lanes_and_the_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    native = describe_machine()
    assert native["onednn_max_cpu_isa"] is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    limited = describe_machine()
    assert limited["onednn_max_cpu_isa"] == "avx2"
    assert limited["lanes_fp32"] == min(native["lanes_fp32"], 8)
    assert limited["peak_gflops"] == pytest.approx(
        native["peak_gflops"] * limited["lanes_fp32"] / native["lanes_fp32"], rel=1e-3
    )


def test_flags_name_the_instruction_sets_whatever_the_fma_width() -> None:
    # AMD Zen 4 has AVX-512 but 256-bit FMA units: the peak counts 8 lanes, the report still says AVX-512.
    machine = describe_machine()
    assert machine["lanes_fp32"] <= (16 if machine["avx512f"] else 8 if machine["avx2"] else 4)
