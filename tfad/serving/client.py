"""A small typed client of tfad.inspection.v1 for integrators and tests.

    from tfad.serving.client import InspectionClient, PatchSpec
    with InspectionClient("127.0.0.1:8500") as client:
        result = client.inspect(images, regions=["R0", "R1", ...], product_id="P1", timeout_s=0.45)
        if result.accepted: ...

``InspectResult.accepted`` is the fail-safe reading: True only for an OK reply with VERDICT_ACCEPT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import numpy as np

from tfad.serving.protos import pb, pb_grpc

HEATMAP_MODES = {
    "none": pb.HEATMAP_MODE_NONE,
    "rejected": pb.HEATMAP_MODE_REJECTED,
    "all": pb.HEATMAP_MODE_ALL,
}


@dataclass(frozen=True)
class PatchResult:
    """One patch of an InspectReply."""

    index: int
    region: str
    frame: int
    vial: int
    score: float
    threshold: float
    rejected: bool
    heatmap_png: bytes


@dataclass(frozen=True)
class InspectResult:
    """A decoded InspectReply."""

    verdict: str  # "ACCEPT" | "REJECT" | "REJECT_INCOMPLETE"
    incomplete_reason: str
    incomplete_detail: str
    product_score: float
    patches: tuple[PatchResult, ...]
    model_name: str
    model_version: int
    timings_ms: dict[str, float]
    reply: object  # the raw pb.InspectReply

    @property
    def accepted(self) -> bool:
        return self.verdict == "ACCEPT"


def build_request(
    images: np.ndarray | Sequence[np.ndarray],
    regions: Sequence[str],
    frames: Sequence[int] | None = None,
    vials: Sequence[int] | None = None,
    product_id: str = "",
    run_id: str = "",
    model_name: str = "",
    heatmaps: str = "none",
    station_id: str = "",
    encoding: str = "raw",
):
    """Build an InspectRequest from uint8 images (HxW, HxWxC, or a [N, H, W, C] array).

    ``regions`` (and optional ``frames``/``vials``) give each patch's identity; ``encoding`` is "raw" or
    "png"; ``heatmaps`` is "none", "rejected" or "all".
    """
    import cv2

    images = list(images)
    n = len(images)
    if len(regions) != n:
        raise ValueError(f"{n} images but {len(regions)} regions")
    frames = list(frames) if frames is not None else [0] * n
    vials = list(vials) if vials is not None else list(range(n))
    if heatmaps not in HEATMAP_MODES:
        raise ValueError(f"heatmaps must be one of {sorted(HEATMAP_MODES)}")
    request = pb.InspectRequest(
        product_id=product_id,
        run_id=run_id,
        model_name=model_name,
        heatmaps=HEATMAP_MODES[heatmaps],
        station_id=station_id,
    )
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise ValueError(f"image {i} is {image.dtype}; send uint8")
        if image.ndim == 2:
            image = image[:, :, None]
        h, w, c = image.shape
        patch = request.patches.add(region=regions[i], frame=int(frames[i]), vial=int(vials[i]))
        if encoding == "png":
            bgr = image[:, :, 0] if c == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            ok, buf = cv2.imencode(".png", bgr)
            if not ok:
                raise ValueError(f"cannot PNG-encode image {i}")
            patch.encoding, patch.data = pb.IMAGE_ENCODING_PNG, buf.tobytes()
        elif encoding == "raw":
            patch.encoding = pb.IMAGE_ENCODING_RAW_UINT8
            patch.data = np.ascontiguousarray(image).tobytes()
            patch.width, patch.height, patch.channels = w, h, c
        else:
            raise ValueError('encoding must be "raw" or "png"')
    return request


def parse_reply(reply) -> InspectResult:
    """Turn a pb.InspectReply into an InspectResult."""
    incomplete = reply.verdict == pb.VERDICT_REJECT_INCOMPLETE
    return InspectResult(
        verdict=pb.Verdict.Name(reply.verdict).removeprefix("VERDICT_"),
        incomplete_reason=pb.IncompleteReason.Name(reply.incomplete_reason).removeprefix("INCOMPLETE_REASON_")
        if incomplete
        else "",
        incomplete_detail=reply.incomplete_detail,
        product_score=reply.product_score,
        patches=tuple(
            PatchResult(
                p.index,
                p.region,
                p.frame,
                p.vial,
                p.score,
                p.threshold,
                p.decision == pb.PATCH_DECISION_REJECT,
                p.heatmap_png,
            )
            for p in reply.patches
        ),
        model_name=reply.model_name,
        model_version=reply.model_version,
        timings_ms={
            "decode": reply.timings.decode_ms,
            "queue": reply.timings.queue_ms,
            "inference": reply.timings.inference_ms,
            "total": reply.timings.total_ms,
        },
        reply=reply,
    )


class InspectionClient:
    """A channel to one inspection server (C++ or Python)."""

    def __init__(
        self,
        target: str,
        root_certificates: bytes | None = None,
        client_key: bytes | None = None,
        client_cert: bytes | None = None,
        max_message_bytes: int = 256 << 20,
    ) -> None:
        options = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
        ]
        if root_certificates is not None:
            creds = grpc.ssl_channel_credentials(root_certificates, client_key, client_cert)
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(target, options=options)
        self.stub = pb_grpc.InspectionServiceStub(self.channel)

    def __enter__(self) -> InspectionClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until the channel connects (raises grpc.FutureTimeoutError)."""
        grpc.channel_ready_future(self.channel).result(timeout=timeout_s)

    def inspect_request(self, request, timeout_s: float | None = 0.45) -> InspectResult:
        """Send a prepared InspectRequest; raises grpc.RpcError on a non-OK status."""
        return parse_reply(self.stub.Inspect(request, timeout=timeout_s))

    def inspect(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        regions: Sequence[str],
        timeout_s: float | None = 0.45,
        **request_fields,
    ) -> InspectResult:
        """Build a request (see build_request) and inspect it."""
        return self.inspect_request(build_request(images, regions, **request_fields), timeout_s)

    def model_status(self, model_name: str = "", timeout_s: float | None = 5.0):
        """GetModelStatus (the raw pb.GetModelStatusReply)."""
        return self.stub.GetModelStatus(pb.GetModelStatusRequest(model_name=model_name), timeout=timeout_s)

    def health(self, service: str = "", timeout_s: float = 5.0) -> str:
        """grpc.health.v1 status name: SERVING, NOT_SERVING, ..."""
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        reply = health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
