"""benchmarks/machine.py: the float32 peak follows the CPU's FMA width and the oneDNN ISA limit."""

from __future__ import annotations

import pytest

from benchmarks.machine import describe_machine

_FLAGS = "fpu sse sse2 avx fma avx2"


def _cpuinfo(vendor: str, family: int, flags: str, model: str = "Test CPU @ 2.00GHz") -> str:
    return f"vendor_id\t: {vendor}\ncpu family\t: {family}\nmodel name\t: {model}\nflags\t\t: {flags}\n"


@pytest.mark.parametrize(
    ("vendor", "family", "flags", "lanes", "avx512f"),
    [
        ("GenuineIntel", 6, _FLAGS + " avx512f", 16, True),  # Xeon with two 512-bit FMA units
        ("AuthenticAMD", 25, _FLAGS + " avx512f", 8, True),  # Zen 4: AVX-512 on 256-bit FMA units
        ("AuthenticAMD", 26, _FLAGS + " avx512f", 16, True),  # Zen 5: full-width AVX-512
        ("GenuineIntel", 6, _FLAGS, 8, False),  # the AVX2 line PC kind
    ],
)
def test_lanes_follow_the_fma_width_and_the_flags_name_the_instruction_sets(
    monkeypatch: pytest.MonkeyPatch, vendor: str, family: int, flags: str, lanes: int, avx512f: bool
) -> None:
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    machine = describe_machine(_cpuinfo(vendor, family, flags))
    assert (machine["lanes_fp32"], machine["avx512f"], machine["avx2"]) == (lanes, avx512f, True)
    assert machine["clock_ghz"] == 2.0
    assert machine["peak_gflops"] == pytest.approx(machine["cores"] * 2 * lanes * 2 * 2.0, rel=1e-3)


def test_avx2_limit_caps_the_lanes_and_the_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    xeon = _cpuinfo("GenuineIntel", 6, _FLAGS + " avx512f")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    native = describe_machine(xeon)
    assert native["onednn_max_cpu_isa"] is None
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    limited = describe_machine(xeon)
    assert limited["onednn_max_cpu_isa"] == "avx2"
    assert (limited["lanes_fp32"], limited["avx512f"]) == (8, True)
    assert limited["peak_gflops"] == pytest.approx(native["peak_gflops"] / 2, rel=1e-3)


def test_the_kernels_cap_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    xeon = _cpuinfo("GenuineIntel", 6, _FLAGS + " avx512f")
    monkeypatch.delenv("TFAD_KERNELS_MAX_ISA", raising=False)
    assert describe_machine(xeon)["tfad_kernels_max_isa"] is None
    monkeypatch.setenv("TFAD_KERNELS_MAX_ISA", "AVX2")
    assert describe_machine(xeon)["tfad_kernels_max_isa"] == "avx2"


def test_a_vague_model_name_is_completed_by_family_and_model_number_and_the_clock_is_rounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # "AMD EPYC" names no generation and no clock: the report must say which one and read "cpu MHz".
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    cpuinfo = (
        "vendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
        f"cpu MHz\t\t: 2695.945999\nflags\t\t: {_FLAGS} avx512f\n"
    )
    machine = describe_machine(cpuinfo)
    assert machine["cpu"] == "AMD EPYC"
    assert machine["cpu_id"] == "AuthenticAMD family 26 model 2"
    assert machine["clock_ghz"] == 2.696
    assert f"{machine['clock_ghz']} GHz" in machine["peak_formula"]
