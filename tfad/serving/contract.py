"""The serving contract in Python: manifest parsing, request validation/decoding, resize and verdicts.

Mirrors the C++ server (cc/manifest.cc, cc/validation.cc, cc/image_resize.cc, cc/verdict.cc) rule for rule
and message for message, so both servers accept, refuse and decide the same requests the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tfad.data.decode import blank_images, pixel_statistics
from tfad.families import runtimes
from tfad.rundir import MANIFEST_FILE, SAVEDMODEL_RUNTIME
from tfad.scoring.acquisition import LIKELY_CAUSE, AcquisitionCheck
from tfad.serving.protos import pb


class ManifestError(ValueError):
    """The manifest violates the serving contract; the version is not servable."""


class InvalidRequest(ValueError):
    """The request is malformed; answered with INVALID_ARGUMENT and this message."""


RUNTIMES = runtimes()  # "savedmodel", then the runtimes of the families that export without TensorFlow


@dataclass(frozen=True)
class Manifest:
    """The parts of ``tfad_manifest.json`` a server needs."""

    name: str
    version: int
    height: int
    width: int
    channels: int
    resize: str  # "reject" | "bilinear"
    region_thresholds: dict[str, float]
    default_threshold: float | None
    signature_name: str = "serving_default"
    signature_input: str = "images"
    # the signature returning the score alone, run when no heatmap is wanted ("" = none: older exports)
    score_only_signature: str = ""
    score_name: str = ""
    runtime: str = SAVEDMODEL_RUNTIME  # or a family's own (blob analysis: Python server only)
    # preprocessing.blank_patches "reject": a product with a patch whose pixels all have one value is
    # REJECT_INCOMPLETE / BLANK_PATCH, not scored ("inspect", or absent in older manifests: scored)
    reject_blank_patches: bool = False
    # acquisition_check: per-region limits of a patch's mean grey and contrast; a patch outside them is
    # REJECT_INCOMPLETE / ACQUISITION_CHECK, not scored (None, as in older manifests: no check)
    acquisition_check: AcquisitionCheck | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    def threshold_for(self, region: str) -> float | None:
        """The region's threshold, else the default, else None."""
        return self.region_thresholds.get(region, self.default_threshold)

    def region_list(self) -> str:
        return ", ".join(sorted(self.region_thresholds)) or "(none)"


def _positive_int(obj: dict, key: str, path: str) -> int:
    if obj.get(key) is None:
        raise ManifestError(f'manifest: missing "{path}"')
    value = obj[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ManifestError(f'manifest: "{path}" must be a number')
    if not (value >= 1) or value != math.floor(value) or value > 1e9:
        raise ManifestError(f'manifest: "{path}" must be a positive integer')
    return int(value)


def _threshold(value, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ManifestError(f'manifest: "{path}" must be a finite number')
    return float(np.float32(value))


def parse_manifest(text: str) -> Manifest:
    """Parse and validate manifest JSON; raises ManifestError naming the offending field."""
    try:
        root = json.loads(text)
    except json.JSONDecodeError as err:
        raise ManifestError(f"manifest: not a JSON object: {err}") from err
    if not isinstance(root, dict):
        raise ManifestError("manifest: not a JSON object")
    fmt = root.get("format")
    if not isinstance(fmt, str):
        raise ManifestError('manifest: missing "format"')
    if fmt != "tfad-manifest/1":
        raise ManifestError(f'manifest: unsupported format "{fmt}" (this server reads tfad-manifest/1)')
    name = root.get("name")
    if not isinstance(name, str):
        raise ManifestError('manifest: missing "name"')
    version = _positive_int(root, "version", "version")
    inp = root.get("input")
    if not isinstance(inp, dict):
        raise ManifestError('manifest: missing "input"')
    h = _positive_int(inp, "height", "input.height")
    w = _positive_int(inp, "width", "input.width")
    c = _positive_int(inp, "channels", "input.channels")
    if h > 16384 or w > 16384 or c not in (1, 3):
        raise ManifestError("manifest: input must be at most 16384x16384 with 1 or 3 channels")
    if inp.get("dtype", "uint8") != "uint8":
        raise ManifestError(f'manifest: input.dtype is "{inp.get("dtype")}", must be "uint8"')
    if inp.get("layout", "NHWC") != "NHWC":
        raise ManifestError(f'manifest: input.layout is "{inp.get("layout")}", must be "NHWC"')
    resize, blank = "reject", "inspect"
    pre = root.get("preprocessing")
    if pre is not None:
        if not isinstance(pre, dict):
            raise ManifestError('manifest: "preprocessing" must be an object')
        resize = pre.get("resize") or "reject"
        if resize not in ("reject", "bilinear"):
            raise ManifestError(
                f'manifest: preprocessing.resize is "{resize}", must be "reject" or "bilinear"'
            )
        blank = pre.get("blank_patches") or "inspect"
        if blank not in ("reject", "inspect"):
            raise ManifestError(
                f'manifest: preprocessing.blank_patches is "{blank}", must be "reject" or "inspect"'
            )
    runtime = root.get("runtime", SAVEDMODEL_RUNTIME)
    if runtime not in RUNTIMES:
        raise ManifestError(f'manifest: runtime is "{runtime}", must be one of {", ".join(RUNTIMES)}')
    sig = root.get("signature") or {}
    if not isinstance(sig, dict):
        raise ManifestError('manifest: "signature" must be an object')
    outputs = sig.get("outputs")
    if outputs is not None and ("score" not in outputs or "heatmap" not in outputs):
        raise ManifestError('manifest: signature.outputs must include "score" and "heatmap"')
    score_only = sig.get("score_only")
    if score_only is None:  # an export without one: requests without heatmaps run serving_default
        score_only = ""
    if not isinstance(score_only, str):
        raise ManifestError('manifest: "signature.score_only" must be a signature name (a string)')
    score = root.get("score") or {}
    if isinstance(score, dict) and score.get("higher_is_anomalous") is False:
        raise ManifestError(
            "manifest: score.higher_is_anomalous is false; the contract requires higher = more anomalous"
        )
    thresholds = root.get("thresholds")
    if thresholds is None:
        raise ManifestError(
            'manifest: no thresholds ("thresholds" is null or missing): the model is not calibrated and '
            "cannot be served"
        )
    if not isinstance(thresholds, dict):
        raise ManifestError('manifest: "thresholds" must be an object')
    regions_raw = thresholds.get("regions") or {}
    if not isinstance(regions_raw, dict):
        raise ManifestError('manifest: "thresholds.regions" must be an object {region: threshold}')
    regions = {k: _threshold(v, f"thresholds.regions.{k}") for k, v in regions_raw.items()}
    default = thresholds.get("default")
    default_threshold = None if default is None else _threshold(default, "thresholds.default")
    if not regions and default_threshold is None:
        raise ManifestError(
            "manifest: thresholds has no region thresholds and no default: nothing to decide with"
        )
    try:
        acquisition_check = AcquisitionCheck.from_manifest(root.get("acquisition_check"))
    except ValueError as err:
        raise ManifestError(f"manifest: {err}") from None
    return Manifest(
        name=name,
        version=version,
        height=h,
        width=w,
        channels=c,
        resize=resize,
        reject_blank_patches=blank == "reject",
        acquisition_check=acquisition_check,
        region_thresholds=regions,
        default_threshold=default_threshold,
        signature_name=sig.get("name", "serving_default"),
        signature_input=sig.get("input", "images"),
        score_only_signature=score_only,
        score_name=score.get("name", "") if isinstance(score, dict) else "",
        runtime=runtime,
        raw=root,
    )


def load_manifest(version_dir: str | Path) -> Manifest:
    """Read and parse ``<version_dir>/tfad_manifest.json``; errors name the file."""
    path = Path(version_dir) / MANIFEST_FILE
    try:
        text = path.read_text()
    except OSError as err:
        raise ManifestError(f"cannot read {path}") from err
    try:
        return parse_manifest(text)
    except ManifestError as err:
        raise ManifestError(f"{path}: {err}") from err


# --- images -----------------------------------------------------------------------------------------------


def _taps(src: int, dst: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = (np.arange(dst, dtype=np.float64) + 0.5) * (src / dst) - 0.5
    x = np.clip(x, 0.0, src - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, src - 1)
    return lo, hi, (x - lo).astype(np.float32)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a uint8 HWC image with half-pixel centres, no antialiasing, round half up.

    Bit-identical to cc/image_resize.cc (same float32 arithmetic, same order), so both servers feed the
    model the same pixels.
    """
    ylo, yhi, fy = _taps(image.shape[0], height)
    xlo, xhi, fx = _taps(image.shape[1], width)
    fx = fx[None, :, None]
    fy = fy[:, None, None]
    # Gather the taps from the uint8 image and convert only them (exact): converting the whole source first
    # took 4 bytes per sample: 192 MiB and seconds for a 4096x4096 RGB patch at the pixel limit.
    rows_lo, rows_hi = image[ylo], image[yhi]
    a, b = rows_lo[:, xlo].astype(np.float32), rows_lo[:, xhi].astype(np.float32)
    d, e = rows_hi[:, xlo].astype(np.float32), rows_hi[:, xhi].astype(np.float32)
    top = a + (b - a) * fx
    bottom = d + (e - d) * fx
    v = top + (bottom - top) * fy
    return np.clip(np.floor(v + np.float32(0.5)), 0, 255).astype(np.uint8)


_CHANNEL_WORDS = {1: "1 (gray)", 2: "2 (gray+alpha)", 3: "3 (RGB)", 4: "4 (RGBA)"}


def check_png_header(data: bytes, max_pixels: int) -> None:
    """The checks a PNG's header allows without decoding: signature, pixel limit, bit depth. Raises
    ValueError."""
    if len(data) < 8 or data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG (bad signature)")
    if len(data) >= 25:
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        if width * height > max_pixels:
            raise ValueError(f"PNG is {width}x{height}, more than the {max_pixels}-pixel limit")
        if data[24] == 16:
            raise ValueError("16-bit PNG not supported (send 8-bit)")


def _gray_with_alpha(data: bytes) -> bool:
    """Whether a PNG is gray with alpha: colour type 4, or colour type 0 with a tRNS chunk before its image
    data (libpng, the C++ server's decoder, gives both two channels). Reads the chunk headers only."""
    if len(data) < 26 or data[25] not in (0, 4):
        return False
    if data[25] == 4:
        return True
    pos = 8
    while pos + 8 <= len(data):
        kind = data[pos + 4 : pos + 8]
        if kind == b"tRNS":
            return True
        if kind == b"IDAT":
            return False
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    return False


def decode_png(data: bytes, max_pixels: int) -> np.ndarray:
    """Decode an 8-bit PNG to HWC uint8 with the file's channels (RGB order), counted as libpng (the C++
    server) counts them: gray+alpha files, and gray files with a tRNS chunk, have 2. Raises ValueError."""
    check_png_header(data, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("corrupt PNG: cannot decode")
    if image.dtype != np.uint8:
        raise ValueError("16-bit PNG not supported (send 8-bit)")
    if _gray_with_alpha(data):
        # OpenCV returns gray+alpha as BGRA and ignores a gray file's tRNS; no model takes 2 channels, so
        # such a patch is refused either way, now with the C++ server's message (issue 14, abuse campaign).
        gray = image if image.ndim == 2 else image[:, :, 0]
        alpha = image[:, :, 3] if image.ndim == 3 and image.shape[2] == 4 else np.full_like(gray, 255)
        return np.stack([gray, alpha], axis=2)
    if image.ndim == 2:
        return image[:, :, None]
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def encode_heatmap_png(heatmap: np.ndarray) -> bytes:
    """8-bit gray PNG of a heatmap in [0, 1] (clamped; NaN -> 1), value = round(v * 255)."""
    h = np.nan_to_num(heatmap.astype(np.float32), nan=1.0)
    gray = (np.clip(h, 0.0, 1.0) * np.float32(255.0) + np.float32(0.5)).astype(np.uint8)
    try:
        ok, buf = cv2.imencode(".png", gray, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    except cv2.error as err:  # as a ValueError: the server omits that heatmap, as the C++ server does
        raise ValueError(f"PNG encode failed: {err}") from err
    if not ok:
        raise ValueError("PNG encode failed")
    return buf.tobytes()


# --- validation -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestLimits:
    """Request limits (same defaults and meaning as the C++ server's flags)."""

    max_patches: int = 256
    max_patch_bytes: int = 256 << 10  # 4x the line's 256x256x1 raw patch
    max_image_pixels: int = 4096 * 4096


# Longest product_id, run_id, station_id, model_name and patch region (bytes, printable ASCII only); longer
# or non-printable values are refused without being echoed in the reply, the status or the log.
MAX_ID_BYTES = 128
# The "bilinear" resize policy resizes a patch whose width and height are each within this factor of the
# model's (inclusive); cc/validation.h kMaxResizeFactor, where the reason is given.
MAX_RESIZE_FACTOR = 2
# Serialized bytes of one Patch beyond its data, at most (region, varints, enum, prefixes).
PATCH_OVERHEAD_BYTES = 256
# Serialized bytes of an InspectRequest beyond its patches, at most (four ids, heatmap mode, prefixes).
REQUEST_OVERHEAD_BYTES = 4096
# Margin of the default gRPC message limit over the largest legal request.
MESSAGE_MARGIN_BYTES = 1 << 20
# gRPC takes the message limit as an int.
MAX_MESSAGE_BYTES_CAP = 2047 << 20


def largest_legal_request_bytes(limits: RequestLimits) -> int:
    """max_patches * (max_patch_bytes + PATCH_OVERHEAD_BYTES) + REQUEST_OVERHEAD_BYTES."""
    return limits.max_patches * (limits.max_patch_bytes + PATCH_OVERHEAD_BYTES) + REQUEST_OVERHEAD_BYTES


def default_max_message_bytes(limits: RequestLimits) -> int:
    """The default gRPC message limit: the largest legal request + MESSAGE_MARGIN_BYTES, rounded up to a
    whole MiB, at most MAX_MESSAGE_BYTES_CAP (66 MiB with the default limits)."""
    mib = 1 << 20
    rounded = -(-(largest_legal_request_bytes(limits) + MESSAGE_MARGIN_BYTES) // mib) * mib
    return min(MAX_MESSAGE_BYTES_CAP, rounded)


def _check_id(field_name: str, value: str) -> None:
    """At most MAX_ID_BYTES of printable ASCII; the error never contains the value."""
    raw = value.encode("utf-8", "surrogatepass")
    if len(raw) > MAX_ID_BYTES:
        raise InvalidRequest(f"{field_name} is {len(raw)} bytes; at most {MAX_ID_BYTES} allowed")
    for offset, byte in enumerate(raw):
        if byte < 0x20 or byte > 0x7E:
            raise InvalidRequest(
                f"{field_name} has a byte that is not printable ASCII (0x{byte:02x} at offset {offset})"
            )


def validate_request_fields(request) -> None:
    """Check the request's own fields before anything echoes or logs them: product_id, run_id, station_id
    and model_name at most MAX_ID_BYTES of printable ASCII; heatmaps one of the declared HeatmapMode values
    (proto3 keeps unknown enum numbers). Raises InvalidRequest naming the field and the limit."""
    for name in ("product_id", "run_id", "station_id", "model_name"):
        _check_id(name, getattr(request, name))
    if request.heatmaps not in pb.HeatmapMode.values():
        raise InvalidRequest(
            f"heatmaps: unknown HeatmapMode value {request.heatmaps} "
            "(known: 0 HEATMAP_MODE_NONE, 1 HEATMAP_MODE_REJECTED, 2 HEATMAP_MODE_ALL)"
        )


@dataclass
class DecodedBatch:
    """A validated product: uint8 [n, H, W, C] in request order and each patch's threshold."""

    images: np.ndarray
    thresholds: np.ndarray
    resized: int = 0
    # the patches whose pixels (as the model gets them, every channel) are all equal
    blank: list[int] = field(default_factory=list)
    # each patch's mean grey and pixel standard deviation (every channel), when the manifest has an
    # acquisition check (None otherwise: not computed)
    pixel_mean: np.ndarray | None = None
    pixel_std: np.ndarray | None = None


def _dims(w: int, h: int, c: int) -> str:
    return f"{w}x{h}x{c}"


def _check_shape(where: str, w: int, h: int, c: int, manifest: Manifest) -> None:
    """Channels must match the model; size too unless the resize policy is bilinear, and then be within
    MAX_RESIZE_FACTOR of the model's on each side."""
    H, W, C = manifest.height, manifest.width, manifest.channels
    if c != C:
        raise InvalidRequest(
            f"{where}: image has {_CHANNEL_WORDS.get(c, c)} channels; model {manifest.name} takes "
            f"{_CHANNEL_WORDS.get(C, C)}"
        )
    if (h, w) == (H, W):
        return
    if manifest.resize != "bilinear":
        raise InvalidRequest(
            f"{where}: image is {_dims(w, h, c)} but model {manifest.name} takes {_dims(W, H, C)} "
            "and its "
            'manifest\'s resize policy is "reject"'
        )
    factor = MAX_RESIZE_FACTOR
    if not all(size * factor >= model and size <= model * factor for size, model in ((w, W), (h, H))):
        widths, heights = (f"{-(-model // factor)}-{model * factor}" for model in (W, H))
        raise InvalidRequest(
            f"{where}: image is {_dims(w, h, c)} but model {manifest.name} takes {_dims(W, H, C)}; its "
            f'resize policy "bilinear" resizes widths {widths} and heights {heights} only '
            f"(at most {factor}x either way)"
        )


def validate_and_decode(request, manifest: Manifest, limits: RequestLimits) -> DecodedBatch:
    """Validate ``request`` (validate_request_fields first) against the limits and manifest and decode its
    patches.

    Every check that needs no decoded pixels runs on every patch before the batch array is allocated; only
    those that do (a PNG's compressed data, its decoded size and channels) run after it. Raises
    InvalidRequest naming the first problem (patch index, region, frame and vial included).
    """
    validate_request_fields(request)
    n = len(request.patches)
    if n == 0:
        raise InvalidRequest("empty product: the request has no patches")
    if n > limits.max_patches:
        raise InvalidRequest(
            f"{n} patches in one product; at most {limits.max_patches} allowed (--max_patches)"
        )
    H, W, C = manifest.height, manifest.width, manifest.channels
    thresholds = np.zeros(n, np.float32)
    seen: set[tuple[int, int, str]] = set()

    def where_of(i: int, p) -> str:
        return f"patch {i} (region {p.region or '<empty>'}, frame {p.frame}, vial {p.vial})"

    # Pass 1: every check that needs no decoded pixels, on every patch, before the batch array exists.
    raw_images: list[np.ndarray | None] = []
    for i, p in enumerate(request.patches):
        try:
            _check_id("region", p.region)
        except InvalidRequest as err:
            raise InvalidRequest(f"patch {i} (frame {p.frame}, vial {p.vial}): {err}") from None
        where = where_of(i, p)
        if not p.region:
            raise InvalidRequest(f"{where}: region is empty")
        threshold = manifest.threshold_for(p.region)
        if threshold is None:
            raise InvalidRequest(
                f"{where}: unknown region '{p.region}'; model {manifest.name} v{manifest.version} "
                "has thresholds "
                f"for {manifest.region_list()} and no default"
            )
        thresholds[i] = threshold
        key = (p.frame, p.vial, p.region)
        if key in seen:
            raise InvalidRequest(
                f"{where}: duplicate patch (same frame, vial and region as an earlier patch)"
            )
        seen.add(key)
        nbytes = len(p.data)
        if nbytes == 0:
            raise InvalidRequest(f"{where}: no image data")
        if nbytes > limits.max_patch_bytes:
            raise InvalidRequest(
                f"{where}: {nbytes} bytes exceed the limit of {limits.max_patch_bytes} per patch "
                "(--max_patch_bytes)"
            )
        if p.encoding == pb.IMAGE_ENCODING_RAW_UINT8:
            w, h, c = p.width, p.height, p.channels
            if w == 0 or h == 0 or c == 0:
                raise InvalidRequest(
                    f"{where}: raw image needs width, height and channels (got {_dims(w, h, c)})"
                )
            if w * h > limits.max_image_pixels:
                raise InvalidRequest(
                    f"{where}: {_dims(w, h, c)} exceeds the {limits.max_image_pixels}-pixel limit "
                    "(--max_image_pixels)"
                )
            if nbytes != w * h * c:
                raise InvalidRequest(f"{where}: {nbytes} bytes for {_dims(w, h, c)}, expected {w * h * c}")
            _check_shape(where, w, h, c, manifest)
            raw_images.append(np.frombuffer(p.data, np.uint8).reshape(h, w, c))
        elif p.encoding == pb.IMAGE_ENCODING_PNG:
            try:
                check_png_header(p.data, limits.max_image_pixels)
            except ValueError as err:
                raise InvalidRequest(f"{where}: {err}") from None
            raw_images.append(None)
        elif p.encoding == pb.IMAGE_ENCODING_UNSPECIFIED:
            raise InvalidRequest(
                f"{where}: encoding not set (use IMAGE_ENCODING_RAW_UINT8 or IMAGE_ENCODING_PNG)"
            )
        else:
            raise InvalidRequest(
                f"{where}: unknown ImageEncoding value {p.encoding} "
                "(use IMAGE_ENCODING_RAW_UINT8 or IMAGE_ENCODING_PNG)"
            )

    # Pass 2: allocate the batch, decode the PNGs (their remaining checks need the pixels) and fill it.
    images = np.zeros((n, H, W, C), np.uint8)
    resized = 0
    for i, p in enumerate(request.patches):
        image = raw_images[i]
        if image is None:
            where = where_of(i, p)
            try:
                image = decode_png(p.data, limits.max_image_pixels)
            except ValueError as err:
                raise InvalidRequest(f"{where}: {err}") from None
            h, w, c = image.shape
            if (p.width and p.width != w) or (p.height and p.height != h) or (p.channels and p.channels != c):
                raise InvalidRequest(
                    f"{where}: PNG is {_dims(w, h, c)} but the patch declares "
                    f"{_dims(p.width, p.height, p.channels)}"
                )
            _check_shape(where, w, h, c, manifest)
        if image.shape[:2] == (H, W):
            images[i] = image
        else:  # _check_shape allowed it: the bilinear policy
            images[i] = resize_bilinear(image, H, W)
            resized += 1
    blank = [int(i) for i in np.flatnonzero(blank_images(images))]
    pixel_mean = pixel_std = None
    if manifest.acquisition_check is not None:
        pixel_mean, pixel_std = pixel_statistics(images)
    return DecodedBatch(
        images=images,
        thresholds=thresholds,
        resized=resized,
        blank=blank,
        pixel_mean=pixel_mean,
        pixel_std=pixel_std,
    )


def blank_patch_detail(request, batch: DecodedBatch) -> str:
    """The REJECT_INCOMPLETE / BLANK_PATCH detail: the first blank patch, its value and how many there are
    (cc/inspection_service.cc BlankPatchDetail, the same text)."""
    i = batch.blank[0]
    p = request.patches[i]
    first = [int(v) for v in batch.images[i, 0, 0]]
    value = str(first[0]) if len(first) == 1 else "(" + ", ".join(map(str, first)) + ")"
    detail = (
        f"patch {i} (region {p.region}, frame {p.frame}, vial {p.vial}) is blank: every pixel is {value} "
        "(a camera or grab failure?)"
    )
    if len(batch.blank) > 1:
        detail += f"; {len(batch.blank)} blank patches in all"
    return detail


def acquisition_check_detail(request, manifest: Manifest, batch: DecodedBatch) -> str | None:
    """The REJECT_INCOMPLETE / ACQUISITION_CHECK detail when a patch fails the manifest's acquisition check
    (the first one, and how many do), or None when every patch passes or there is no check
    (cc/inspection_service.cc AcquisitionCheckDetail, the same text)."""
    check = manifest.acquisition_check
    if check is None:
        return None
    if batch.pixel_mean is None or batch.pixel_std is None:  # never pass a check that could not run
        raise RuntimeError("the acquisition check has no pixel statistics for this batch")
    regions = [p.region for p in request.patches]
    failures = check.failures(regions, batch.pixel_mean, batch.pixel_std)
    failing = [i for i, failure in enumerate(failures) if failure is not None]
    if not failing:
        return None
    i = failing[0]
    p = request.patches[i]
    detail = (
        f"patch {i} (region {p.region}, frame {p.frame}, vial {p.vial}) fails the acquisition check: "
        f"{failures[i]} {LIKELY_CAUSE}"
    )
    if len(failing) > 1:
        detail += f"; {len(failing)} patches fail it in all"
    return detail


# --- verdicts ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductDecision:
    """Outcome of decide_product: verdict is "ACCEPT", "REJECT" or "INCOMPLETE" (with ``error``)."""

    verdict: str
    product_score: float = 0.0
    patch_rejected: tuple[bool, ...] = ()
    error: str = ""


def decide_product(scores: np.ndarray, thresholds: np.ndarray) -> ProductDecision:
    """A patch is rejected when score > threshold; the product when any patch is. Fail-safe: a non-finite
    score or a length mismatch is INCOMPLETE (NaN > threshold is False and would otherwise accept)."""
    scores = np.asarray(scores, np.float32).reshape(-1)
    thresholds = np.asarray(thresholds, np.float32).reshape(-1)
    if scores.size == 0 or scores.size != thresholds.size:
        return ProductDecision(
            "INCOMPLETE", error=f"internal: {scores.size} scores for {thresholds.size} patches"
        )
    bad = ~(np.isfinite(scores) & np.isfinite(thresholds))
    if bad.any():
        i = int(np.argmax(bad))
        return ProductDecision("INCOMPLETE", error=f"non-finite score {scores[i]} for patch {i}")
    rejected = scores > thresholds
    return ProductDecision(
        "REJECT" if rejected.any() else "ACCEPT",
        product_score=float(scores.max()),
        patch_rejected=tuple(bool(r) for r in rejected),
    )
