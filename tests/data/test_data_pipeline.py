"""Decoding, resizing, the streaming tf.data pipeline, corrupt-file policy and load_images."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf
from data_testutils import corrupt_copy, gradient, write_image

from tfad.data.decode import decode_image_file, load_images
from tfad.data.errors import CorruptImageError, DataError
from tfad.data.layouts import read_line, read_mvtec
from tfad.data.pipeline import CorruptFileCounter, make_dataset
from tfad.data.records import ImageRecord


def collect(ds: tf.data.Dataset) -> dict[str, np.ndarray]:
    batches = list(ds.as_numpy_iterator())
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]} if batches else {}


def rgb_image(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 4 % 256, ys * 5 % 256, (xs + ys) % 256], -1).astype(np.uint8)


def test_batches_have_the_documented_keys_shapes_and_values(mvtec_root: Path) -> None:
    records = read_mvtec(str(mvtec_root), "test")
    ds = make_dataset(records, (24, 32), channels=1, batch_size=2, with_masks=True, with_roi=True)
    spec = ds.element_spec
    assert spec["image"].shape.as_list() == [None, 24, 32, 1] and spec["image"].dtype == tf.float32
    assert spec["mask"].shape.as_list() == [None, 24, 32, 1] and spec["roi"].dtype == tf.float32
    assert spec["label"].dtype == tf.int32 and spec["index"].dtype == tf.int64
    data = collect(ds)
    assert data["index"].tolist() == [0, 1, 2]  # unshuffled: record order
    assert data["label"].tolist() == [r.label for r in records]
    expected = load_images(records, (24, 32), 1).astype(np.float32) / 255.0
    np.testing.assert_array_equal(data["image"], expected)  # one decode+resize code path
    assert 0.0 <= data["image"].min() and data["image"].max() <= 1.0
    assert set(np.unique(data["mask"])) == {0.0, 1.0}
    assert data["mask"][2].sum() == 0  # the good image has no mask: zeros
    assert data["mask"][0].sum() > 0
    assert np.all(data["roi"] == 1.0)  # no ROI: ones


def test_keys_not_asked_for_are_absent(mvtec_root: Path) -> None:
    ds = make_dataset(read_mvtec(str(mvtec_root), "train"), (8, 8), batch_size=4)
    assert set(ds.element_spec) == {"image", "label", "index"}


def test_bilinear_resize_matches_tensorflow_within_one_grey_level(tmp_path: Path) -> None:
    source = np.random.default_rng(0).integers(0, 256, (61, 93), dtype=np.uint8)
    path = write_image(tmp_path / "a.png", source)
    ours = load_images([path], (40, 50), 1)[0, :, :, 0].astype(int)
    reference = tf.image.resize(source[None, :, :, None].astype(np.float32), (40, 50), method="bilinear")
    reference = np.round(reference.numpy()[0, :, :, 0]).astype(int)
    assert np.abs(ours - reference).max() <= 1
    upscaled = load_images([path], (122, 186), 1)[0, :, :, 0].astype(int)
    reference_up = tf.image.resize(source[None, :, :, None].astype(np.float32), (122, 186), method="bilinear")
    assert np.abs(upscaled - np.round(reference_up.numpy()[0, :, :, 0])).max() <= 1


def test_mask_nearest_resize_stays_binary_and_in_place(tmp_path: Path) -> None:
    image = write_image(tmp_path / "img.png", gradient(50, 70))
    mask = np.zeros((50, 70), np.uint8)
    mask[10:30, 20:50] = 255
    mask[0, 0] = 7  # any non-zero value is defect
    mask_path = write_image(tmp_path / "mask.png", mask)
    record = ImageRecord(str(image), 1, "crack", mask_path=str(mask_path))
    out = collect(make_dataset([record], (33, 47), batch_size=1, with_masks=True))["mask"][0, :, :, 0]
    assert set(np.unique(out)) == {0.0, 1.0}
    expected = cv2.resize((mask > 0).astype(np.uint8), (47, 33), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(out, expected)
    assert out[0, 0] == 1.0 and abs(out.mean() - (mask > 0).mean()) < 0.02


def test_channels_conversion(tmp_path: Path) -> None:
    colour = rgb_image(20, 30)
    colour_path = write_image(tmp_path / "colour.png", colour)
    grey_path = write_image(tmp_path / "grey.png", gradient(20, 30))
    as_rgb = load_images([colour_path], (20, 30), 3)[0]
    np.testing.assert_array_equal(as_rgb, colour)  # RGB order kept
    as_grey = load_images([colour_path], (20, 30), 1)[0, :, :, 0]
    expected_grey = cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(as_grey, expected_grey)
    grey_as_rgb = load_images([grey_path], (20, 30), 3)[0]
    for c in range(3):
        np.testing.assert_array_equal(grey_as_rgb[:, :, c], gradient(20, 30))
    ds = make_dataset([ImageRecord(str(colour_path), 0, "good")], (10, 15), channels=3, batch_size=1)
    assert collect(ds)["image"].shape == (1, 10, 15, 3)
    with pytest.raises(ValueError, match="channels"):
        load_images([grey_path], (4, 4), 2)


def test_formats_tiff_bmp_jpeg_and_16_bit(tmp_path: Path) -> None:
    image = gradient(24, 36)
    for ext in ("tif", "tiff", "bmp", "png"):
        decoded = decode_image_file(str(write_image(tmp_path / f"a.{ext}", image)), 1)
        np.testing.assert_array_equal(decoded[:, :, 0], image)
    jpeg = decode_image_file(str(write_image(tmp_path / "a.jpg", image)), 1)
    assert np.abs(jpeg[:, :, 0].astype(int) - image).mean() < 3
    deep = image.astype(np.uint16) * 257  # full 16-bit range
    assert cv2.imwrite(str(tmp_path / "deep.tif"), deep)
    np.testing.assert_array_equal(decode_image_file(str(tmp_path / "deep.tif"), 1)[:, :, 0], image)


@pytest.mark.parametrize(
    ("kind", "ext", "reason"),
    [
        ("truncate", "jpg", "truncated JPEG"),
        ("truncate", "png", "not a decodable"),
        ("garbage", "png", "not a decodable"),
        ("empty", "bmp", "empty file"),
    ],
)
def test_corrupt_file_errors_name_the_file(tmp_path: Path, kind: str, ext: str, reason: str) -> None:
    path = corrupt_copy(write_image(tmp_path / f"bad.{ext}", rgb_image(64, 64)), kind)
    with pytest.raises(CorruptImageError, match=reason) as info:
        decode_image_file(str(path), 1)
    assert info.value.path == str(path) and str(path) in str(info.value)


def make_records_with_corrupt(tmp_path: Path, n_good: int, corrupt: list[str]) -> list[ImageRecord]:
    records = [
        ImageRecord(str(write_image(tmp_path / f"good{i}.png", gradient(16, 16, i))), 0, "good")
        for i in range(n_good)
    ]
    for i, kind in enumerate(corrupt):
        path = corrupt_copy(write_image(tmp_path / f"bad{i}.jpg", rgb_image(40, 40)), kind)
        records.insert(1 + 2 * i, ImageRecord(str(path), 0, "good"))
    records.append(ImageRecord(str(tmp_path / "missing.png"), 0, "good"))
    return records


def test_skip_counts_and_logs_each_pass(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    records = make_records_with_corrupt(tmp_path, 5, ["truncate", "garbage"])
    bad = sorted([records[1].path, records[3].path, str(tmp_path / "missing.png")])
    ds = make_dataset(records, (8, 8), batch_size=3, name="unit")
    with caplog.at_level(logging.WARNING, logger="tfad.data.pipeline"):
        data = collect(ds)
    assert sorted(data["index"].tolist()) == [0, 2, 4, 5, 6]  # the good ones, by position in records
    counter = ds.corrupt_counter
    assert isinstance(counter, CorruptFileCounter)
    assert counter.count == 3 and counter.paths == bad
    assert counter.per_pass == [3] and counter.passes_completed == 1
    assert "cannot read" in counter.reasons[str(tmp_path / "missing.png")]
    assert "unit: pass 1 over 8 records skipped 3 corrupt sample(s)" in caplog.text
    assert records[1].path in caplog.text
    # A second pass (epoch) counts the same files again and logs again.
    shared = CorruptFileCounter("shared")
    epochs = make_dataset(records, (8, 8), batch_size=5, shuffle=True, seed=3, corrupt_counter=shared)
    assert [len(collect(epochs)["index"]) for _ in range(2)] == [5, 5]
    assert shared.passes_completed == 2 and shared.per_pass == [3, 3] and shared.count == 6
    # repeat=True: passes are counted as records are processed (prefetch may run ahead of the consumer,
    # and parallel decoding may attribute a skip at a pass boundary to the neighbouring pass).
    repeated = make_dataset(records, (8, 8), batch_size=5, repeat=True)
    assert sum(b["image"].shape[0] for b in repeated.take(4).as_numpy_iterator()) == 20
    assert repeated.corrupt_counter.passes_completed >= 4 and repeated.corrupt_counter.count >= 12
    assert len(repeated.corrupt_counter.paths) == 3
    assert len(shared.paths) == 3
    assert CorruptFileCounter("x").summary() == "x: no corrupt files"
    assert shared.summary().startswith("shared: 6 sample(s) skipped, 3 distinct file(s)")


def test_fail_stops_with_the_path(tmp_path: Path) -> None:
    records = make_records_with_corrupt(tmp_path, 3, ["truncate"])
    ds = make_dataset(records[:-1], (8, 8), batch_size=2, on_corrupt="fail")
    with pytest.raises(tf.errors.OpError, match=r"CorruptImageError.*bad0\.jpg.*truncated JPEG"):
        collect(ds)
    with pytest.raises(CorruptImageError, match=r"bad0\.jpg"):
        load_images(records[:-1], (8, 8), 1)


def test_corrupt_mask_skips_the_sample_and_names_the_mask(line_root: Path) -> None:
    records = read_line(str(line_root), "test")
    mask_path = Path(next(r.mask_path for r in records if r.mask_path))
    corrupt_copy(mask_path, "garbage")
    ds = make_dataset(records, (16, 16), batch_size=8, with_masks=True)
    assert sum(b["image"].shape[0] for b in ds.as_numpy_iterator()) == len(records) - 1
    assert ds.corrupt_counter.paths == [str(mask_path)]
    # Without masks the mask file is never opened: nothing is skipped.
    plain = make_dataset(records, (16, 16), batch_size=8)
    assert sum(b["image"].shape[0] for b in plain.as_numpy_iterator()) == len(records)
    assert plain.corrupt_counter.count == 0


def test_mask_of_another_size_is_corrupt(tmp_path: Path) -> None:
    image = write_image(tmp_path / "img.png", gradient(20, 20))
    mask = write_image(tmp_path / "mask.png", np.zeros((10, 10), np.uint8))
    ds = make_dataset([ImageRecord(str(image), 1, "x", mask_path=str(mask))], (8, 8), with_masks=True)
    assert list(ds) == []
    assert "mask/ROI is 10x10 but its image is 20x20" in ds.corrupt_counter.reasons[str(mask)]


def test_shuffle_is_seeded_and_reshuffles_each_pass(tmp_path: Path) -> None:
    records = [
        ImageRecord(str(write_image(tmp_path / f"{i}.png", gradient(8, 8, i))), 0, "good") for i in range(20)
    ]

    def order(seed: int, passes: int = 1) -> list[int]:
        ds = make_dataset(records, (4, 4), batch_size=20, shuffle=True, seed=seed, repeat=passes > 1)
        return [int(i) for b in ds.take(passes).as_numpy_iterator() for i in b["index"]]

    first = order(1)
    assert sorted(first) == list(range(20)) and first != list(range(20))
    assert order(1) == first
    assert order(2) != first
    two_passes = order(1, passes=2)
    assert sorted(two_passes[:20]) == sorted(two_passes[20:]) == list(range(20))
    assert two_passes[:20] != two_passes[20:]


def test_drop_remainder_and_argument_errors(mvtec_root: Path) -> None:
    records = read_mvtec(str(mvtec_root), "train")
    kept = make_dataset(records, (8, 8), batch_size=2)
    assert [b["image"].shape[0] for b in kept.as_numpy_iterator()] == [2, 1]
    dropped = make_dataset(records, (8, 8), batch_size=2, drop_remainder=True)
    assert [b["image"].shape[0] for b in dropped.as_numpy_iterator()] == [2]
    with pytest.raises(DataError, match="no records"):
        make_dataset([], (8, 8))
    with pytest.raises(ValueError, match="on_corrupt"):
        make_dataset(records, (8, 8), on_corrupt="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_size"):
        make_dataset(records, (8, 0))
