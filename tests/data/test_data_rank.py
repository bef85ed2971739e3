"""The multi-frame rank filter and the rank-image dataset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from data_testutils import corrupt_copy, write_image

from tfad.data.errors import DataError
from tfad.data.rank import group_acquisitions, make_rank_dataset, rank_image, rank_images
from tfad.data.records import ImageRecord


def test_rank_images_min_max_on_constructed_frames() -> None:
    frames = np.zeros((3, 2, 2, 1), np.uint8)
    frames[:, 0, 0, 0] = [5, 1, 9]
    frames[:, 0, 1, 0] = [7, 7, 7]
    frames[:, 1, 0, 0] = [255, 0, 128]
    frames[:, 1, 1, 0] = [3, 200, 100]
    low, high = rank_images(tf.constant(frames))
    assert low.dtype == tf.uint8
    assert low.numpy()[:, :, 0].tolist() == [[1, 7], [0, 3]]
    assert high.numpy()[:, :, 0].tolist() == [[9, 7], [255, 200]]
    assert rank_image(frames, 2).numpy()[:, :, 0].tolist() == [[5, 7], [128, 100]]  # the median of 3
    np.testing.assert_array_equal(rank_image(frames, 1), low)
    np.testing.assert_array_equal(rank_image(frames, 3), high)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_every_rank_is_the_per_pixel_order_statistic(dtype: type) -> None:
    rng = np.random.default_rng(7)
    frames = rng.integers(0, 256, (16, 5, 6, 3)).astype(dtype)
    expected = np.sort(frames, axis=0)
    for rank in (1, 2, 8, 15, 16):
        out = rank_image(tf.constant(frames), rank)
        assert out.dtype == tf.as_dtype(dtype)
        np.testing.assert_array_equal(out.numpy(), expected[rank - 1])
    # A tensor rank (e.g. inside tf.function) works too.
    np.testing.assert_array_equal(rank_image(tf.constant(frames), tf.constant(4)).numpy(), expected[3])


def test_rank_out_of_range() -> None:
    frames = np.zeros((4, 2, 2, 1), np.uint8)
    for bad in (0, 5):
        with pytest.raises(ValueError, match="rank must be in 1..4"):
            rank_image(frames, bad)
    with pytest.raises(tf.errors.InvalidArgumentError, match="rank must be <= number of frames"):
        rank_image(tf.constant(frames), tf.constant(5))
    with pytest.raises(ValueError, match=r"\[F, H, W, C\]"):
        rank_image(np.zeros((4, 2, 2), np.uint8), 1)


def acquisition_records(tmp_path: Path) -> list[ImageRecord]:
    """Two acquisitions (vial 0, vial 1) of 3 frames; a bright moving dot; one defective frame with mask."""
    records = []
    for vial in (0, 1):
        for frame in (2, 0, 1):  # out of order on purpose
            image = np.full((8, 8), 100, np.uint8)
            image[frame, frame] = 250 - vial  # moves along the diagonal
            path = write_image(tmp_path / f"f{frame}_v{vial}_R0.png", image)
            mask_path = None
            label = 0
            if vial == 1 and frame == 2:
                mask = np.zeros((8, 8), np.uint8)
                mask[2, 2] = 255
                mask_path = str(write_image(tmp_path / f"mask_f{frame}_v{vial}.png", mask))
                label = 1
            records.append(
                ImageRecord(
                    str(path),
                    label,
                    "particle" if label else "good",
                    mask_path,
                    None,
                    "R0",
                    "P1",
                    "r0",
                    frame,
                    vial,
                )
            )
    return records


def test_group_acquisitions_sorted_by_frame(tmp_path: Path) -> None:
    records = acquisition_records(tmp_path)
    groups = group_acquisitions(records)
    assert list(groups) == [("r0", "P1", 0, "R0"), ("r0", "P1", 1, "R0")]
    assert [[records[i].frame for i in g] for g in groups.values()] == [[0, 1, 2], [0, 1, 2]]
    duplicate = [*records, records[0]]
    with pytest.raises(DataError, match="two images of frame"):
        group_acquisitions(duplicate)


def test_rank_dataset_yields_frames_then_min_and_max(tmp_path: Path) -> None:
    records = acquisition_records(tmp_path)
    ds = make_rank_dataset(records, (8, 8), batch_size=10, with_masks=True, with_roi=True)
    batch = next(iter(ds.as_numpy_iterator()))
    assert batch["image"].shape == (10, 8, 8, 1)
    assert batch["index"].tolist() == [1, 2, 0, -1, -1, 4, 5, 3, -1, -1]
    low, high = batch["image"][3, :, :, 0], batch["image"][4, :, :, 0]
    assert np.allclose(low, 100 / 255)  # the moving dot disappears from the minimum image
    assert [round(high[k, k] * 255) for k in range(3)] == [250, 250, 250]  # and is everywhere in the maximum
    assert batch["label"].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 1, 1]
    assert batch["mask"][8:10, 2, 2, 0].tolist() == [1.0, 1.0] and batch["mask"][8:10].sum() == 2
    assert np.all(batch["roi"] == 1.0)
    only_rank = make_rank_dataset(records, (8, 8), batch_size=10, include_frames=False)
    assert next(iter(only_rank.as_numpy_iterator()))["index"].tolist() == [-1, -1, -1, -1]


def test_rank_dataset_skips_corrupt_frames(tmp_path: Path) -> None:
    records = acquisition_records(tmp_path)
    corrupt_copy(Path(records[0].path), "garbage")  # vial 0, frame 2
    ds = make_rank_dataset(records, (8, 8), batch_size=20)
    batch = next(iter(ds.as_numpy_iterator()))
    assert batch["index"].tolist() == [1, 2, -1, -1, 4, 5, 3, -1, -1]
    assert ds.corrupt_counter.paths == [records[0].path] and ds.corrupt_counter.count == 1
    with pytest.raises(tf.errors.OpError, match="f2_v0_R0.png"):
        list(make_rank_dataset(records, (8, 8), on_corrupt="fail"))


def test_rank_dataset_shuffles_acquisitions_as_units(tmp_path: Path) -> None:
    records = acquisition_records(tmp_path)
    orders = set()
    for seed in range(6):
        ds = make_rank_dataset(records, (8, 8), batch_size=10, shuffle=True, seed=seed)
        index = next(iter(ds.as_numpy_iterator()))["index"].tolist()
        assert index in ([1, 2, 0, -1, -1, 4, 5, 3, -1, -1], [4, 5, 3, -1, -1, 1, 2, 0, -1, -1])
        orders.add(tuple(index))
    assert len(orders) == 2  # both acquisition orders occur, frames stay together
