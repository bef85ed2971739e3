"""``tfad inspect --server HOST:PORT IMAGES...``: send images as one product and print the verdict."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add the ``inspect`` sub-command."""
    p = subparsers.add_parser(
        "inspect",
        help="send images as one product to an inspection server and print the verdict",
        description="Each image is one patch. The region of a patch is taken from --region, or from a file "
        "name of the line layout f<frame>_v<vial>_<region>.<ext>, else 'all'. Exit code 0 = ACCEPT, "
        "1 = REJECT or incomplete, 2 = usage or RPC error.",
    )
    p.add_argument("images", nargs="+", help="image files (PNG/BMP/JPEG...); read as gray unless --color")
    p.add_argument("--server", default="127.0.0.1:8500", help="HOST:PORT of the server")
    p.add_argument(
        "--region", default="", help="region of every patch (default: from the file name or 'all')"
    )
    p.add_argument("--model", default="", help="model name (default: the server's default model)")
    p.add_argument("--product-id", default="cli", help="product identifier")
    p.add_argument("--run-id", default="", help="run identifier")
    p.add_argument("--timeout-ms", type=int, default=2000, help="gRPC deadline")
    p.add_argument("--heatmaps", choices=["none", "rejected", "all"], default="none", help="heatmaps wanted")
    p.add_argument("--heatmap-dir", default="", help="write returned heatmaps here as PNG")
    p.add_argument("--color", action="store_true", help="send RGB instead of gray")
    p.add_argument("--png", action="store_true", help="send PNG bytes instead of raw pixels")
    p.add_argument("--json", action="store_true", help="print the reply as JSON")
    p.set_defaults(func=run)


def _patch_identity(path: str, default_region: str, index: int) -> tuple[str, int, int]:
    import re
    from pathlib import Path

    m = re.match(r"^f(\d+)_v(\d+)_(.+)$", Path(path).stem)
    if m:
        return default_region or m.group(3), int(m.group(1)), int(m.group(2))
    return default_region or "all", 0, index


def run(args: argparse.Namespace) -> int:
    """Send the product; print the verdict and per-patch scores."""
    import json
    from pathlib import Path

    import cv2
    import grpc

    from tfad.cli import CLIError
    from tfad.serving.client import InspectionClient, build_request

    images, regions, frames, vials = [], [], [], []
    for i, path in enumerate(args.images):
        image = cv2.imread(path, cv2.IMREAD_COLOR if args.color else cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise CLIError(f"cannot read image {path}")
        images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if args.color else image)
        region, frame, vial = _patch_identity(path, args.region, i)
        regions.append(region)
        frames.append(frame)
        vials.append(vial)
    request = build_request(
        images,
        regions,
        frames,
        vials,
        product_id=args.product_id,
        run_id=args.run_id,
        model_name=args.model,
        heatmaps=args.heatmaps,
        station_id="tfad-inspect",
        encoding="png" if args.png else "raw",
    )
    with InspectionClient(args.server) as client:
        try:
            result = client.inspect_request(request, timeout_s=args.timeout_ms / 1000.0)
        except grpc.RpcError as err:
            raise CLIError(f"{err.code().name}: {err.details()}") from None
    if args.heatmap_dir:
        out = Path(args.heatmap_dir)
        out.mkdir(parents=True, exist_ok=True)
        for p, path in zip(result.patches, args.images, strict=True):
            if p.heatmap_png:
                (out / f"{Path(path).stem}_heatmap.png").write_bytes(p.heatmap_png)
    if args.json:
        print(
            json.dumps(
                {
                    "verdict": result.verdict,
                    "incomplete_reason": result.incomplete_reason,
                    "incomplete_detail": result.incomplete_detail,
                    "product_score": result.product_score,
                    "model": result.model_name,
                    "model_version": result.model_version,
                    "timings_ms": result.timings_ms,
                    "patches": [
                        {
                            "image": path,
                            "region": p.region,
                            "score": p.score,
                            "threshold": p.threshold,
                            "rejected": p.rejected,
                        }
                        for p, path in zip(result.patches, args.images, strict=True)
                    ],
                },
                indent=2,
            )
        )
    else:
        detail = (
            f" ({result.incomplete_reason}: {result.incomplete_detail})" if result.incomplete_reason else ""
        )
        print(
            f"{result.verdict}{detail} product_score={result.product_score:.6f} model={result.model_name} "
            f"v{result.model_version} total={result.timings_ms['total']:.1f} ms"
        )
        for p, path in zip(result.patches, args.images, strict=True):
            mark = "REJECT" if p.rejected else "accept"
            print(f"  {mark:6s} score={p.score:.6f} threshold={p.threshold:.6f} region={p.region} {path}")
    return 0 if result.accepted else 1
