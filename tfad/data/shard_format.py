"""The format of packed shards (docs/data.md, "Packed shards (TFRecords)"): file and index names, the
``tf.train.Example`` schema, the lossless PNG coding of the pixels, and :class:`ShardError`.

Writing is :mod:`tfad.data.packing` (:func:`~tfad.data.packing.pack_dataset`), reading
:mod:`tfad.data.shards`; both go through the functions here, so what is written is what is read.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
import tensorflow as tf

from tfad.data.errors import DataError

FORMAT = "tfad-shards/1"
INDEX_NAME = "index.json"
DEFAULT_SHARD_SIZE = 1024
SPLIT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SHARD_RE = re.compile(r"^(?P<split>.+)-(?P<k>\d{5})-of-(?P<n>\d{5})\.tfrecord$")
TMP_SUFFIX = ".tfrecord.tmp"

OnCorrupt = Literal["skip", "fail"]
VerifyLevel = Literal["sha256", "size"]
SizeArg = int | Sequence[int] | None


class ShardError(DataError):
    """A packed-shard folder is damaged or inconsistent with its ``index.json``.

    ``shard`` is the first offending file name (a shard or ``index.json``), ``problems`` every
    ``(file, what is wrong)`` found. The message is one line naming the folder, the file and the problem.
    """

    def __init__(self, out_dir: str, problems: Sequence[tuple[str, str]]) -> None:
        problems = [(f, one_line(p)) for f, p in problems]
        first_file, first_problem = problems[0]
        more = f" (+{len(problems) - 1} more problem(s): " if len(problems) > 1 else ""
        rest = "; ".join(f"{f}: {p}" for f, p in problems[1:4])
        tail = f"{more}{rest}{'; ...' if len(problems) > 4 else ''})" if more else ""
        super().__init__(f"packed shards {out_dir!r}: {first_file!r}: {first_problem}{tail}")
        self.out_dir = out_dir
        self.shard = first_file
        self.problem = first_problem
        self.problems = problems


def one_line(text: str) -> str:
    return " ".join(str(text).split())


# ------------------------------------------------------------------------------------------ PNG helpers
def encode_png(array: np.ndarray) -> bytes:
    """Lossless PNG of ``uint8 [H, W, C]`` (C 1 or 3, RGB order)."""
    if array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)  # OpenCV writes BGR; decode swaps back
    else:
        array = array[:, :, 0]
    ok, buffer = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:  # pragma: no cover - OpenCV encodes every uint8 1/3-channel array
        raise RuntimeError("OpenCV could not encode a PNG")
    return buffer.tobytes()


def decode_png(data: bytes, shape: tuple[int, int, int], what: str) -> np.ndarray:
    """``uint8 [H, W, C]`` from PNG bytes; ValueError when they do not decode to ``shape``."""
    if not data:
        raise ValueError(f"{what}: empty PNG bytes")
    try:
        array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise ValueError(f"{what}: PNG does not decode: {one_line(err)}") from err
    if array is None:
        raise ValueError(f"{what}: PNG does not decode")
    if array.dtype != np.uint8:
        raise ValueError(f"{what}: PNG holds {array.dtype}, expected uint8")
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    elif array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if array.shape != tuple(shape):
        raise ValueError(f"{what}: PNG is {array.shape}, the example says {tuple(shape)}")
    return array


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def source_png_if_identical(path: str, image: np.ndarray) -> bytes | None:
    """The source file's bytes when it is a PNG that the reader decodes to exactly ``image``, else None.

    Encoding costs ~3x decoding; an 8-bit PNG stored as decoded need not be re-encoded. The check decodes
    the bytes with the reader's own function, so what is stored always reads back as ``image``.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if not data.startswith(PNG_SIGNATURE):
        return None
    try:
        same = np.array_equal(decode_png(data, image.shape, "image"), image)
    except ValueError:  # 16-bit, alpha, palette, grey stored as colour ...: converted, so re-encode
        return None
    return data if same else None


# -------------------------------------------------------------------------------------- example schema
def bytes_feature(value: bytes | str) -> tf.train.Feature:
    return tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[value.encode() if isinstance(value, str) else value])
    )


def int_feature(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


#: Feature name -> kind ("bytes"/"int") of every tf.train.Example in a shard (docs/data.md lists them).
EXAMPLE_FEATURES = {
    "image": "bytes", "height": "int", "width": "int", "channels": "int", "image_crc32": "int",
    "source_height": "int", "source_width": "int", "mask": "bytes", "roi": "bytes",
    "index": "int", "label": "int", "defect_type": "bytes", "region": "bytes", "product_id": "bytes",
    "run_id": "bytes", "frame": "int", "vial": "int", "path": "bytes", "mask_path": "bytes",
    "roi_path": "bytes",
}  # fmt: skip


def parse_example(raw: bytes) -> dict:
    """Feature dict of a serialized example; ValueError naming what is missing or malformed."""
    try:
        example = tf.train.Example.FromString(raw)
    except Exception as err:  # protobuf's DecodeError; its module differs between protobuf builds
        raise ValueError(f"not a tf.train.Example ({type(err).__name__})") from err
    features = example.features.feature
    out: dict = {}
    for name, kind in EXAMPLE_FEATURES.items():
        if name not in features:
            raise ValueError(f"feature {name!r} missing")
        values = features[name].bytes_list.value if kind == "bytes" else features[name].int64_list.value
        if len(values) != 1:
            raise ValueError(f"feature {name!r} is not one {kind} value")
        out[name] = (
            values[0].decode() if kind == "bytes" and name not in ("image", "mask", "roi") else values[0]
        )
    return out


def check_geometry(parsed: dict, index: dict) -> None:
    """ValueError when an example's channels or size contradict the index."""
    if parsed["channels"] != index["channels"]:
        raise ValueError(f"has {parsed['channels']} channels, the index says {index['channels']}")
    size = index["image_size"]
    if size and [parsed["height"], parsed["width"]] != size:
        raise ValueError(f"is {parsed['height']}x{parsed['width']}, the index says {size[0]}x{size[1]}")


def decode_arrays(
    parsed: dict, want_mask: bool, want_roi: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Stored pixels of a parsed example: (image, mask or None, roi or None); ValueError when corrupt."""
    shape = (int(parsed["height"]), int(parsed["width"]), int(parsed["channels"]))
    image = decode_png(parsed["image"], shape, "image")
    # The CRC of the decoded pixels catches a writer or decoder bug that PNG/TFRecord checksums cannot.
    if zlib.crc32(image.tobytes()) != int(parsed["image_crc32"]):
        raise ValueError("image pixels do not match their stored CRC-32")
    mask = roi = None
    if want_mask and parsed["mask"]:
        mask = decode_png(parsed["mask"], (*shape[:2], 1), "mask")
        if mask.max(initial=0) > 1:
            raise ValueError("mask holds values other than 0/1")
    if want_roi and parsed["roi"]:
        roi = decode_png(parsed["roi"], (*shape[:2], 1), "roi")
        if roi.max(initial=0) > 1:
            raise ValueError("roi holds values other than 0/1")
    return image, mask, roi


def size_pair(image_size: SizeArg, what: str = "image_size") -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int | np.integer):
        image_size = (int(image_size), int(image_size))
    if len(image_size) != 2 or not all(isinstance(v, int | np.integer) and v > 0 for v in image_size):
        raise ValueError(f"{what} must be a positive int or (height, width), got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def file_sha256(path: str) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
