"""The Python reference server of tfad.inspection.v1 (``tfad serve``).

Same API, validation, fail-safe rules and model lifecycle as the C++ line-PC server (cc/); meant for sites
without the C++ build and as the baseline of benchmarks/latency.py. Inference runs on a fixed pool of
threads with a bounded queue; the RPC thread waits for it only until the deadline.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tfad import __version__
from tfad.serving.contract import (
    InvalidRequest,
    RequestLimits,
    acquisition_check_detail,
    blank_patch_detail,
    decide_product,
    default_max_message_bytes,
    encode_heatmap_png,
    validate_and_decode,
    validate_request_fields,
)
from tfad.serving.models import ModelManager, RunFailed
from tfad.serving.protos import SERVICE_NAME, pb, pb_grpc

log = logging.getLogger("tfad.serving")

_STATES = {
    "loading": pb.VERSION_STATE_LOADING,
    "available": pb.VERSION_STATE_AVAILABLE,
    "retired": pb.VERSION_STATE_RETIRED,
    "failed": pb.VERSION_STATE_FAILED,
}


@dataclass
class ServerConfig:
    """Settings of the Python server (the C++ flags of the same name, in snake case)."""

    models_root: str = "savedmodels"
    models: list[str] = field(default_factory=list)
    listen: str = "127.0.0.1:8500"
    poll_interval_ms: int = 5000
    cycle_budget_ms: int = 450
    # Python needs more time than C++ to send a reply (GIL, serialization): 60 ms measured 99.9 % in time
    # with both cores busy (benchmarks/deadline_under_load.py, docs/serving.md)
    reply_margin_ms: int = 60
    inference_threads: int = 1
    max_queue: int = 8
    warmup_batch: int = 60
    max_rpc_threads: int = 8
    max_message_bytes: int = 0  # 0 = contract.default_max_message_bytes(limits): 66 MiB by default
    limits: RequestLimits = field(default_factory=RequestLimits)
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    log_requests: bool = True


# The C++ server's ranges for the settings both servers share (cc/server_flags.cc), inclusive.
SETTING_RANGES: dict[str, tuple[int, int]] = {
    "poll_interval_ms": (0, 86_400_000),
    "cycle_budget_ms": (1, 600_000),
    "reply_margin_ms": (0, 10_000),
    "inference_threads": (1, 64),
    "max_queue": (1, 10_000),
    "warmup_batch": (1, 4096),
    "max_rpc_threads": (2, 1024),
}
LIMIT_RANGES: dict[str, tuple[int, int]] = {
    "max_patches": (1, 100_000),
    "max_patch_bytes": (1, 1 << 30),
    "max_image_pixels": (1, 1 << 31),
}


class ServerConfigError(ValueError):
    """A server setting out of range or inconsistent with another; the message names the flag."""


def tensorflow_default_inter_op_threads() -> int:
    """The inter-op threads TensorFlow gives this process when none are set: ``$TF_NUM_INTEROP_THREADS``,
    else one per CPU the process may run on (its affinity mask, which a container or taskset narrows)."""
    import os

    try:
        from_env = int(os.environ.get("TF_NUM_INTEROP_THREADS", "0"))
    except ValueError:
        from_env = 0
    if from_env > 0:
        return from_env
    if hasattr(os, "sched_getaffinity"):  # Linux
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def check_server_config(config: ServerConfig, inter_op_threads: int | None = None) -> None:
    """Raise ``ServerConfigError`` naming the first setting of ``config`` out of the C++ server's range, or an
    inference pool larger than TensorFlow's inter-op pool (``inter_op_threads``; by default the process's,
    ``tensorflow_default_inter_op_threads``), which the C++ server refuses too."""
    for owner, ranges in ((config, SETTING_RANGES), (config.limits, LIMIT_RANGES)):
        for name, (low, high) in ranges.items():
            value = getattr(owner, name)
            if not (isinstance(value, int) and low <= value <= high):
                raise ServerConfigError(
                    f"--{name.replace('_', '-')}: {value!r} is out of range [{low}, {high}]"
                )
    pool = tensorflow_default_inter_op_threads() if inter_op_threads is None else inter_op_threads
    if config.inference_threads > pool:
        # Every inference thread's ops run on this one pool: fewer pool threads than inference threads queue
        # their products behind each other (measured on the C++ server, docs/performance.md).
        raise ServerConfigError(
            f"--inference-threads={config.inference_threads} is more than the {pool} inter-op threads "
            "TensorFlow gives this process ($TF_NUM_INTEROP_THREADS, else one per CPU it may run on): the "
            "inference threads would queue behind each other; set "
            f"TF_NUM_INTEROP_THREADS={config.inference_threads} or give fewer inference threads"
        )


class _BoundedExecutor:
    """A fixed thread pool that refuses work beyond ``max_queue`` waiting tasks."""

    def __init__(self, threads: int, max_queue: int) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="inference"
        )
        self._slots = threading.Semaphore(threads + max_queue)

    def try_submit(self, fn, *args) -> concurrent.futures.Future | None:
        if not self._slots.acquire(blocking=False):
            return None
        future = self._pool.submit(fn, *args)
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class InspectionServicer(pb_grpc.InspectionServiceServicer):
    """tfad.inspection.v1.InspectionService over a ModelManager."""

    def __init__(self, manager: ModelManager, config: ServerConfig) -> None:
        self.manager, self.config = manager, config
        self._executor = _BoundedExecutor(config.inference_threads, config.max_queue)

    def close(self) -> None:
        self._executor.shutdown()

    def Inspect(self, request, context):  # noqa: N802 (gRPC method name)
        received = time.monotonic()
        deadline = received + self.config.cycle_budget_ms / 1000.0
        remaining = context.time_remaining()
        if remaining is not None:
            deadline = min(deadline, received + remaining - self.config.reply_margin_ms / 1000.0)
        try:
            return self.inspect_until(received, deadline, request, context)
        except _Abort as abort:
            context.abort(abort.code, abort.message)  # raises; outside the catch-all below
        except Exception as err:  # never crash, never accept
            ids_ok = _ids_ok(request)  # never echo an over-long or binary id
            log.exception("event=inspect_internal_error product_id=%r", request.product_id if ids_ok else "")
            return pb.InspectReply(
                product_id=request.product_id if ids_ok else "",
                run_id=request.run_id if ids_ok else "",
                verdict=pb.VERDICT_REJECT_INCOMPLETE,
                incomplete_reason=pb.INCOMPLETE_REASON_INFERENCE_ERROR,
                incomplete_detail=f"internal error: {err}",
            )

    def inspect_until(self, received: float, deadline: float, request, context) -> pb.InspectReply:
        """Inspect with the deadline resolved (monotonic clock)."""
        # The ids and enums first: nothing below may echo or log an over-long or binary id.
        try:
            validate_request_fields(request)
        except InvalidRequest as err:
            invalid_slot = self.manager.find(request.model_name)
            if invalid_slot is not None:
                invalid_slot.stats.record("INVALID")
            log.warning("event=inspect_invalid error=%r", str(err))
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        reply = pb.InspectReply(product_id=request.product_id, run_id=request.run_id)
        t = {"decode": 0.0, "queue": 0.0, "inference": 0.0}
        slot = self.manager.find(request.model_name)

        def finish(
            verdict: int, reason: int = pb.INCOMPLETE_REASON_UNSPECIFIED, detail: str = ""
        ) -> pb.InspectReply:
            reply.verdict = verdict
            if verdict == pb.VERDICT_REJECT_INCOMPLETE:
                reply.incomplete_reason, reply.incomplete_detail, reply.product_score = reason, detail, 0.0
                del reply.patches[:]
            total_ms = (time.monotonic() - received) * 1000.0
            reply.timings.decode_ms, reply.timings.queue_ms = t["decode"], t["queue"]
            reply.timings.inference_ms, reply.timings.total_ms = t["inference"], total_ms
            outcome = {pb.VERDICT_ACCEPT: "ACCEPT", pb.VERDICT_REJECT: "REJECT"}.get(verdict, "INCOMPLETE")
            if slot is not None:
                slot.stats.record(outcome, total_ms, t["inference"])
            if self.config.log_requests or outcome == "INCOMPLETE":
                log.log(
                    logging.WARNING if outcome == "INCOMPLETE" else logging.INFO,
                    "event=inspect model=%s version=%d station=%r product_id=%r run_id=%r patches=%d "
                    "verdict=%s "
                    "reason=%s detail=%r product_score=%.6f decode_ms=%.3f queue_ms=%.3f inference_ms=%.3f "
                    "total_ms=%.3f",
                    reply.model_name,
                    reply.model_version,
                    request.station_id,
                    request.product_id,
                    request.run_id,
                    len(request.patches),
                    pb.Verdict.Name(verdict),
                    pb.IncompleteReason.Name(reason) if outcome == "INCOMPLETE" else "",
                    detail,
                    reply.product_score,
                    t["decode"],
                    t["queue"],
                    t["inference"],
                    total_ms,
                )
            return reply

        if slot is None:
            message = f'unknown model "{request.model_name}"; this server serves: {self.manager.name_list()}'
            log.warning("event=inspect_invalid product_id=%r error=%r", request.product_id, message)
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, message)
        servable = slot.current()
        if servable is None:
            return finish(
                pb.VERDICT_REJECT_INCOMPLETE,
                pb.INCOMPLETE_REASON_MODEL_UNAVAILABLE,
                f"no version of model {slot.name} is loaded (see GetModelStatus)",
            )
        reply.model_name, reply.model_version = servable.name, servable.version
        try:
            batch = validate_and_decode(request, servable.manifest, self.config.limits)
        except InvalidRequest as err:
            slot.stats.record("INVALID")
            log.warning(
                "event=inspect_invalid model=%s station=%r product_id=%r error=%r",
                servable.name,
                request.station_id,
                request.product_id,
                str(err),
            )
            _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(err))
        decoded = time.monotonic()
        t["decode"] = (decoded - received) * 1000.0
        if servable.manifest.reject_blank_patches and batch.blank:
            return finish(
                pb.VERDICT_REJECT_INCOMPLETE,
                pb.INCOMPLETE_REASON_BLANK_PATCH,
                blank_patch_detail(request, batch),
            )
        acquisition_failure = acquisition_check_detail(request, servable.manifest, batch)
        if acquisition_failure is not None:
            return finish(
                pb.VERDICT_REJECT_INCOMPLETE, pb.INCOMPLETE_REASON_ACQUISITION_CHECK, acquisition_failure
            )
        budget_detail = (
            f"no verdict within the time available ({(deadline - received) * 1000.0:.3f} ms: "
            "the earlier of the "
            "cycle budget and the client deadline minus the reply margin)"
        )
        if decoded >= deadline:
            return finish(
                pb.VERDICT_REJECT_INCOMPLETE,
                pb.INCOMPLETE_REASON_DEADLINE_EXCEEDED,
                budget_detail + "; deadline passed while decoding",
            )
        want_heatmaps = request.heatmaps != pb.HEATMAP_MODE_NONE

        def job():
            started = time.monotonic()
            if started >= deadline:  # expired while queued: skip the TensorFlow work
                return started, started, None, None
            scores, heatmaps = servable.run(batch.images, want_heatmaps)
            return started, time.monotonic(), scores, heatmaps

        future = self._executor.try_submit(job)
        if future is None:
            return finish(
                pb.VERDICT_REJECT_INCOMPLETE,
                pb.INCOMPLETE_REASON_OVERLOADED,
                "inference queue full (--max_queue); request not run",
            )
        try:
            started, finished, scores, heatmaps = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except concurrent.futures.TimeoutError:
            return finish(pb.VERDICT_REJECT_INCOMPLETE, pb.INCOMPLETE_REASON_DEADLINE_EXCEEDED, budget_detail)
        except RunFailed as err:
            return finish(pb.VERDICT_REJECT_INCOMPLETE, pb.INCOMPLETE_REASON_INFERENCE_ERROR, str(err))
        t["queue"], t["inference"] = (started - decoded) * 1000.0, (finished - started) * 1000.0
        if scores is None:
            return finish(
                pb.VERDICT_REJECT_INCOMPLETE,
                pb.INCOMPLETE_REASON_DEADLINE_EXCEEDED,
                budget_detail + ": deadline passed while queued",
            )
        decision = decide_product(scores, batch.thresholds)
        if decision.verdict == "INCOMPLETE":
            return finish(pb.VERDICT_REJECT_INCOMPLETE, pb.INCOMPLETE_REASON_INFERENCE_ERROR, decision.error)
        mode = request.heatmaps
        for i, p in enumerate(request.patches):
            rejected = decision.patch_rejected[i]
            result = reply.patches.add(
                index=i,
                region=p.region,
                frame=p.frame,
                vial=p.vial,
                score=float(scores[i]),
                threshold=float(batch.thresholds[i]),
                decision=pb.PATCH_DECISION_REJECT if rejected else pb.PATCH_DECISION_ACCEPT,
            )
            if heatmaps is not None and (
                mode == pb.HEATMAP_MODE_ALL or (mode == pb.HEATMAP_MODE_REJECTED and rejected)
            ):
                # Heatmaps are extras: never let them push the verdict past the deadline.
                if time.monotonic() >= deadline:
                    reply.heatmaps_omitted += 1
                    continue
                try:
                    result.heatmap_png = encode_heatmap_png(heatmaps[i])
                except ValueError:
                    reply.heatmaps_omitted += 1
        reply.product_score = decision.product_score
        return finish(pb.VERDICT_ACCEPT if decision.verdict == "ACCEPT" else pb.VERDICT_REJECT)

    def GetModelStatus(self, request, context):  # noqa: N802 (gRPC method name)
        try:
            return self._model_status(request)
        except _Abort as abort:
            context.abort(abort.code, abort.message)

    def _model_status(self, request) -> pb.GetModelStatusReply:
        context = None
        reply = pb.GetModelStatusReply(server_kind="python", server_version=__version__)
        if request.model_name:
            slot = self.manager.find(request.model_name)
            if slot is None:
                _abort(
                    context,
                    grpc.StatusCode.NOT_FOUND,
                    f'unknown model "{request.model_name}"; this server serves: {self.manager.name_list()}',
                )
            slots = [slot]
        else:
            slots = self.manager.slots
        for slot in slots:
            m = reply.models.add(name=slot.name, base_path=str(slot.base_path))
            current = slot.current()
            if current is not None:
                mf = current.manifest
                m.serving_version = current.version
                m.input_height, m.input_width, m.input_channels = mf.height, mf.width, mf.channels
                m.resize_policy = mf.resize
            for rec in slot.versions():
                m.versions.add(
                    version=rec.version,
                    state=_STATES[rec.state],
                    error=rec.error,
                    state_since_unix_s=rec.state_since_unix_s,
                    load_ms=rec.load_ms,
                )
            s = slot.stats.snapshot()
            m.stats.requests_total, m.stats.accepted, m.stats.rejected = s["total"], s["ACCEPT"], s["REJECT"]
            m.stats.rejected_incomplete, m.stats.invalid = s["INCOMPLETE"], s["INVALID"]
            m.stats.latency_p50_ms, m.stats.latency_p99_ms = s["p50"], s["p99"]
            m.stats.latency_max_ms, m.stats.inference_mean_ms = s["max"], s["inference_mean"]
        return reply


def _ids_ok(request) -> bool:
    try:
        validate_request_fields(request)
    except InvalidRequest:
        return False
    return True


class _Abort(Exception):
    """Ends an RPC with a status; turned into context.abort by the RPC method (grpc's abort raises a bare
    Exception, which the fail-safe catch-all must not swallow)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _abort(context, code: grpc.StatusCode, message: str) -> None:
    raise _Abort(code, message)


@dataclass
class RunningServer:
    """A started Python server (for ``tfad serve``, tests and benchmarks)."""

    server: grpc.Server
    port: int
    manager: ModelManager
    servicer: InspectionServicer
    health: health.HealthServicer

    def stop(self, grace_s: float = 1.0) -> None:
        self.manager.stop()
        self.server.stop(grace_s).wait()
        self.servicer.close()


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def start_server(config: ServerConfig) -> RunningServer:
    """Load the models (first poll), start serving and polling; returns once listening. Raises
    ``ServerConfigError`` for a setting the C++ server would refuse too (``check_server_config``)."""
    check_server_config(config)
    manager = ModelManager(config.models_root, config.models, config.warmup_batch)
    manager.poll_all()
    servicer = InspectionServicer(manager, config)
    max_message_bytes = config.max_message_bytes or default_max_message_bytes(config.limits)
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
    ]
    # Every RPC the server admits holds its request message, whether a thread handles it or it waits for
    # one: admitting no more than there are threads bounds the messages held to threads x message limit
    # (docs/serving.md, "Memory"); a call beyond it gets RESOURCE_EXHAUSTED at once, which firmware rejects.
    server = grpc.server(
        concurrent.futures.ThreadPoolExecutor(max_workers=config.max_rpc_threads, thread_name_prefix="rpc"),
        options=options,
        maximum_concurrent_rpcs=config.max_rpc_threads,
    )
    pb_grpc.add_InspectionServiceServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.tls_cert:
        credentials = grpc.ssl_server_credentials(
            [(_read(config.tls_key), _read(config.tls_cert))],
            root_certificates=_read(config.tls_client_ca) if config.tls_client_ca else None,
            require_client_auth=bool(config.tls_client_ca),
        )
        port = server.add_secure_port(config.listen, credentials)
    else:
        port = server.add_insecure_port(config.listen)
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    server.start()
    running = RunningServer(server, port, manager, servicer, health_servicer)
    _set_health(running)
    manager.start_polling(config.poll_interval_ms / 1000.0)

    def watch_health() -> None:
        serving = manager.all_serving()
        while not manager._stop.wait(0.1):
            now = manager.all_serving()
            if now != serving:
                serving = now
                _set_health(running)
                log.info("event=health status=%s", "SERVING" if now else "NOT_SERVING")

    threading.Thread(target=watch_health, name="health", daemon=True).start()
    log.info(
        "event=limits max_patches=%d max_patch_bytes=%d max_message_bytes=%d max_rpc_threads=%d",
        config.limits.max_patches,
        config.limits.max_patch_bytes,
        max_message_bytes,
        config.max_rpc_threads,
    )
    log.info(
        "event=serving listen=%s port=%d tls=%s models=%s health=%s",
        config.listen,
        port,
        "mutual" if config.tls_client_ca else ("server" if config.tls_cert else "off"),
        manager.name_list(),
        "SERVING" if manager.all_serving() else "NOT_SERVING",
    )
    return running


def _set_health(running: RunningServer) -> None:
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if running.manager.all_serving()
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    running.health.set("", status)
    running.health.set(SERVICE_NAME, status)


def serve_forever(config: ServerConfig) -> int:
    """Run until SIGINT/SIGTERM; returns an exit code."""
    import signal

    running = start_server(config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    log.info("event=stopping")
    running.stop()
    return 0


__all__ = [
    "ServerConfig",
    "ServerConfigError",
    "check_server_config",
    "tensorflow_default_inter_op_threads",
    "InspectionServicer",
    "RunningServer",
    "start_server",
    "serve_forever",
]
