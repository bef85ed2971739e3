"""``tfad serve``: the Python reference inspection server (same API and rules as cc/tfad_server)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the ``serve`` sub-command."""
    p = subparsers.add_parser(
        "serve",
        help="serve SavedModels over gRPC (tfad.inspection.v1; Python reference server)",
        description="Python reference server of tfad.inspection.v1. Same flags and fail-safe rules as the "
        "C++ "
        "tfad_server (docs/serving.md); flags accept dashes or underscores.",
    )
    add = p.add_argument
    add("--models-root", "--models_root", default="savedmodels", help="directory of <name>/<version>/ models")
    add("--models", default="", help="comma-separated model names (default: all under --models-root)")
    add("--listen", default="127.0.0.1:8500", help="HOST:PORT (loopback by default; port 0 = any free port)")
    add("--poll-interval-ms", "--poll_interval_ms", type=int, default=5000, help="new-version poll (0 = off)")
    add("--cycle-budget-ms", "--cycle_budget_ms", type=int, default=450, help="request-to-verdict budget")
    add("--reply-margin-ms", "--reply_margin_ms", type=int, default=60, help="time kept before the deadline")
    add("--inference-threads", "--inference_threads", type=int, default=1, help="fixed inference threads")
    add("--max-queue", "--max_queue", type=int, default=8, help="waiting products before OVERLOADED")
    add("--warmup-batch", "--warmup_batch", type=int, default=60, help="images in the warm-up run")
    add("--max-patches", "--max_patches", type=int, default=256, help="most patches per product")
    add("--max-patch-bytes", "--max_patch_bytes", type=int, default=256 << 10, help="most bytes per patch")
    add(
        "--max-image-pixels",
        "--max_image_pixels",
        type=int,
        default=4096 * 4096,
        help="most pixels per patch",
    )
    add("--max-rpc-threads", "--max_rpc_threads", type=int, default=8, help="gRPC handler threads")
    add(
        "--max-message-bytes",
        "--max_message_bytes",
        type=int,
        default=0,
        help="gRPC message limit; 0 = derived from --max-patches and --max-patch-bytes (66 MiB by default)",
    )
    add(
        "--tls-cert",
        "--tls_cert",
        default="",
        help="server certificate chain (PEM); enables TLS with --tls-key",
    )
    add("--tls-key", "--tls_key", default="", help="server private key (PEM)")
    add(
        "--tls-client-ca", "--tls_client_ca", default="", help="require client certificates signed by this CA"
    )
    add(
        "--log-requests",
        "--log_requests",
        choices=["true", "false"],
        default="true",
        help="one line per call",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start the server and block until SIGINT/SIGTERM."""
    from tfad.cli import CLIError
    from tfad.serving.contract import RequestLimits
    from tfad.serving.server import ServerConfig, ServerConfigError, check_server_config, serve_forever

    if bool(args.tls_cert) != bool(args.tls_key):
        raise CLIError("--tls-cert and --tls-key must be given together")
    if args.max_message_bytes != 0 and not 1024 <= args.max_message_bytes <= 2047 << 20:
        raise CLIError(
            f"--max-message-bytes: {args.max_message_bytes} is out of range "
            f"(0 = derived, or [1024, {2047 << 20}])"
        )
    if args.tls_client_ca and not args.tls_cert:
        raise CLIError("--tls-client-ca needs --tls-cert and --tls-key")
    config = ServerConfig(
        models_root=args.models_root,
        models=[m for m in args.models.split(",") if m],
        listen=args.listen,
        poll_interval_ms=args.poll_interval_ms,
        cycle_budget_ms=args.cycle_budget_ms,
        reply_margin_ms=args.reply_margin_ms,
        inference_threads=args.inference_threads,
        max_queue=args.max_queue,
        warmup_batch=args.warmup_batch,
        max_rpc_threads=args.max_rpc_threads,
        max_message_bytes=args.max_message_bytes,
        limits=RequestLimits(args.max_patches, args.max_patch_bytes, args.max_image_pixels),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        log_requests=args.log_requests == "true",
    )
    try:
        check_server_config(config)
    except ServerConfigError as err:
        raise CLIError(str(err)) from None
    return serve_forever(config)
