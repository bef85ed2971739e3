"""Decoding and resizing image files: the one code path used by training, prediction and evaluation.

OpenCV decodes every format the package accepts (PNG, JPEG, BMP, TIFF incl. 16-bit) and resizes;
:mod:`tfad.data.pipeline` calls these functions inside ``tf.numpy_function`` (OpenCV releases the GIL, so
the parallel map runs them concurrently) and :func:`load_images` calls them directly, so a training batch
and a prediction input are bit-identical. Resizing is OpenCV ``INTER_LINEAR`` (bilinear, half-pixel
centres, no antialiasing - the same sampling as ``tf.image.resize(method="bilinear")``, within 1 grey
level of rounding) for images and ``INTER_NEAREST`` for masks and ROIs, which are binarised (non-zero = 1)
before resizing so they stay exactly 0/1.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence

import cv2
import numpy as np

from tfad.data.errors import CorruptImageError
from tfad.data.records import ImageRecord

log = logging.getLogger(__name__)

# Files are decoded as stored (IMREAD_UNCHANGED: any depth, alpha kept, EXIF orientation ignored - line
# cameras deliver raw sensor geometry and TensorFlow's decoders do not rotate either), then converted
# here, so grey from colour is the same BT.601 formula whatever the codec.
_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


def _check_channels(channels: int) -> None:
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")


def _to_uint8(image: np.ndarray, path: str) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:  # 16-bit camera TIFF/PNG: keep the full range
        return ((image.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if image.dtype in (np.float32, np.float64):  # float TIFF: assumed in [0, 1]
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise CorruptImageError(path, f"unsupported pixel type {image.dtype}")


def decode_image_file(path: str, channels: int) -> np.ndarray:
    """Decode ``path`` to ``uint8 [H, W, channels]`` (RGB order for 3 channels, BT.601 grey for 1).

    Colour files are converted to grey (BT.601: 0.299 R + 0.587 G + 0.114 B, alpha dropped) and grey files
    to RGB as asked; 16-bit files are scaled to 8 bits. A truncated JPEG (which OpenCV
    would decode with grey fill) is rejected by checking the end-of-image marker.

    Raises:
        CorruptImageError: the file is missing, unreadable, truncated or not a supported image.
    """
    _check_channels(channels)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as err:
        raise CorruptImageError(path, f"cannot read: {err.strerror or err}") from err
    if not data:
        raise CorruptImageError(path, "empty file")
    if data[:2] == _JPEG_SOI and _JPEG_EOI not in data[-4096:]:
        raise CorruptImageError(path, "truncated JPEG (no end-of-image marker)")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise CorruptImageError(path, f"OpenCV cannot decode it: {str(err).strip()}") from err
    if image is None or image.size == 0:
        raise CorruptImageError(path, "not a decodable PNG/JPEG/BMP/TIFF image")
    image = _to_uint8(image, path)
    stored = 1 if image.ndim == 2 else image.shape[2]
    if stored not in (1, 3, 4):
        raise CorruptImageError(path, f"unsupported number of channels {stored}")
    image = image.reshape(image.shape[0], image.shape[1], stored)
    if channels == 1:
        if stored == 1:
            return image
        code = cv2.COLOR_BGR2GRAY if stored == 3 else cv2.COLOR_BGRA2GRAY
        return cv2.cvtColor(image, code)[:, :, np.newaxis]
    code = {1: cv2.COLOR_GRAY2RGB, 3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGB}[stored]
    return cv2.cvtColor(image, code)


def resize_image(image: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of ``uint8 [H, W, C]`` to ``image_size`` = (height, width); a no-op when equal."""
    height, width = image_size
    if image.shape[:2] == (height, width):
        return image
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return resized.reshape(height, width, image.shape[2])


def load_binary_mask(
    path: str, image_size: tuple[int, int], source_shape: tuple[int, int] | None
) -> np.ndarray:
    """Decode a mask/ROI file as ``uint8 [H, W, 1]`` of 0/1 (non-zero = 1), nearest-resized.

    ``source_shape`` is the (height, width) of the image the mask belongs to; a mask of another size is
    an error (a mask drawn for another image), except when ``source_shape`` is None.

    Raises:
        CorruptImageError: unreadable file, or size mismatch with the image.
    """
    mask = decode_image_file(path, 1)[:, :, 0]
    if source_shape is not None and mask.shape != tuple(source_shape):
        raise CorruptImageError(
            path,
            f"mask/ROI is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{source_shape[1]}x{source_shape[0]}",
        )
    binary = (mask > 0).astype(np.uint8)
    height, width = image_size
    if binary.shape != (height, width):
        binary = cv2.resize(binary, (width, height), interpolation=cv2.INTER_NEAREST)
    return binary[:, :, np.newaxis]


def load_image(path: str, image_size: tuple[int, int], channels: int) -> np.ndarray:
    """Decode and resize one file: ``uint8 [H, W, channels]``. Raises CorruptImageError naming the file."""
    return resize_image(decode_image_file(path, channels), image_size)


def load_images(
    paths_or_records: Sequence[str | os.PathLike | ImageRecord],
    image_size: tuple[int, int],
    channels: int,
    num_threads: int = 2,
) -> np.ndarray:
    """Decode and resize files for prediction/evaluation: ``uint8 [N, H, W, channels]``.

    Same decode + resize as the training pipeline. ``num_threads`` threads decode concurrently (OpenCV
    releases the GIL).

    Raises:
        CorruptImageError: the first (in input order) file that cannot be decoded, naming its path.
    """
    _check_channels(channels)
    paths = [p.path if isinstance(p, ImageRecord) else os.fspath(p) for p in paths_or_records]
    height, width = image_size
    out = np.empty((len(paths), height, width, channels), np.uint8)
    errors: dict[int, CorruptImageError] = {}
    next_index = iter(range(len(paths)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None:
                return
            try:
                out[i] = load_image(paths[i], (height, width), channels)
            except CorruptImageError as err:
                errors[i] = err

    n_threads = max(1, min(num_threads, len(paths)))
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[min(errors)]
    return out


# squares of the 256 grey levels (at most 65025, so uint16): cv2.LUT makes the sum of squares one pass in C
_SQUARES = (np.arange(256, dtype=np.uint32) ** 2).astype(np.uint16)


def pixel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each image's mean grey level and pixel standard deviation, every channel pooled: ``uint8 [N, H, W, C]``
    -> ``(mean [N], std [N])`` float64.

    Computed from exact integer sums as the C++ server does (cc/validation.cc): ``mean = sum / n``,
    ``std = sqrt(max(sum_sq / n - mean^2, 0))``, so both servers and offline scoring get the same numbers,
    and ``std == 0`` exactly when every value of the image is equal (OpenCV sums integers exactly here).
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images [N, H, W, C], got {images.dtype} {list(images.shape)}")
    n, height = images.shape[:2]
    if n == 0:
        return np.zeros(0), np.zeros(0)
    rows = images.reshape(n, height, -1)  # 2-D per image, channels pooled
    count = rows[0].size
    sums = np.array([cv2.sumElems(rows[i])[0] for i in range(n)], np.float64)
    sums_sq = np.array([cv2.sumElems(cv2.LUT(rows[i], _SQUARES))[0] for i in range(n)], np.float64)
    mean = sums / count
    std = np.sqrt(np.maximum(sums_sq / count - mean * mean, 0.0))
    return mean, std


def blank_images(images: np.ndarray) -> np.ndarray:
    """Per image of ``uint8 [N, H, W, C]``: True when every pixel equals the first, all channels (a black
    frame, a zero-filled buffer after a failed grab, a saturated sensor; cc/validation.cc, the same rule).
    Only the images whose first row is uniform are compared whole, so real images cost one row each."""
    images = np.asarray(images)
    n, _, width, channels = images.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    pixels = images.reshape(n, -1, channels)
    blank = np.zeros(n, dtype=bool)
    for i in np.flatnonzero((pixels[:, :width] == pixels[:, :1]).all(axis=(1, 2))):
        blank[i] = bool((pixels[i] == pixels[i, :1]).all())
    return blank
