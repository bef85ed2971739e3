"""Resource limits of the serving contract (issue 14 item 5), request level: no server is started.

Mirrors cc/tests/validation_test.cc (ids, region, enums, allocation order, message size) and
cc/tests/inspection_service_test.cc (ids refused before anything echoes or logs them).
"""

from __future__ import annotations

import logging

import grpc
import numpy as np
import pytest
from serving_testutils import add_raw, contract_manifest

from tfad.serving import contract
from tfad.serving.contract import InvalidRequest, Manifest, RequestLimits, validate_and_decode
from tfad.serving.protos import pb

MANIFEST = contract_manifest()
ID_FIELDS = ("product_id", "run_id", "station_id", "model_name")


def refusal(request, manifest: Manifest = MANIFEST) -> str:
    with pytest.raises(InvalidRequest) as info:
        validate_and_decode(request, manifest, RequestLimits())
    return str(info.value)


@pytest.mark.parametrize("field_name", ID_FIELDS)
def test_ids_are_at_most_128_printable_bytes_and_never_echoed(field_name):
    request = pb.InspectRequest()
    add_raw(request)
    setattr(request, field_name, "a" * 128)
    validate_and_decode(request, MANIFEST, RequestLimits())
    setattr(request, field_name, "Q" * 129)
    assert refusal(request) == f"{field_name} is 129 bytes; at most 128 allowed"
    setattr(request, field_name, "P1\nforged=1")
    assert refusal(request) == f"{field_name} has a byte that is not printable ASCII (0x0a at offset 2)"


def test_overlong_region_is_refused_without_echo():
    manifest = contract_manifest(default_threshold=0.5)  # any region is known
    request = pb.InspectRequest()
    add_raw(request, region="r" * 128)
    validate_and_decode(request, manifest, RequestLimits())
    add_raw(request, region="Z" * 5000, vial=1)
    assert (
        refusal(request, manifest) == "patch 1 (frame 0, vial 1): region is 5000 bytes; at most 128 allowed"
    )


def test_unknown_heatmap_mode_is_refused_naming_field_and_value():
    request = pb.InspectRequest(heatmaps=pb.HEATMAP_MODE_ALL)
    add_raw(request)
    validate_and_decode(request, MANIFEST, RequestLimits())
    request.heatmaps = 7  # proto3 keeps unknown enum numbers
    assert "heatmaps: unknown HeatmapMode value 7" in refusal(request)


def test_unknown_encoding_value_is_refused_naming_the_value():
    request = pb.InspectRequest()
    add_raw(request).encoding = 9
    assert "patch 0 (region R0, frame 0, vial 0): unknown ImageEncoding value 9" in refusal(request)


def test_batch_is_allocated_only_after_every_patch_is_checked(monkeypatch):
    """A product whose last patch is invalid must not cost n * H * W * C bytes of batch first."""
    batches = []
    zeros = np.zeros

    def recording_zeros(shape, *args, **kwargs):
        if np.ndim(shape) == 1 and len(shape) == 4:
            batches.append(tuple(shape))
        return zeros(shape, *args, **kwargs)

    monkeypatch.setattr(contract.np, "zeros", recording_zeros)
    request = pb.InspectRequest()
    for vial in range(4):
        add_raw(request, vial=vial)
    add_raw(request, vial=4).data = bytes(63)  # wrong byte count, last patch
    assert "patch 4" in refusal(request)
    request.patches[4].region = "R9"
    assert "unknown region 'R9'" in refusal(request)
    # A raw patch of the wrong size after a PNG patch: refused before the PNG is decoded or the batch exists.
    import cv2

    ok, png = cv2.imencode(".png", np.full((8, 8), 9, np.uint8))
    assert ok
    mixed = pb.InspectRequest()
    mixed.patches.add(region="R0", encoding=pb.IMAGE_ENCODING_PNG, data=png.tobytes())
    add_raw(mixed, region="R1", w=4)
    assert "patch 1 (region R1" in refusal(mixed)
    assert batches == []
    validate_and_decode(mixed.__class__(patches=[mixed.patches[0]]), MANIFEST, RequestLimits())
    assert batches == [(1, 8, 8, 1)]  # the recorder does see the batch of a valid product


def _effective_message_limit(config) -> int:
    return config.max_message_bytes or contract.default_max_message_bytes(config.limits)


def test_default_message_limit_holds_the_largest_legal_request():
    """Every field at its longest encoding; 8 RPC threads of the limit stay within 1 GiB."""
    from tfad.serving.server import ServerConfig

    config = ServerConfig()
    limits = config.limits

    def size_of(n: int) -> int:
        request = pb.InspectRequest(heatmaps=pb.HEATMAP_MODE_ALL)
        for name in ID_FIELDS:
            setattr(request, name, "x" * 128)
        for _ in range(n):
            request.patches.add(
                region="g" * 128,
                frame=2**32 - 1,
                vial=2**32 - 1,
                width=2**32 - 1,
                height=2**32 - 1,
                channels=2**32 - 1,
                encoding=pb.IMAGE_ENCODING_PNG,
                data=b"\xff" * limits.max_patch_bytes,
            )
        return request.ByteSize()

    one, two = size_of(1), size_of(2)  # serialized size is affine in the patch count
    per_patch, fixed = two - one, 2 * one - two
    largest = fixed + per_patch * limits.max_patches
    limit = _effective_message_limit(config)
    assert largest <= limit, f"largest legal request {largest} B > message limit {limit} B"
    assert limit * config.max_rpc_threads <= 1 << 30
    assert contract.largest_legal_request_bytes(limits) == 256 * (262144 + 256) + 4096 >= largest
    assert contract.default_max_message_bytes(limits) == 66 << 20 == limit
    assert contract.default_max_message_bytes(RequestLimits(100000, 1 << 30)) == 2047 << 20


class _Stats:
    def __init__(self) -> None:
        self.recorded: list[str] = []

    def record(self, outcome: str, *args) -> None:
        self.recorded.append(outcome)


class _Slot:
    name = "vials"

    def __init__(self) -> None:
        self.stats = _Stats()

    def current(self):
        return None  # no model: a request that got past the field checks would be MODEL_UNAVAILABLE


class _Manager:
    def __init__(self) -> None:
        self.slot = _Slot()

    def find(self, name: str):
        return self.slot if name in ("", "vials") else None

    def name_list(self) -> str:
        return "vials"


@pytest.mark.parametrize("bad_id", ["X" * 4096, "P1\x1b[2J"])
def test_server_refuses_bad_ids_before_echoing_or_logging_them(bad_id, caplog):
    from tfad.serving.server import InspectionServicer, ServerConfig, _Abort

    manager = _Manager()
    servicer = InspectionServicer(manager, ServerConfig())
    try:
        request = pb.InspectRequest(product_id=bad_id, run_id=bad_id, heatmaps=pb.HEATMAP_MODE_NONE)
        add_raw(request)
        with caplog.at_level(logging.DEBUG, logger="tfad.serving"), pytest.raises(_Abort) as info:
            servicer.inspect_until(0.0, 1e9, request, context=None)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert info.value.message.startswith("product_id ")
        assert bad_id not in info.value.message and bad_id not in caplog.text
        assert manager.slot.stats.recorded == ["INVALID"]

        request = pb.InspectRequest(product_id="P1")
        add_raw(request)
        request.heatmaps = 3
        with pytest.raises(_Abort) as info:
            servicer.inspect_until(0.0, 1e9, request, context=None)
        assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert "heatmaps: unknown HeatmapMode value 3" in info.value.message
    finally:
        servicer.close()


@pytest.mark.parametrize(
    ("w", "h", "ok"),
    [(4, 4, True), (16, 16, True), (4, 16, True), (9, 7, True), (3, 8, False), (8, 3, False), (17, 8, False),
     (8, 17, False), (1, 1, False), (64, 64, False), (16, 1, False)],
)  # fmt: skip
def test_bilinear_policy_refuses_sizes_beyond_twice_or_half_the_models(w: int, h: int, ok: bool):
    """A thumbnail or a mis-cut frame is not stretched into a plausible patch and scored (it could be
    accepted); mirrors cc/tests/validation_test.cc BilinearPolicyRefusesSizesBeyondTwiceOrHalfTheModels."""
    manifest = contract_manifest(resize="bilinear")  # the model takes 8x8x1
    request = pb.InspectRequest()
    add_raw(request, w=w, h=h, value=9)
    if ok:
        batch = validate_and_decode(request, manifest, RequestLimits())
        assert batch.images.shape[1:3] == (8, 8) and batch.resized == int((w, h) != (8, 8))
        return
    message = refusal(request, manifest)
    assert message == (
        f"patch 0 (region R0, frame 0, vial 0): image is {w}x{h}x1 but model vials takes 8x8x1; its resize "
        'policy "bilinear" resizes widths 4-16 and heights 4-16 only (at most 2x either way)'
    )


def test_a_heatmap_the_png_encoder_fails_on_is_a_value_error(monkeypatch):
    """The Python server omits a heatmap whose encoding raised ValueError (counted in heatmaps_omitted, the
    verdict kept), as the C++ server does; OpenCV's own error must arrive as that, not end the product."""
    import cv2

    def broken(*args, **kwargs):
        raise cv2.error("out of memory in the encoder")

    assert contract.encode_heatmap_png(np.zeros((4, 4), np.float32)).startswith(b"\x89PNG")
    monkeypatch.setattr(contract.cv2, "imencode", broken)
    with pytest.raises(ValueError, match="PNG encode failed: .*out of memory in the encoder"):
        contract.encode_heatmap_png(np.zeros((4, 4), np.float32))


def test_blank_patches_are_listed_and_the_manifest_field_is_reject_or_inspect():
    """validate_and_decode lists the patches whose pixels all have one value (cc/tests/validation_test.cc
    BlankPatchesAreListed); the manifest's preprocessing.blank_patches decides what the server does with them
    (cc/tests/manifest_test.cc BlankPatchesIsRejectOrInspect)."""
    import json

    from tfad.serving.contract import ManifestError, blank_patch_detail, parse_manifest

    request = pb.InspectRequest()
    add_raw(request, value=0, vial=0)
    add_raw(request, value=7, vial=1).data = bytes([7] * 63 + [8])  # one pixel differs: an image
    add_raw(request, region="R1", value=255, vial=2)
    batch = validate_and_decode(request, MANIFEST, RequestLimits())
    assert batch.blank == [0, 2]
    assert blank_patch_detail(request, batch) == (
        "patch 0 (region R0, frame 0, vial 0) is blank: every pixel is 0 (a camera or grab failure?); "
        "2 blank patches in all"
    )
    # RGB: blank when every pixel has the first pixel's three values, even when they differ from each other
    rgb = contract_manifest(channels=3)
    request = pb.InspectRequest()
    red = bytes([255, 0, 0]) * 64
    add_raw(request, c=3, vial=0).data = red
    add_raw(request, c=3, vial=1).data = red[:100] + bytes([1]) + red[101:]  # pixel 33's green value
    batch = validate_and_decode(request, rgb, RequestLimits())
    assert batch.blank == [0]
    assert blank_patch_detail(request, batch) == (
        "patch 0 (region R0, frame 0, vial 0) is blank: every pixel is (255, 0, 0) "
        "(a camera or grab failure?)"
    )
    manifest = {
        "format": "tfad-manifest/1", "name": "vials", "version": 1,
        "input": {"height": 8, "width": 8, "channels": 1},
        "preprocessing": {"resize": "reject"},
        "thresholds": {"regions": {"R0": 0.5}},
    }  # fmt: skip
    assert parse_manifest(json.dumps(manifest)).reject_blank_patches is False  # absent: older manifests
    for value, expected in (("reject", True), ("inspect", False)):
        manifest["preprocessing"]["blank_patches"] = value
        assert parse_manifest(json.dumps(manifest)).reject_blank_patches is expected
    manifest["preprocessing"]["blank_patches"] = "ignore"
    with pytest.raises(
        ManifestError, match='preprocessing.blank_patches is "ignore", must be "reject" or "inspect"'
    ):
        parse_manifest(json.dumps(manifest))
