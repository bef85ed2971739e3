"""Abuse campaign against the inspection servers (issue 14 item 8): seeded, bounded, loopback only.

Sends ``--requests`` mutated Inspect requests (default 10 000) to the C++ ``tfad_server`` and to the Python
``tfad serve``, each on 127.0.0.1 with a free port, and checks:
- every malformed request is refused with INVALID_ARGUMENT and a message naming the problem (the field, the
  patch index with its region/frame/vial, the value or limit), a request over the message limit with
  RESOURCE_EXHAUSTED, and a request that is not a parseable InspectRequest with a non-OK status;
- nothing malformed gets an OK reply, and an ACCEPT only comes with every patch scored, finite and at or
  below its threshold (fail-safe rule 1);
- afterwards: the server process is alive (0 crashes), health is SERVING, the model version unchanged, no
  internal error was logged, and a reference product scores bit-identically to its run before the campaign.

Every case is generated from ``(seed, index)`` alone, so a violation can be replayed (``--replay INDEX``
prints the case). The first len(KINDS) cases are one of each kind, the rest drawn by weight.

    .venv/bin/python benchmarks/abuse_campaign.py                                # both servers, 10 000 each
    .venv/bin/python benchmarks/abuse_campaign.py --servers cc --requests 2000 --seed 7
    .venv/bin/python benchmarks/abuse_campaign.py --fixture rgb-bilinear          # a 3-channel resizing model
    .venv/bin/python benchmarks/abuse_campaign.py --seed 1 --replay 1234          # describe one case

Prints the machine and one table per server (requests, statuses and violations by mutation kind,
requests/s); exits 1 on any violation. ``run_campaign`` is the reusable runner (tests/serving/
test_abuse_campaign.py runs a short version in ``make test``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tfad.serving import contract  # noqa: E402
from tfad.serving.contract import InvalidRequest, Manifest, RequestLimits  # noqa: E402
from tfad.serving.protos import SERVICE_NAME, pb  # noqa: E402

INSPECT_METHOD = f"/{SERVICE_NAME}/Inspect"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ID_FIELDS = ("product_id", "run_id", "station_id", "model_name")
PRINTABLE = np.frombuffer(bytes(range(0x20, 0x7F)), np.uint8)
U32_MAX = 2**32 - 1
CHANNEL_WORDS = {1: "1 (gray)", 2: "2 (gray+alpha)", 3: "3 (RGB)", 4: "4 (RGBA)"}
PNG_COLOR_TYPE = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type

# Mutation kinds and their weights (relative share of the requests after the first one-of-each round).
# "valid_*" kinds are legal products; the rest are malformed. Oversize messages are rare: each is ~66 MiB.
KINDS: dict[str, float] = {
    "valid_product": 10,
    "valid_edge": 3,
    "valid_png_variant": 2,
    "raw_truncated": 4,
    "raw_extra_bytes": 2,
    "raw_wrong_dims": 5,
    "raw_huge_dims": 3,
    "patch_count_zero": 1,
    "patch_count_over": 2,
    "patch_bytes_over": 2,
    "empty_patch": 3,
    "duplicate_patch": 3,
    "unknown_region": 3,
    "unknown_model": 2,
    "id_oversize": 3,
    "id_nonprintable": 3,
    "enum_heatmap": 3,
    "enum_encoding": 3,
    "png_bitflip": 6,
    "png_truncated": 5,
    "png_trailer_cut": 2,
    "png_bad_signature": 3,
    "png_bomb": 4,
    "png_16bit": 2,
    "png_wrong_channels": 3,
    "png_wrong_size": 2,
    "png_declared_mismatch": 2,
    "oversize_message": 0.3,
    "wire_truncated": 3,
    "wire_garbage": 2,
    "wire_bad_utf8": 1,
}
KIND_NAMES = tuple(KINDS)
KIND_P = np.array([KINDS[k] for k in KIND_NAMES]) / sum(KINDS.values())


# --- PNG files written byte by byte (so headers, chunks and streams can be anything) -----------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC-32 of type + data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & U32_MAX)


def png_header(width: int, height: int, bit_depth: int, color_type: int, interlace: int = 0) -> bytes:
    """Signature + IHDR chunk."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, interlace)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr)


def _rows(pixels: np.ndarray) -> bytes:
    """Scanlines with filter byte 0 (None) for an [H, W*bytes_per_pixel] uint8 array."""
    out = np.zeros((pixels.shape[0], 1 + pixels.shape[1]), np.uint8)
    out[:, 1:] = pixels
    return out.tobytes()


def encode_png(
    image: np.ndarray,
    bit_depth: int = 8,
    interlace: bool = False,
    idat_chunks: int = 1,
    text_chunk: bool = False,
    level: int = 6,
) -> bytes:
    """PNG of a uint8 [H, W, C] image (C 1-4). ``bit_depth`` 16 stores v * 257 (a 16-bit file); 1, 2 or 4
    (gray only) keep the top bits; ``interlace`` writes Adam7; ``idat_chunks`` splits the stream."""
    h, w, c = image.shape
    if bit_depth == 16:
        samples = (image.astype(np.uint16) * 257).astype(">u2").view(np.uint8).reshape(h, w * c * 2)
    elif bit_depth < 8:
        packed = np.packbits(
            np.unpackbits(image.reshape(h, w, 1), axis=2)[:, :, :bit_depth].reshape(h, w * bit_depth), axis=1
        )
        samples = packed
    else:
        samples = image.reshape(h, w * c)
    if interlace:
        passes = (
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        )
        assert bit_depth == 8, "interlaced files are written 8-bit only"
        raw = b"".join(
            _rows(image[y0::dy, x0::dx].reshape(len(range(y0, h, dy)), -1))
            for x0, y0, dx, dy in passes
            if x0 < w and y0 < h
        )
    else:
        raw = _rows(samples)
    stream = zlib.compress(raw, level)
    step = -(-len(stream) // idat_chunks)
    body = b"".join(png_chunk(b"IDAT", stream[i : i + step]) for i in range(0, len(stream), step))
    text = png_chunk(b"tEXt", b"Comment\x00abuse campaign") if text_chunk else b""
    return (
        png_header(w, h, bit_depth, PNG_COLOR_TYPE[c], int(interlace)) + text + body + png_chunk(b"IEND", b"")
    )


def palette_png(image: np.ndarray) -> bytes:
    """8-bit palette PNG (colour type 3, 256 gray entries, no tRNS) of a uint8 [H, W, 1] image."""
    h, w, _ = image.shape
    plte = bytes(np.repeat(np.arange(256, dtype=np.uint8), 3))
    body = png_chunk(b"IDAT", zlib.compress(_rows(image.reshape(h, w)), 6))
    return png_header(w, h, 8, 3) + png_chunk(b"PLTE", plte) + body + png_chunk(b"IEND", b"")


def transparent_png(image: np.ndarray) -> bytes:
    """8-bit gray or RGB PNG of a uint8 [H, W, 1 or 3] image with a tRNS chunk (one colour transparent): a
    decoder that honours tRNS adds an alpha channel (gray -> gray+alpha, RGB -> RGBA)."""
    h, w, c = image.shape
    trns = bytes(2 * c)  # 16-bit sample(s) of the transparent colour: black
    body = png_chunk(b"tRNS", trns) + png_chunk(b"IDAT", zlib.compress(_rows(image.reshape(h, w * c)), 6))
    return png_header(w, h, 8, PNG_COLOR_TYPE[c]) + body + png_chunk(b"IEND", b"")


def iend_offset(png: bytes) -> int:
    """Offset of the IEND chunk (the file's last 12 bytes for the files written here)."""
    return len(png) - 12


def overflow_dims(target_bytes_max: int, channels: int = 3, count: int = 3) -> list[tuple[int, int, int]]:
    """``(width, height, nbytes)`` with width, height < 2**32 and width * height * channels equal to nbytes
    modulo 2**64 (1 <= nbytes <= target_bytes_max): declared dimensions whose pixel and byte counts wrap a
    64-bit integer. A server computing them in int64 sees a negative pixel count and a matching byte count."""
    found, wrap = [], 2 * 2**64  # channels * w * h ~ 2 * 2**64 needs w * h ~ 1.23e19 < 2**64: reachable
    for start in (U32_MAX, U32_MAX - 400_000, U32_MAX - 900_000):
        for w in range(start, start - 400_000, -1):
            h = -(-wrap // (channels * w))
            nbytes = channels * w * h - wrap
            if h <= U32_MAX and 1 <= nbytes <= target_bytes_max:
                found.append((w, h, nbytes))
                break
        if len(found) == count:
            break
    return found


# --- cases --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """What a server must answer.

    ``outcome``: "invalid" (INVALID_ARGUMENT; the message contains every fragment), "exhausted"
    (RESOURCE_EXHAUSTED from gRPC's message limit), "valid" (OK with a consistent verdict: see
    ``check_reply``), "either" (a decoder may accept the file: "invalid" as above or "valid"), or
    "unparseable" (not an InspectRequest: gRPC's deserializer refuses it before the handler; any non-OK
    status among UNPARSEABLE_CODES).
    """

    outcome: str
    fragments: tuple[str, ...] = ()
    patches: tuple[tuple[str, int, int], ...] = ()  # (region, frame, vial) of a request that may be scored
    product_id: str = ""
    run_id: str = ""


# gRPC answers a message it cannot parse itself (C++: INTERNAL, Python: INTERNAL "Exception deserializing
# request!"); the handler, which would say INVALID_ARGUMENT, never sees it.
UNPARSEABLE_CODES = ("INTERNAL", "INVALID_ARGUMENT")


@dataclass(frozen=True)
class Case:
    """One request of the campaign: its serialized bytes and what the server must answer."""

    index: int
    kind: str
    variant: str
    payload: bytes
    expect: Expect

    def describe(self) -> str:
        """One line for reports and --replay."""
        frags = " | ".join(f[:160] for f in self.expect.fragments)
        return (
            f"case {self.index} {self.kind}/{self.variant}: {len(self.payload)} bytes, expect "
            f"{self.expect.outcome}{': ' + frags if frags else ''}"
        )


def where(request, i: int) -> str:
    """How both servers name patch ``i`` in a message."""
    p = request.patches[i]
    return f"patch {i} (region {p.region or '<empty>'}, frame {p.frame}, vial {p.vial})"


def message_subject(message: str) -> str:
    """The part of a refusal that names the problem: the patch (index, region, frame, vial) or the field."""
    if message.startswith("patch ") and "): " in message:
        return message[: message.index("): ") + 1]
    return message.split(":")[0].split(";")[0]


class ImagePool:
    """Model-sized images (smooth ones a model accepts, spotted and noise ones it rejects), raw and PNG."""

    def __init__(self, manifest: Manifest, seed: int) -> None:
        from tests.fixtures.servable import synthetic_patches

        h, w, c = manifest.height, manifest.width, manifest.channels
        rng = np.random.default_rng([seed, 2**31])
        smooth = synthetic_patches(8, h, w, c, defect_every=0, seed=seed)
        spotted = synthetic_patches(4, h, w, c, defect_every=1, seed=seed + 1)
        noise = rng.integers(0, 256, (4, h, w, c), dtype=np.uint8)
        self.images = np.concatenate([smooth, spotted, noise])
        self.weights = np.array([0.6 / 8] * 8 + [0.25 / 4] * 4 + [0.15 / 4] * 4)
        self.raw = [im.tobytes() for im in self.images]
        self.png = [encode_png(im) for im in self.images]

    def pick(self, rng: np.random.Generator) -> int:
        return int(rng.choice(len(self.images), p=self.weights))


class CaseFactory:
    """Builds the campaign's cases for one model and one set of server limits."""

    def __init__(self, manifest: Manifest, limits: RequestLimits, max_message_bytes: int, seed: int) -> None:
        self.m, self.limits, self.max_message_bytes, self.seed = manifest, limits, max_message_bytes, seed
        self.regions = tuple(sorted(manifest.region_thresholds)) or ("R0", "R1", "R2", "R3")
        self.pool = ImagePool(manifest, seed)
        h, w, c = manifest.height, manifest.width, manifest.channels
        self.shape = (h, w, c)
        # Files that take time to build, made once: a decompression bomb at the pixel limit (full data), and a
        # model-sized image whose zlib stream goes on with 64 MiB of zeros after the last row.
        side = int(np.sqrt(limits.max_image_pixels))
        self.bomb_side = side
        zeros = zlib.compressobj(9)
        row = bytes(1 + side * c)
        bomb_stream = b"".join(zeros.compress(row) for _ in range(side)) + zeros.flush()
        self.limit_bomb = png_header(side, side, 8, PNG_COLOR_TYPE[c]) + png_chunk(b"IDAT", bomb_stream)
        self.limit_bomb += png_chunk(b"IEND", b"")
        tail = zlib.compressobj(9)
        image_rows = _rows(self.pool.images[0].reshape(h, w * c))
        tail_stream = tail.compress(image_rows) + tail.compress(bytes(64 << 20)) + tail.flush()
        self.tail_bomb = png_header(w, h, 8, PNG_COLOR_TYPE[c]) + png_chunk(b"IDAT", tail_stream)
        self.tail_bomb += png_chunk(b"IEND", b"")
        self.overflow = overflow_dims(limits.max_patch_bytes, 3)

    # ---- helpers ----

    def case(self, index: int) -> Case:
        """Case ``index`` of this seed (a pure function of seed and index)."""
        rng = np.random.default_rng([self.seed, index])
        kind = KIND_NAMES[index] if index < len(KIND_NAMES) else str(rng.choice(KIND_NAMES, p=KIND_P))
        payload, expect, variant = getattr(self, kind)(rng, index)
        if not isinstance(payload, bytes):
            payload = payload.SerializeToString()
        return Case(index, kind, variant, payload, expect)

    def base(self, rng: np.random.Generator, index: int, n: int | None = None, png_share: float = 0.3):
        """A legal product of ``n`` (default 1-8) patches, each at a distinct (frame, vial, region)."""
        n = int(rng.integers(1, 9)) if n is None else n
        r = len(self.regions)
        slots = np.sort(rng.choice(max(60, n), n, replace=False))
        request = pb.InspectRequest(
            product_id=f"abuse-{self.seed}-{index}",
            run_id=f"run-{index % 7}",
            station_id=f"station-{index % 4}",
            heatmaps=int(rng.integers(0, 3)),
        )
        h, w, c = self.shape
        for s in slots:
            k = self.pool.pick(rng)
            p = request.patches.add(
                region=self.regions[s % r], vial=int((s // r) % 5), frame=int(s // (r * 5))
            )
            if rng.random() < png_share:
                p.encoding, p.data = pb.IMAGE_ENCODING_PNG, self.pool.png[k]
            else:
                p.encoding, p.data = pb.IMAGE_ENCODING_RAW_UINT8, self.pool.raw[k]
                p.width, p.height, p.channels = w, h, c
        return request

    def as_raw(self, request, i: int, rng: np.random.Generator) -> None:
        h, w, c = self.shape
        p = request.patches[i]
        p.encoding, p.data = pb.IMAGE_ENCODING_RAW_UINT8, self.pool.raw[self.pool.pick(rng)]
        p.width, p.height, p.channels = w, h, c

    def as_png(self, request, i: int, data: bytes) -> None:
        p = request.patches[i]
        p.encoding, p.data = pb.IMAGE_ENCODING_PNG, data
        p.width = p.height = p.channels = 0

    def fits(self, request, i: int, expect: Expect) -> Expect:
        """``expect``, unless patch i's freshly encoded file is over --max_patch_bytes (checked first)."""
        if len(request.patches[i].data) > self.limits.max_patch_bytes:
            return self.invalid(self.over_limit_message(request, i))
        return expect

    def valid(self, request) -> Expect:
        return Expect(
            "valid",
            patches=tuple((p.region, p.frame, p.vial) for p in request.patches),
            product_id=request.product_id,
            run_id=request.run_id,
        )

    def invalid(self, *fragments: str) -> Expect:
        return Expect("invalid", tuple(fragments))

    def either(self, request, *fragments: str) -> Expect:
        return Expect(
            "either", tuple(fragments), self.valid(request).patches, request.product_id, request.run_id
        )

    def shape_refusal(self, request, i: int, w: int, h: int, c: int) -> Expect:
        """What the servers answer for an image of w x h x c on patch i (after its other checks passed)."""
        H, W, C = self.shape
        if c != C:
            return self.invalid(
                f"{where(request, i)}: image has {CHANNEL_WORDS.get(c, c)} channels; model {self.m.name} "
                f"takes {CHANNEL_WORDS[C]}"
            )
        if (h, w) != (H, W) and self.m.resize != "bilinear":
            return self.invalid(
                f"{where(request, i)}: image is {w}x{h}x{c} but model {self.m.name} takes {W}x{H}x{C} and "
                'its manifest\'s resize policy is "reject"'
            )
        return self.valid(request)

    def printable(self, rng: np.random.Generator, n: int) -> str:
        return bytes(rng.choice(PRINTABLE, n)).decode("ascii")

    def expect_for_request(self, request) -> Expect:
        """The reference validator's answer (tfad.serving.contract, the rules docs/serving.md lists) for a
        request whose content the mutator does not control (wire-level mutations)."""
        try:
            contract.validate_request_fields(request)
            if request.model_name not in ("", self.m.name):
                return self.invalid(f'unknown model "{request.model_name}"')
            contract.validate_and_decode(request, self.m, self.limits)
        except InvalidRequest as err:
            return self.invalid(message_subject(str(err)))
        return self.valid(request)

    def expect_for_wire(self, payload: bytes) -> Expect:
        from google.protobuf.message import DecodeError

        try:
            request = pb.InspectRequest.FromString(payload)
        except DecodeError:
            return Expect("unparseable")
        return self.expect_for_request(request)

    # ---- legal products ----

    def valid_product(self, rng, index):
        request = self.base(rng, index)
        return request, self.valid(request), f"{len(request.patches)}-patches"

    def valid_edge(self, rng, index):
        """Longest ids, largest frame/vial numbers, PNG patches declaring their size, all heatmaps."""
        n = self.limits.max_patches if rng.random() < 0.05 else None
        request = self.base(rng, index, n=n, png_share=0.5)
        for name in ("product_id", "run_id", "station_id"):
            setattr(request, name, self.printable(rng, contract.MAX_ID_BYTES))
        request.model_name = self.m.name
        request.heatmaps = pb.HEATMAP_MODE_ALL
        h, w, c = self.shape
        for k, p in enumerate(request.patches):
            p.frame, p.vial = U32_MAX - p.frame, U32_MAX - k
            if p.encoding == pb.IMAGE_ENCODING_PNG:
                p.width, p.height, p.channels = w, h, c
        return request, self.valid(request), f"{len(request.patches)}-patches"

    def valid_png_variant(self, rng, index):
        """Legal PNG files other encoders write: Adam7, split IDAT + tEXt, low bit depth, palette."""
        request = self.base(rng, index)
        i = int(rng.integers(len(request.patches)))
        image = self.pool.images[self.pool.pick(rng)]
        c = self.shape[2]
        variants = ["interlaced", "split-idat-text"] + (
            ["gray-4bit", "gray-2bit", "gray-1bit"] if c == 1 else []
        )
        variants += ["palette"] if c == 3 else []
        variant = str(rng.choice(variants))
        if variant == "interlaced":
            data = encode_png(image, interlace=True)
        elif variant == "split-idat-text":
            data = encode_png(image, idat_chunks=int(rng.integers(2, 9)), text_chunk=True)
        elif variant == "palette":
            data = palette_png(image[:, :, :1])
        else:
            data = encode_png(image, bit_depth=int(variant[5]))
        self.as_png(request, i, data)
        return request, self.fits(request, i, self.valid(request)), variant

    # ---- raw patches ----

    def raw_truncated(self, rng, index):
        request = self.base(rng, index)
        i = int(rng.integers(len(request.patches)))
        self.as_raw(request, i, rng)
        p = request.patches[i]
        keep = int(rng.integers(1, len(p.data)))
        p.data = p.data[:keep]
        expected = p.width * p.height * p.channels
        fragment = (
            f"{where(request, i)}: {keep} bytes for {p.width}x{p.height}x{p.channels}, expected {expected}"
        )
        return request, self.invalid(fragment), "cut"

    def raw_extra_bytes(self, rng, index):
        request = self.base(rng, index)
        i = int(rng.integers(len(request.patches)))
        self.as_raw(request, i, rng)
        p = request.patches[i]
        p.data = p.data + bytes(rng.integers(0, 256, int(rng.integers(1, 4097)), dtype=np.uint8))
        n = len(p.data)
        if n > self.limits.max_patch_bytes:
            return request, self.invalid(self.over_limit_message(request, i)), "over-limit"
        expected = p.width * p.height * p.channels
        fragment = (
            f"{where(request, i)}: {n} bytes for {p.width}x{p.height}x{p.channels}, expected {expected}"
        )
        return request, self.invalid(fragment), "extra"

    def raw_wrong_dims(self, rng, index):
        request = self.base(rng, index)
        i = int(rng.integers(len(request.patches)))
        self.as_raw(request, i, rng)
        p = request.patches[i]
        h, w, c = self.shape
        variant = str(rng.choice(["zero", "reshaped", "channels", "inconsistent", "small"]))
        if variant == "zero":
            dims = [p.width, p.height, p.channels]
            dims[int(rng.integers(3))] = 0
            p.width, p.height, p.channels = dims
            got = "x".join(map(str, dims))
            fragment = f"{where(request, i)}: raw image needs width, height and channels (got {got})"
            return request, self.invalid(fragment), variant
        if variant == "reshaped" and (h % 2 == 0 or w % 2 == 0):  # same byte count, another shape
            p.width, p.height = (w * 2, h // 2) if h % 2 == 0 else (w // 2, h * 2)
            return request, self.shape_refusal(request, i, p.width, p.height, c), variant
        if variant == "channels":
            choices = [k for k in (1, 2, 3, 4) if k != c and h * w * k <= self.limits.max_patch_bytes]
            k = int(rng.choice(choices))
            p.channels, p.data = k, bytes(rng.integers(0, 256, h * w * k, dtype=np.uint8))
            return request, self.shape_refusal(request, i, w, h, k), variant
        if variant == "small":
            sh, sw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
            p.width, p.height, p.data = sw, sh, bytes(rng.integers(0, 256, sh * sw * c, dtype=np.uint8))
            return request, self.shape_refusal(request, i, sw, sh, c), variant
        # inconsistent: the declared size no longer matches the bytes
        p.width = max(1, w + int(rng.choice([-7, -1, 1, 3, 64])))
        p.height = max(1, h + int(rng.choice([-2, 0, 1])))
        fragment = (
            f"{where(request, i)}: {len(p.data)} bytes for {p.width}x{p.height}x{p.channels}, "
            f"expected {p.width * p.height * p.channels}"
        )
        return request, self.invalid(fragment), "inconsistent"

    def raw_huge_dims(self, rng, index):
        """Declared sizes over the pixel limit, including products that wrap a 64-bit integer."""
        request = self.base(rng, index)
        i = int(rng.integers(len(request.patches)))
        self.as_raw(request, i, rng)
        p = request.patches[i]
        limit = self.limits.max_image_pixels
        variant = str(rng.choice(["over-limit", "u32-max", "int64-wrap"]))
        if variant == "over-limit":
            w = int(rng.integers(1, 65536))
            p.width, p.height = w, limit // w + 1
        elif variant == "u32-max":
            p.width, p.height = U32_MAX, int(rng.choice([U32_MAX, 2**31, 3_037_000_500]))
            p.channels = int(rng.choice([1, 3, U32_MAX]))
        else:  # width * height * 3 == len(data) modulo 2**64, width * height negative as int64
            w, h, nbytes = self.overflow[int(rng.integers(len(self.overflow)))]
            p.width, p.height, p.channels = w, h, 3
            p.data = bytes(rng.integers(0, 256, nbytes, dtype=np.uint8))
        fragment = (
            f"{where(request, i)}: {p.width}x{p.height}x{p.channels} exceeds the {limit}-pixel limit "
            "(--max_image_pixels)"
        )
        return request, self.invalid(fragment), variant

    # ---- counts and sizes ----

    def patch_count_zero(self, rng, index):
        request = self.base(rng, index)
        del request.patches[:]
        return request, self.invalid("empty product: the request has no patches"), "none"

    def patch_count_over(self, rng, index):
        """More than --max_patches patches (1-byte raw ones: the count is checked first)."""
        limit = self.limits.max_patches
        n = limit + (int(rng.integers(1, 4)) if rng.random() < 0.8 else int(rng.integers(limit, 4 * limit)))
        request = pb.InspectRequest(product_id=f"abuse-{index}")
        for k in range(n):
            request.patches.add(
                region=self.regions[k % len(self.regions)],
                frame=k,
                encoding=pb.IMAGE_ENCODING_RAW_UINT8,
                width=1,
                height=1,
                channels=1,
                data=b"\x00",
            )
        fragment = f"{n} patches in one product; at most {limit} allowed (--max_patches)"
        return request, self.invalid(fragment), "limit+1..3" if n <= limit + 3 else "far-over"

    def over_limit_message(self, request, i: int) -> str:
        n, limit = len(request.patches[i].data), self.limits.max_patch_bytes
        return f"{where(request, i)}: {n} bytes exceed the limit of {limit} per patch (--max_patch_bytes)"

    def patch_bytes_over(self, rng, index):
        request = self.base(rng, index)
        i = int(rng.integers(len(request.patches)))
        p = request.patches[i]
        p.data = bytes(self.limits.max_patch_bytes + int(rng.integers(1, 70000)))
        return request, self.invalid(self.over_limit_message(request, i)), pb.ImageEncoding.Name(p.encoding)

    def oversize_message(self, rng, index):
        """One patch so large that the serialized request exceeds the gRPC message limit."""
        request = self.base(rng, index, n=1)
        request.patches[0].data = bytes(self.max_message_bytes + int(rng.integers(1, 4096)))
        return request, Expect("exhausted"), "over-message-limit"

    def empty_patch(self, rng, index):
        request = self.base(rng, index)
        i = int(rng.integers(len(request.patches)))
        variant = str(rng.choice(["no-data", "no-region", "default-patch"]))
        p = request.patches[i]
        if variant == "no-data":
            p.data = b""
            return request, self.invalid(f"{where(request, i)}: no image data"), variant
        if variant == "no-region":
            p.region = ""
        else:
            p.Clear()
        return request, self.invalid(f"{where(request, i)}: region is empty"), variant

    def duplicate_patch(self, rng, index):
        request = self.base(rng, index, n=int(rng.integers(2, 9)))
        j = int(rng.integers(1, len(request.patches)))
        i = int(rng.integers(j))
        a, b = request.patches[i], request.patches[j]
        b.frame, b.vial, b.region = a.frame, a.vial, a.region
        if rng.random() < 0.3:
            b.CopyFrom(a)  # the very same patch sent twice
        fragment = f"{where(request, j)}: duplicate patch (same frame, vial and region as an earlier patch)"
        return request, self.invalid(fragment), "same-key" if b != a else "same-patch"

    def unknown_region(self, rng, index):
        request = self.base(rng, index)
        i = int(rng.integers(len(request.patches)))
        candidates = ["R9", "r0", "R0 ", " ", "ALL", "R-1", self.printable(rng, int(rng.integers(1, 129)))]
        region = next(
            (r for r in rng.permutation(candidates) if r not in self.m.region_thresholds), "no-such-region"
        )
        request.patches[i].region = str(region)  # no other patch has it: no duplicate either
        if self.m.default_threshold is not None:  # every region is known to this model
            return request, self.valid(request), "default-threshold"
        fragment = f"{where(request, i)}: unknown region '{region}'"
        return request, self.invalid(fragment), "unknown"

    def unknown_model(self, rng, index):
        request = self.base(rng, index)
        name = str(
            rng.choice(
                [
                    self.m.name + "x",
                    self.m.name.upper() + "_",
                    "vials",
                    " ",
                    self.printable(rng, int(rng.integers(1, 129))),
                ]
            )
        )
        if name == self.m.name:
            name += "-other"
        request.model_name = name
        return request, self.invalid(f'unknown model "{name}"'), "name"

    # ---- ids and enums ----

    def id_oversize(self, rng, index):
        request = self.base(rng, index)
        name = str(rng.choice([*ID_FIELDS, "region"]))
        size = int(rng.choice([129, 130, 256, int(rng.integers(131, 20000))]))
        value = self.printable(rng, size)
        if name == "region":
            i = int(rng.integers(len(request.patches)))
            request.patches[i].region = value
            p = request.patches[i]
            fragment = (
                f"patch {i} (frame {p.frame}, vial {p.vial}): region is {size} bytes; at most 128 allowed"
            )
        else:
            setattr(request, name, value)
            fragment = f"{name} is {size} bytes; at most 128 allowed"
        return request, self.invalid(fragment), name

    def id_nonprintable(self, rng, index):
        request = self.base(rng, index)
        name = str(rng.choice([*ID_FIELDS, "region"]))
        bad = str(
            rng.choice([chr(int(rng.integers(0, 0x20))), "\x7f", "é", "€", "\u0080", "\U0001f600", "\n"])
        )
        prefix = self.printable(rng, int(rng.integers(0, 60)))
        value = prefix + bad + self.printable(rng, int(rng.integers(0, 20)))
        raw = value.encode("utf-8")
        offset = next(k for k, b in enumerate(raw) if b < 0x20 or b > 0x7E)
        problem = f"has a byte that is not printable ASCII (0x{raw[offset]:02x} at offset {offset})"
        if name == "region":
            i = int(rng.integers(len(request.patches)))
            request.patches[i].region = value
            p = request.patches[i]
            fragment = f"patch {i} (frame {p.frame}, vial {p.vial}): region {problem}"
        else:
            setattr(request, name, value)
            fragment = f"{name} {problem}"
        return request, self.invalid(fragment), f"{name}-0x{raw[offset]:02x}"

    def enum_heatmap(self, rng, index):
        request = self.base(rng, index)
        value = int(rng.choice([3, 4, 7, 2**31 - 1, -1, -(2**31), int(rng.integers(3, 2**31 - 1))]))
        request.heatmaps = value
        return (
            request,
            self.invalid(f"heatmaps: unknown HeatmapMode value {value}"),
            "negative" if value < 0 else "high",
        )

    def enum_encoding(self, rng, index):
        request = self.base(rng, index)
        i = int(rng.integers(len(request.patches)))
        value = int(rng.choice([0, 3, 4, 9, 2**31 - 1, -1, int(rng.integers(3, 2**31 - 1))]))
        request.patches[i].encoding = value
        if value == 0:
            fragment = f"{where(request, i)}: encoding not set"
        else:
            fragment = f"{where(request, i)}: unknown ImageEncoding value {value}"
        return request, self.invalid(fragment), "unset" if value == 0 else "unknown"

    # ---- PNG patches ----

    def png_patch(self, rng, index):
        """A legal product and one of its patches (index i) as a PNG: the file a mutation starts from."""
        request = self.base(rng, index)
        i = int(rng.integers(len(request.patches)))
        k = self.pool.pick(rng)
        self.as_png(request, i, self.pool.png[k])
        return request, i, self.pool.png[k]

    def png_bitflip(self, rng, index):
        """1-2 flipped bits before IEND: CRC-32 catches every 1- and 2-bit error, so the file is corrupt."""
        request, i, png = self.png_patch(rng, index)
        data = bytearray(png)
        positions = rng.choice(iend_offset(png), int(rng.integers(1, 3)), replace=False)
        for pos in positions:
            data[int(pos)] ^= 1 << int(rng.integers(8))
        self.as_png(request, i, bytes(data))
        region = "signature" if positions.min() < 8 else "IHDR" if positions.min() < 33 else "IDAT"
        return request, self.invalid(f"{where(request, i)}: ", "PNG"), region

    def png_truncated(self, rng, index):
        request, i, png = self.png_patch(rng, index)
        keep = int(rng.integers(1, iend_offset(png)))
        self.as_png(request, i, png[:keep])
        if keep < 8:
            return request, self.invalid(f"{where(request, i)}: not a PNG (bad signature)"), "in-signature"
        return request, self.invalid(f"{where(request, i)}: ", "PNG"), "in-header" if keep < 33 else "in-data"

    def png_trailer_cut(self, rng, index):
        """IEND cut off (wholly or partly) or followed by junk: every pixel is there, so a decoder may accept
        the file or insist on a proper end; either way nothing else may happen."""
        request, i, png = self.png_patch(rng, index)
        if rng.random() < 0.75:
            self.as_png(request, i, png[: int(rng.integers(iend_offset(png), len(png)))])
            variant = "iend-cut"
        else:
            self.as_png(
                request, i, png + bytes(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8))
            )
            variant = "junk-after-iend"
        return request, self.either(request, f"{where(request, i)}: ", "PNG"), variant

    def png_bad_signature(self, rng, index):
        request, i, png = self.png_patch(rng, index)
        variant = str(rng.choice(["jpeg", "gif", "random", "one-byte", "crlf-mangled", "text"]))
        if variant == "jpeg":
            data = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + png[8:]
        elif variant == "gif":
            data = b"GIF89a" + png[8:]
        elif variant == "random":
            data = bytes(rng.integers(0, 256, 8, dtype=np.uint8)) + png[8:]
        elif variant == "one-byte":
            data = bytearray(png)
            data[int(rng.integers(8))] ^= int(rng.integers(1, 256))
            data = bytes(data)
        elif variant == "crlf-mangled":  # the classic text-mode transfer damage: \r\n -> \n
            data = png.replace(b"\r\n", b"\n", 1)
        else:
            data = b"not a png at all"
        if data[:8] == PNG_SIGNATURE:  # a random draw that happens to be right: force it wrong
            data = b"\x00" + data[1:]
        self.as_png(request, i, data)
        return request, self.invalid(f"{where(request, i)}: not a PNG (bad signature)"), variant

    def png_bomb(self, rng, index):
        """Small files that declare or decompress to much more than they carry."""
        request, i, _ = self.png_patch(rng, index)
        h, w, c = self.shape
        limit = self.limits.max_image_pixels
        ct = PNG_COLOR_TYPE[c]
        variant = str(
            rng.choice(["huge-dims", "just-over-limit", "at-limit-full", "at-limit-short", "zlib-tail"])
        )
        small_stream = png_chunk(b"IDAT", zlib.compress(bytes(1 + c), 9)) + png_chunk(b"IEND", b"")
        if variant == "huge-dims":
            bw, bh = [(65535, 65535), (100000, 100000), (1_000_000, 1_000_000), (2**31 - 1, 2**31 - 1)][
                int(rng.integers(4))
            ]
            self.as_png(request, i, png_header(bw, bh, 8, ct) + small_stream)
            return request, self.invalid(f"{where(request, i)}: ", "PNG"), variant
        if variant == "just-over-limit":
            bw = self.bomb_side + 1
            bh = limit // bw + 1
            self.as_png(request, i, png_header(bw, bh, 8, ct) + small_stream)
            fragment = f"{where(request, i)}: PNG is {bw}x{bh}, more than the {limit}-pixel limit"
            return request, self.invalid(fragment), variant
        if variant == "at-limit-full":  # legal to decode (16 MiB of pixels for the default limit), then sized
            self.as_png(request, i, self.limit_bomb)
            return request, self.shape_refusal(request, i, self.bomb_side, self.bomb_side, c), variant
        if variant == "at-limit-short":  # declares the limit, carries one row
            self.as_png(request, i, png_header(self.bomb_side, self.bomb_side, 8, ct) + small_stream)
            return request, self.invalid(f"{where(request, i)}: ", "PNG"), variant
        self.as_png(request, i, self.tail_bomb)  # every row, then 64 MiB more in the same zlib stream
        return request, self.either(request, f"{where(request, i)}: ", "PNG"), variant

    def png_16bit(self, rng, index):
        request, i, _ = self.png_patch(rng, index)
        self.as_png(request, i, encode_png(self.pool.images[self.pool.pick(rng)], bit_depth=16))
        expect = self.invalid(f"{where(request, i)}: 16-bit PNG not supported (send 8-bit)")
        return request, self.fits(request, i, expect), "16-bit"

    def png_wrong_channels(self, rng, index):
        request, i, _ = self.png_patch(rng, index)
        h, w, c = self.shape
        gray = self.pool.images[self.pool.pick(rng)][:, :, :1]
        options = [k for k in (1, 2, 3, 4) if k != c] + (["palette"] if c != 3 else []) + ["tRNS"]
        choice = options[int(rng.integers(len(options)))]
        if choice == "palette":
            data, file_channels = palette_png(gray), 3  # palette files decode to RGB
        elif choice == "tRNS":  # the model's own channels plus a transparent colour: one alpha channel more
            data, file_channels = transparent_png(np.repeat(gray, c, axis=2)), c + 1
        else:
            data, file_channels = encode_png(np.repeat(gray, int(choice), axis=2)), int(choice)
        self.as_png(request, i, data)
        fragment = (
            f"{where(request, i)}: image has {CHANNEL_WORDS[file_channels]} channels; model {self.m.name} "
            f"takes {CHANNEL_WORDS[c]}"
        )
        variant = f"{choice}-channels" if isinstance(choice, int) else str(choice)
        return request, self.fits(request, i, self.invalid(fragment)), variant

    def png_wrong_size(self, rng, index):
        request, i, _ = self.png_patch(rng, index)
        h, w, c = self.shape
        sh, sw = [(h // 2, w // 2), (h + 1, w), (h, w - 1), (1, 1), (2 * h, 2 * w)][int(rng.integers(5))]
        image = self.pool.images[self.pool.pick(rng)]
        resized = np.resize(image, (sh, sw, c)).astype(np.uint8)
        self.as_png(request, i, encode_png(resized))
        return request, self.fits(request, i, self.shape_refusal(request, i, sw, sh, c)), f"{sw}x{sh}"

    def png_declared_mismatch(self, rng, index):
        request, i, _ = self.png_patch(rng, index)
        h, w, c = self.shape
        dims = [w, h, c]
        k = int(rng.integers(3))
        dims[k] = int(
            rng.choice([d for d in (1, 2, 3, 4, dims[k] + 1, dims[k] * 2, U32_MAX) if d != dims[k]])
        )
        p = request.patches[i]
        p.width, p.height, p.channels = dims
        fragment = (
            f"{where(request, i)}: PNG is {w}x{h}x{c} but the patch declares {dims[0]}x{dims[1]}x{dims[2]}"
        )
        return request, self.invalid(fragment), ("width", "height", "channels")[k]

    # ---- wire level: bytes that are not (or not quite) an InspectRequest ----

    def wire_truncated(self, rng, index):
        payload = self.base(rng, index).SerializeToString()
        payload = payload[: int(rng.integers(0, len(payload)))]
        expect = self.expect_for_wire(payload)
        return payload, expect, expect.outcome

    def wire_garbage(self, rng, index):
        variant = str(rng.choice(["random", "appended", "overwritten", "huge-length"]))
        if variant == "random":
            payload = bytes(rng.integers(0, 256, int(rng.integers(1, 257)), dtype=np.uint8))
        else:
            payload = bytearray(self.base(rng, index).SerializeToString())
            if variant == "appended":
                payload += bytes(rng.integers(0, 256, int(rng.integers(1, 65)), dtype=np.uint8))
            elif variant == "overwritten":
                at = int(rng.integers(len(payload)))
                payload[at : at + 16] = bytes(rng.integers(0, 256, 16, dtype=np.uint8))
            else:  # field 4 (patches) claiming 2**62 bytes
                payload = b"\x22" + b"\xff\xff\xff\xff\xff\xff\xff\xff\x3f" + bytes(payload[:64])
            payload = bytes(payload)
        expect = self.expect_for_wire(payload)
        return payload, expect, f"{variant}-{expect.outcome}"

    def wire_bad_utf8(self, rng, index):
        """An id that is not UTF-8 on the wire (proto3 strings must be)."""
        request = self.base(rng, index)
        placeholder = "\x01" * 4
        request.product_id = "P" + placeholder
        bad = [b"\xff\xfe\xfd\xfc", b"\xc3\x28ab", b"\xed\xa0\x80a", b"\xf8\x88\x80\x80"][
            int(rng.integers(4))
        ]
        payload = request.SerializeToString().replace(placeholder.encode(), bad, 1)
        expect = self.expect_for_wire(payload)
        return payload, expect, expect.outcome


# --- judging replies ----------------------------------------------------------------------------------------


def check_reply(reply, expect: Expect, manifest: Manifest) -> str | None:
    """Fail-safe checks of an OK reply to a request that may be scored; returns the violation or None.

    ACCEPT only with every patch scored (one result per patch, in order, echoing region/frame/vial), every
    score finite, each decision ACCEPT and score <= threshold; REJECT only with results for every patch and
    at least one patch over its threshold; REJECT_INCOMPLETE with a reason and no patch results."""
    verdict = pb.Verdict.Name(reply.verdict) if reply.verdict in pb.Verdict.values() else str(reply.verdict)
    if reply.product_id != expect.product_id or reply.run_id != expect.run_id:
        return f"{verdict}: ids not echoed"
    if reply.verdict == pb.VERDICT_REJECT_INCOMPLETE:
        if reply.incomplete_reason == pb.INCOMPLETE_REASON_UNSPECIFIED or len(reply.patches):
            return "REJECT_INCOMPLETE without a reason or with patch results"
        return None
    if reply.verdict not in (pb.VERDICT_ACCEPT, pb.VERDICT_REJECT):
        return f"verdict {verdict}"
    if len(reply.patches) != len(expect.patches):
        return f"{verdict} with {len(reply.patches)} patch results for {len(expect.patches)} patches"
    rejected = 0
    for k, (r, (region, frame, vial)) in enumerate(zip(reply.patches, expect.patches, strict=True)):
        if (r.index, r.region, r.frame, r.vial) != (k, region, frame, vial):
            return f"{verdict}: patch result {k} echoes {r.index}/{r.region}/{r.frame}/{r.vial}"
        threshold = manifest.threshold_for(region)
        if not np.isfinite(r.score) or np.float32(r.threshold) != np.float32(threshold):
            return f"{verdict}: patch {k} score {r.score} threshold {r.threshold} (manifest {threshold})"
        over = np.float32(r.score) > np.float32(r.threshold)
        if r.decision != (pb.PATCH_DECISION_REJECT if over else pb.PATCH_DECISION_ACCEPT):
            return f"{verdict}: patch {k} decision {r.decision} for score {r.score} > {r.threshold} = {over}"
        rejected += bool(over)
    if (reply.verdict == pb.VERDICT_ACCEPT) != (rejected == 0):
        return f"{verdict} with {rejected} rejected patches"
    if np.float32(reply.product_score) != np.float32(max(r.score for r in reply.patches)):
        return f"{verdict}: product score {reply.product_score} is not the maximum patch score"
    return None


def judge(
    case: Case, code: str, details: str, reply_bytes: bytes | None, manifest: Manifest
) -> tuple[str, str | None]:
    """(status label, violation or None) of a server's answer to ``case``."""
    expect = case.expect
    label = code
    reply = None
    if code == "OK":
        reply = pb.InspectReply.FromString(reply_bytes or b"")
        label = "OK/" + pb.Verdict.Name(reply.verdict).removeprefix("VERDICT_")
    outcome = expect.outcome
    if outcome == "valid" or (outcome == "either" and code == "OK"):
        if code != "OK":
            return label, f"legal request refused: {code} {details[:300]!r}"
        return label, check_reply(reply, expect, manifest)
    if code == "OK":  # a malformed request answered with a verdict: the worst case is ACCEPT
        verdict = label.removeprefix("OK/")
        return label, f"malformed request answered OK with verdict {verdict}"
    if outcome in ("invalid", "either"):
        if code != "INVALID_ARGUMENT":
            return label, f"status {code} (expected INVALID_ARGUMENT): {details[:300]!r}"
        missing = [f for f in expect.fragments if f not in details]
        if missing:
            return label, f"message {details[:400]!r} does not contain {missing[0][:200]!r}"
        return label, None
    if outcome == "exhausted":
        return label, None if code == "RESOURCE_EXHAUSTED" else f"status {code} (expected RESOURCE_EXHAUSTED)"
    if outcome == "unparseable":
        return label, None if code in UNPARSEABLE_CODES else f"status {code} for an unparseable request"
    return label, f"unknown expectation {outcome}"


# --- the runner ---------------------------------------------------------------------------------------------


@dataclass
class CampaignReport:
    """Outcome of one campaign against one server."""

    server: str
    target: str
    requests: int
    seed: int
    concurrency: int
    wall_s: float = 0.0
    statuses: dict[str, Counter] = field(default_factory=dict)  # kind -> status label -> count
    kind_seconds: dict[str, float] = field(default_factory=dict)  # kind -> summed client latency
    # "either" cases (a decoder may accept the file) by kind/variant: where the two servers may differ
    either_statuses: dict[str, Counter] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)  # the first MAX_LISTED, described
    violation_count: int = 0
    violations_by_kind: Counter = field(default_factory=Counter)
    violations_by_variant: Counter = field(default_factory=Counter)  # "kind/variant" -> count
    checks: dict[str, str] = field(default_factory=dict)  # post-campaign check -> "ok" or what failed

    @property
    def ok(self) -> bool:
        return self.violation_count == 0 and all(v == "ok" for v in self.checks.values())

    def to_json(self) -> dict:
        return {
            "server": self.server,
            "requests": self.requests,
            "seed": self.seed,
            "concurrency": self.concurrency,
            "wall_s": round(self.wall_s, 2),
            "requests_per_s": round(self.requests / self.wall_s, 1) if self.wall_s else None,
            "statuses": {k: dict(v) for k, v in self.statuses.items()},
            "either_statuses": {k: dict(v) for k, v in self.either_statuses.items()},
            "violation_count": self.violation_count,
            "violations_by_kind": dict(self.violations_by_kind),
            "violations_by_variant": dict(self.violations_by_variant),
            "violations": self.violations,
            "checks": self.checks,
        }


MAX_LISTED = 50


def reference_request(manifest: Manifest, seed: int):
    """The reference product scored before and after the campaign: 8 patches, raw and PNG."""
    pool = ImagePool(manifest, seed)
    regions = tuple(sorted(manifest.region_thresholds)) or ("R0",)
    request = pb.InspectRequest(product_id="reference", run_id="before-after")
    h, w, c = manifest.height, manifest.width, manifest.channels
    for k, image in enumerate((0, 1, 2, 3, 8, 9, 12, 13)):  # smooth, spotted and noise images
        p = request.patches.add(region=regions[k % len(regions)], frame=k // len(regions), vial=k)
        if k % 2:
            p.encoding, p.data = pb.IMAGE_ENCODING_PNG, pool.png[image]
        else:
            p.encoding, p.data = pb.IMAGE_ENCODING_RAW_UINT8, pool.raw[image]
            p.width, p.height, p.channels = w, h, c
    return request


def _score_reference(stub_call, request, deadline_s: float) -> tuple[str, bytes]:
    """(verdict, float32 scores as bytes) of the reference product; retried if the server ran out of time."""
    for _ in range(3):
        reply = pb.InspectReply.FromString(stub_call(request.SerializeToString(), timeout=deadline_s))
        if reply.verdict != pb.VERDICT_REJECT_INCOMPLETE:
            break
    scores = np.array([p.score for p in reply.patches], np.float32)
    decisions = bytes(p.decision for p in reply.patches)
    return pb.Verdict.Name(reply.verdict), scores.tobytes() + decisions


def run_campaign(
    target: str,
    model_dir: str | Path,
    requests: int = 10000,
    seed: int = 1,
    *,
    server: str = "",
    limits: RequestLimits | None = None,
    max_message_bytes: int = 0,
    concurrency: int = 4,
    deadline_s: float = 60.0,
    alive: Callable[[], bool] | None = None,
    log: Callable[[], str] | None = None,
    progress: bool = False,
) -> CampaignReport:
    """Send ``requests`` seeded cases to the server at ``target`` serving the model of ``model_dir`` (an
    exported version directory) and check every answer and the server's state afterwards.

    ``limits``/``max_message_bytes`` are the server's (defaults: the servers' defaults, the message limit
    derived from them); ``concurrency`` calls are in flight at once (keep it at most the server's
    --max_queue and --max_rpc_threads, so that no legal product is refused for load); ``alive`` says whether
    the server process still runs and ``log`` returns its log (both optional: an in-process server has none).
    """
    manifest = contract.load_manifest(model_dir)
    limits = limits or RequestLimits()
    max_message_bytes = max_message_bytes or contract.default_max_message_bytes(limits)
    factory = CaseFactory(manifest, limits, max_message_bytes, seed)
    report = CampaignReport(server or target, target, requests, seed, concurrency)
    lock = threading.Lock()
    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    channel = grpc.insecure_channel(target, options=options)
    # Bytes in, bytes out: wire-level cases are not InspectRequests, and the others are serialized once.
    call = channel.unary_unary(INSPECT_METHOD, request_serializer=None, response_deserializer=None)
    try:
        grpc.channel_ready_future(channel).result(timeout=60)
        reference = reference_request(manifest, seed)
        before = _score_reference(call, reference, deadline_s)
        status_before = _model_status(channel)

        def one(index: int) -> None:
            case = factory.case(index)
            t0 = time.perf_counter()
            try:
                reply_bytes, code, details = call(case.payload, timeout=deadline_s), "OK", ""
            except grpc.RpcError as err:
                reply_bytes, code, details = None, err.code().name, err.details() or ""
            elapsed = time.perf_counter() - t0
            label, violation = judge(case, code, details, reply_bytes, manifest)
            with lock:
                report.statuses.setdefault(case.kind, Counter())[label] += 1
                report.kind_seconds[case.kind] = report.kind_seconds.get(case.kind, 0.0) + elapsed
                if case.expect.outcome == "either":
                    report.either_statuses.setdefault(f"{case.kind}/{case.variant}", Counter())[label] += 1
                if violation:
                    report.violation_count += 1
                    report.violations_by_kind[case.kind] += 1
                    report.violations_by_variant[f"{case.kind}/{case.variant}"] += 1
                    if len(report.violations) < MAX_LISTED:
                        report.violations.append(f"{case.describe()} -> {violation}")
                done = sum(sum(c.values()) for c in report.statuses.values())
            if progress and done % 1000 == 0:
                print(
                    f"  {report.server}: {done}/{requests}, {report.violation_count} violations", flush=True
                )

        start = time.perf_counter()
        with ThreadPoolExecutor(max(1, concurrency)) as pool:
            for future in [pool.submit(one, i) for i in range(requests)]:
                future.result()
        report.wall_s = time.perf_counter() - start

        report.checks = _after_checks(channel, call, reference, before, status_before, deadline_s, alive, log)
    finally:
        channel.close()
    return report


def _model_status(channel) -> list[tuple[str, int]]:
    from tfad.serving.protos import pb_grpc

    status = pb_grpc.InspectionServiceStub(channel).GetModelStatus(pb.GetModelStatusRequest(), timeout=10)
    return [(m.name, m.serving_version) for m in status.models]


def _after_checks(channel, call, reference, before, status_before, deadline_s, alive, log) -> dict[str, str]:
    """The server's state after the campaign: alive, healthy, same model version, same reference scores."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    checks: dict[str, str] = {}
    checks["process alive"] = "ok" if alive is None or alive() else "server process exited (crash)"
    try:
        health = health_pb2_grpc.HealthStub(channel)
        statuses = {
            s or '""': health_pb2.HealthCheckResponse.ServingStatus.Name(
                health.Check(health_pb2.HealthCheckRequest(service=s), timeout=10).status
            )
            for s in ("", SERVICE_NAME)
        }
        bad = {s: v for s, v in statuses.items() if v != "SERVING"}
        checks["health SERVING"] = "ok" if not bad else f"health {bad}"
        status_after = _model_status(channel)
        checks["model version unchanged"] = (
            "ok" if status_after == status_before else f"{status_before} -> {status_after}"
        )
        after = _score_reference(call, reference, deadline_s)
        checks["reference scores bit-identical"] = (
            "ok" if after == before else f"verdict/scores differ: {before[0]} -> {after[0]}"
        )
    except grpc.RpcError as err:
        checks["server answers"] = f"{err.code().name}: {err.details()}"
    if log is not None:
        text = log()
        events = ("event=inspect_internal_error", "event=inference_exception", "event=fatal")
        found = {e: text.count(e) for e in events if e in text}
        checks["no internal errors logged"] = "ok" if not found else f"logged {found}"
    return checks


def format_report(report: CampaignReport) -> str:
    """A markdown table: requests, statuses and violations by mutation kind; the post-campaign checks."""
    rate = report.requests / max(report.wall_s, 1e-9)
    lines = [
        f"### {report.server}: {report.requests} requests, seed {report.seed}, concurrency "
        f"{report.concurrency}, {report.wall_s:.1f} s, {rate:.1f} requests/s",
        "",
        "| mutation kind | requests | statuses | violations | mean ms |",
        "|---|---|---|---|---|",
    ]
    total = Counter()
    for kind in KIND_NAMES:
        counts = report.statuses.get(kind, Counter())
        n = sum(counts.values())
        total.update(counts)
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        mean_ms = 1000 * report.kind_seconds.get(kind, 0.0) / n if n else 0.0
        lines.append(
            f"| {kind} | {n} | {statuses} | {report.violations_by_kind.get(kind, 0)} | {mean_ms:.1f} |"
        )
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(total.items()))
    lines.append(f"| **all** | {sum(total.values())} | {statuses} | {report.violation_count} | |")
    lines.append("")
    for key, counts in sorted(report.either_statuses.items()):
        either = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        lines.append(f"- {key} (a refusal or a complete verdict both allowed): {either}")
    lines += [f"- {name}: {result}" for name, result in report.checks.items()]
    if report.violations:
        lines.append(f"- violations (first {len(report.violations)} of {report.violation_count}):")
        lines += [f"  - {v}" for v in report.violations]
    return "\n".join(lines)


# --- the benchmark ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=10000, help="requests per server")
    p.add_argument(
        "--seed", type=int, default=1, help="campaign seed (cases are a function of seed and index)"
    )
    p.add_argument("--servers", default="cc,python", help="comma-separated: cc, python")
    p.add_argument(
        "--model-dir", default="", help="an exported version directory (default: export the --fixture model)"
    )
    p.add_argument(
        "--fixture",
        choices=("gray-reject", "rgb-bilinear"),
        default="gray-reject",
        help="fixture model to export when no --model-dir: 256x256x1 with the reject resize policy (the "
        "serving tests' model) or 256x256x3 resizing bilinearly",
    )
    p.add_argument("--concurrency", type=int, default=4, help="calls in flight (<= the servers' --max_queue)")
    p.add_argument("--deadline-s", type=float, default=60.0, help="client deadline per call")
    p.add_argument(
        "--cycle-budget-ms",
        type=int,
        default=60000,
        help="servers' cycle budget: large, so that no legal product's outcome depends on the machine's load",
    )
    p.add_argument("--cc-binary", default=str(REPO / "bazel-bin/cc/tfad_server"), help="C++ server binary")
    p.add_argument("--startup-timeout-s", type=float, default=180.0, help="wait this long for a server")
    p.add_argument("--json-out", default="", help="also write the reports here")
    p.add_argument("--replay", type=int, default=None, help="describe case INDEX of --seed and exit")
    return p.parse_args(argv)


def export_fixture(fixture: str, work: Path) -> Path:
    """Export the fixture model (tests/fixtures/servable.py) for the campaign; returns its version dir."""
    from tests.fixtures.servable import export_servable

    if fixture == "rgb-bilinear":
        return export_servable(
            work / "fixture_rgb" / "1", name="fixture_rgb", channels=3, resize="bilinear",
            thresholds={r: 0.0335 for r in ("R0", "R1", "R2", "R3")},
        )  # fmt: skip
    # The serving tests' thresholds (tests/serving/serving_testutils.py): smooth patches accept, spotted
    # ones reject.
    return export_servable(work / "fixture" / "1", thresholds={r: 0.0335 for r in ("R0", "R1", "R2", "R3")})


def machine_line() -> str:
    """CPU model, cores, clock and vector ISA (benchmarks/machine.py)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from machine import describe_machine

    m = describe_machine()
    isa = {16: "AVX-512", 8: "AVX2"}.get(m["lanes_fp32"], "no AVX2")
    return f"machine: {m['cpu']}, {m['cores']} cores, {m['clock_ghz']} GHz, {isa}"


def main(argv: list[str] | None = None) -> int:
    import os

    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    work = Path(tempfile.mkdtemp(prefix="tfad-abuse-"))
    model_dir = Path(args.model_dir).resolve() if args.model_dir else export_fixture(args.fixture, work)
    manifest = contract.load_manifest(model_dir)
    if args.replay is not None:
        limits = RequestLimits()
        factory = CaseFactory(manifest, limits, contract.default_max_message_bytes(limits), args.seed)
        print(factory.case(args.replay).describe())
        return 0
    print(machine_line(), flush=True)
    print(
        f"model: {manifest.name} v{manifest.version}, "
        f"{manifest.width}x{manifest.height}x{manifest.channels}, resize {manifest.resize}; servers' default "
        f"limits; cycle budget {args.cycle_budget_ms} ms",
        flush=True,
    )
    sys.path.insert(0, str(REPO / "benchmarks"))
    from latency import start_server

    models_root = work / "models"
    shutil.copytree(model_dir, models_root / manifest.name / str(manifest.version))
    server_args = argparse.Namespace(
        cc_binary=args.cc_binary,
        inference_threads=1,
        warmup_batch=4,
        patches=4,
        cycle_budget_ms=args.cycle_budget_ms,
        cc_flag=[],
        startup_timeout_s=args.startup_timeout_s,
    )
    reports = []
    for kind in [k.strip() for k in args.servers.split(",") if k.strip()]:
        log_path = work / f"{kind}.log"
        proc, log_file, target = start_server(kind, models_root, server_args, log_path)
        print(
            f"{kind} server on {target} (log {log_path}); {args.requests} requests, seed {args.seed}",
            flush=True,
        )
        try:
            report = run_campaign(
                target,
                model_dir,
                args.requests,
                args.seed,
                server=kind,
                concurrency=args.concurrency,
                deadline_s=args.deadline_s,
                alive=lambda p=proc: p.poll() is None,
                log=log_path.read_text,
                progress=True,
            )
            if proc.poll() is not None:
                report.checks["process alive"] = f"server process exited with {proc.returncode} (crash)"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except Exception:
                proc.kill()
            log_file.close()
        reports.append(report)
        print(format_report(report), flush=True)
    if args.json_out:
        Path(args.json_out).write_text(
            json.dumps({"machine": machine_line(), "reports": [r.to_json() for r in reports]}, indent=2)
            + "\n"
        )
    failed = [r.server for r in reports if not r.ok]
    print(f"\n{'FAILED: ' + ', '.join(failed) if failed else 'all checks passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
