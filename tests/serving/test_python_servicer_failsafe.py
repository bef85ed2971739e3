"""The Python server's fail-safe replies, with a model whose outputs a test controls (no TensorFlow): a NaN
score, too few scores, a run that raises and a heatmap of the wrong size are each REJECT_INCOMPLETE /
INFERENCE_ERROR with no patch results, never ACCEPT. Mirrors cc/tests/inspection_service_test.cc
(NanScoresAreRejectIncomplete, InferenceExceptionTest,
ShortHeatmapOutputIsRejectIncompleteNotAnOutOfBoundsRead)."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import pytest
from serving_testutils import add_raw, contract_manifest

from tfad.serving.contract import Manifest
from tfad.serving.models import ModelManager, Servable
from tfad.serving.protos import pb
from tfad.serving.server import InspectionServicer, ServerConfig

MANIFEST = contract_manifest()


class _Context:
    def time_remaining(self):
        return None

    def abort(self, code: grpc.StatusCode, message: str):
        raise AssertionError(f"aborted with {code}: {message}")


def _product(heatmaps: int = pb.HEATMAP_MODE_NONE) -> pb.InspectRequest:
    request = pb.InspectRequest(product_id="P1", run_id="R", model_name="vials", heatmaps=heatmaps)
    for vial, region in enumerate(("R0", "R1", "R0")):
        add_raw(request, region, vial=vial).data = bytes([10]) * 63 + bytes([11 + vial])
    return request


def _inspect(
    tmp_path: Path, runner, request: pb.InspectRequest, manifest: Manifest = MANIFEST
) -> pb.InspectReply:
    (tmp_path / "vials").mkdir(exist_ok=True)
    manager = ModelManager(tmp_path, names=["vials"])
    manager.slots[0]._current = Servable("vials", 1, tmp_path / "vials" / "1", manifest, runner)
    servicer = InspectionServicer(manager, ServerConfig(log_requests=False))
    try:
        return servicer.Inspect(request, _Context())
    finally:
        servicer.close()


def _outputs(scores, heatmap_shape=None):
    def runner(images: np.ndarray) -> dict:
        shape = heatmap_shape or images.shape[:3]
        return {"score": np.asarray(scores, np.float32), "heatmap": np.full(shape, 0.5, np.float32)}

    return runner


def test_a_model_with_scores_under_the_thresholds_is_accepted(tmp_path):
    reply = _inspect(tmp_path, _outputs([0.1, 0.1, 0.1]), _product(pb.HEATMAP_MODE_ALL))
    assert reply.verdict == pb.VERDICT_ACCEPT and len(reply.patches) == 3
    assert all(p.heatmap_png.startswith(b"\x89PNG") for p in reply.patches)


def _raises(images):
    raise RuntimeError("the graph failed")


@pytest.mark.parametrize(
    ("runner", "heatmaps", "detail"),
    [
        (_outputs([0.1, float("nan"), 0.1]), pb.HEATMAP_MODE_NONE, "score"),
        (_outputs([0.1, 0.1, float("inf")]), pb.HEATMAP_MODE_NONE, "score"),
        (_outputs([0.1, 0.1]), pb.HEATMAP_MODE_NONE, "output 'score' has shape [2], expected [3]"),
        (_raises, pb.HEATMAP_MODE_NONE, "model run failed: the graph failed"),
        (_outputs([0.1, 0.1, 0.1], (3, 8, 7)), pb.HEATMAP_MODE_ALL, "output 'heatmap' has shape [3, 8, 7]"),
    ],
    ids=["nan-score", "infinite-score", "too-few-scores", "run-raises", "heatmap-wrong-size"],
)
def test_a_model_that_misbehaves_is_reject_incomplete_never_accept(tmp_path, runner, heatmaps, detail):
    reply = _inspect(tmp_path, runner, _product(heatmaps))
    assert reply.verdict == pb.VERDICT_REJECT_INCOMPLETE
    assert reply.incomplete_reason == pb.INCOMPLETE_REASON_INFERENCE_ERROR
    assert detail in reply.incomplete_detail and len(reply.patches) == 0 and reply.product_score == 0.0


def test_a_blank_patch_is_reject_incomplete_and_not_run_when_the_manifest_says_so(tmp_path):
    runs = []

    def runner(images):
        runs.append(len(images))
        return _outputs([0.1, 0.1, 0.1])(images)

    request = _product()
    request.patches[1].data = bytes([0]) * 64  # a black frame
    assert _inspect(tmp_path, runner, request).verdict == pb.VERDICT_ACCEPT  # "inspect" (absent): scored
    rejecting = contract_manifest(reject_blank_patches=True)
    reply = _inspect(tmp_path, runner, request, rejecting)
    assert reply.verdict == pb.VERDICT_REJECT_INCOMPLETE
    assert reply.incomplete_reason == pb.INCOMPLETE_REASON_BLANK_PATCH
    assert (
        reply.incomplete_detail
        == "patch 1 (region R1, frame 0, vial 1) is blank: every pixel is 0 (a camera or grab failure?)"
    )
    assert len(reply.patches) == 0 and runs == [3]  # not run


def test_a_failed_acquisition_is_reject_incomplete_and_not_run(tmp_path):
    """A patch outside the manifest's acquisition_check (here too dark for R1's limits) is REJECT_INCOMPLETE /
    ACQUISITION_CHECK and the model is not run; without the block the same product is scored and accepted."""
    from tfad.scoring.acquisition import AcquisitionCheck, AcquisitionLimits

    runs = []

    def runner(images):
        runs.append(len(images))
        return _outputs([0.1, 0.1, 0.1])(images)

    request = _product()  # patches of grey 10-13: std about 0.1-0.4
    check = AcquisitionCheck(
        regions={"R1": AcquisitionLimits(11.0, 200.0, 0.0)}, default=AcquisitionLimits(5.0, 250.0, 0.0)
    )
    assert _inspect(tmp_path, runner, request).verdict == pb.VERDICT_ACCEPT and runs == [3]
    reply = _inspect(tmp_path, runner, request, contract_manifest(acquisition_check=check))
    assert (reply.verdict, reply.incomplete_reason) == (
        pb.VERDICT_REJECT_INCOMPLETE,
        pb.INCOMPLETE_REASON_ACQUISITION_CHECK,
    )
    assert reply.incomplete_detail == (
        "patch 1 (region R1, frame 0, vial 1) fails the acquisition check: mean gray 10.0 is below 11.0 "
        "(a lamp, exposure, focus or grab failure?)"
    )
    assert len(reply.patches) == 0 and runs == [3]  # not run the second time


def test_a_region_the_manifest_does_not_list_is_decided_by_the_default_threshold(tmp_path):
    """With thresholds.default set, a patch of an unlisted region (R7) is compared with the default: 0.45 is
    accepted under a default of 0.5 and rejected under 0.4, whatever R0's and R1's thresholds are."""
    request = _product()
    request.patches[2].region = "R7"
    for default, verdict, decision in ((0.5, pb.VERDICT_ACCEPT, False), (0.4, pb.VERDICT_REJECT, True)):
        manifest = contract_manifest(default_threshold=default)
        reply = _inspect(tmp_path, _outputs([0.1, 0.1, 0.45]), request, manifest)
        assert reply.verdict == verdict
        patch = reply.patches[2]
        expected = pb.PATCH_DECISION_REJECT if decision else pb.PATCH_DECISION_ACCEPT
        assert patch.region == "R7" and patch.threshold == pytest.approx(default)
        assert patch.decision == expected


def test_an_acquisition_check_without_statistics_never_passes():
    """A batch decoded without pixel statistics under a manifest with a check (a code path gone wrong) raises,
    which the servicer answers REJECT_INCOMPLETE, rather than letting every patch pass."""
    from tfad.scoring.acquisition import AcquisitionCheck, AcquisitionLimits
    from tfad.serving.contract import DecodedBatch, acquisition_check_detail

    check = AcquisitionCheck(regions={}, default=AcquisitionLimits(5.0, 250.0, 0.0))
    batch = DecodedBatch(images=np.zeros((3, 8, 8, 1), np.uint8), thresholds=np.zeros(3))
    with pytest.raises(RuntimeError, match="no pixel statistics"):
        acquisition_check_detail(_product(), contract_manifest(acquisition_check=check), batch)
    assert acquisition_check_detail(_product(), contract_manifest(), batch) is None  # no check: nothing to do
