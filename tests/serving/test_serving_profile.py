"""benchmarks/serving_profile.py: op classes, scopes and the FLOPs it reads off a traced serving run."""

from __future__ import annotations

import pytest

from benchmarks import latency
from benchmarks.serving_profile import op_class, scope_of, summarise


@pytest.mark.parametrize(
    ("op_type", "expected"),
    [
        ("_MklNativeFusedConv2D", "dense convolution"),
        ("Conv2D", "dense convolution"),
        ("_MklNativeFusedDepthwiseConv2dNative", "depthwise convolution"),
        ("_MklNativeConv2DBackpropInput", "transposed convolution"),
        ("_MklMatMul", "matrix product"),
        ("BatchMatMulV2", "matrix product"),
        ("ScaleAndTranslate", "resize / pad / pool"),
        ("ConcatV2", "data movement"),
        ("AddV2", "element-wise / reduction"),
        ("NoOp", "other"),
    ],
)
def test_op_classes(op_type: str, expected: str) -> None:
    assert op_class(op_type) == expected


def test_scopes_drop_the_call_wrappers_and_loop_bodies() -> None:
    name = "StatefulPartitionedCall/StatefulPartitionedCall/reconstructor_1/encoder_1/stem_1/convolution"
    assert scope_of(name) == "reconstructor_1/encoder_1"
    assert scope_of("StatefulPartitionedCall/map/while/body/_219/map/while/concat_2") == "map/while"
    assert scope_of("StatefulPartitionedCall/StatefulPartitionedCall/truediv") == "(top)"


def test_profile_of_the_fixture_counts_its_convolutions(exported_version) -> None:
    # the fixture's two 3x3 convolutions on the 4x-pooled 64x64 map: enc 1 -> 8 and dec 8 -> 1 channels
    patches = 3
    expected_flops = patches * 2 * (2 * 64 * 64 * 9 * 1 * 8)
    raw = latency.call_in_child(
        "profile_model", str(exported_version), patches, 2, 1, module="serving_profile"
    )
    conv_flops = sum(n["flops"] or 0 for n in raw["nodes"] if op_class(n["op"]) == "dense convolution")
    assert conv_flops == expected_flops
    summary = summarise(raw, peak_gflops=100.0, top=5)
    assert sum(row["share"] for row in summary["classes"]) == pytest.approx(1.0, abs=1e-3)
    assert summary["wall"]["n"] == 2 and summary["op_time_ms"] > 0


def test_the_score_only_signature_is_profiled_by_name(exported_version) -> None:
    """``--signature score_only`` profiles what a request without heatmaps runs: the same convolutions, and
    fewer ops than the full signature; a signature the export lacks is an error naming the ones it has."""
    runs = {
        name: latency.call_in_child(
            "profile_model", str(exported_version), 3, 1, 1, name, module="serving_profile"
        )
        for name in ("serving_default", "score_only")
    }
    conv = {
        name: sum(n["flops"] or 0 for n in raw["nodes"] if op_class(n["op"]) == "dense convolution")
        for name, raw in runs.items()
    }
    assert conv["score_only"] == conv["serving_default"] > 0
    assert len(runs["score_only"]["nodes"]) < len(runs["serving_default"]["nodes"])
    with pytest.raises(Exception, match="has no signature 'heatmap_only'"):
        latency.call_in_child(
            "profile_model", str(exported_version), 3, 1, 1, "heatmap_only", module="serving_profile"
        )
