"""Access to the generated tfad.inspection.v1 modules (``scripts/gen_protos.sh`` writes them)."""

from __future__ import annotations

try:
    from tfad.serving.proto_gen import inspection_pb2 as pb
    from tfad.serving.proto_gen import inspection_pb2_grpc as pb_grpc
except ImportError as err:  # pragma: no cover - depends on the build step
    raise ImportError(
        "tfad.serving needs the generated gRPC stubs in tfad/serving/proto_gen/: run "
        "`make protos` (or `bash scripts/gen_protos.sh .venv/bin/python`)"
    ) from err

SERVICE_NAME = "tfad.inspection.v1.InspectionService"

__all__ = ["pb", "pb_grpc", "SERVICE_NAME"]
