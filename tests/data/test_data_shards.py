"""Packed TFRecord shards: exact round trip, make_dataset equivalence, worker sharding, integrity, CLI."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from data_testutils import corrupt_copy

from tfad.cli import main
from tfad.data.decode import decode_image_file, load_binary_mask
from tfad.data.errors import CorruptImageError, DataError
from tfad.data.layouts import read_line, read_mvtec
from tfad.data.packing import pack_dataset
from tfad.data.pipeline import load_sample_arrays, make_dataset
from tfad.data.records import fingerprint
from tfad.data.shards import (
    ShardError,
    iterate_examples,
    make_shard_dataset,
    read_index,
    verify_shards,
)
from tfad.data.synth_vials import generate_synth_vials


@pytest.fixture(scope="module")
def vials(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic vial line (line layout): test split = 32 patches of 64x64, 4 with masks, ROIs."""
    root = tmp_path_factory.mktemp("shards") / "vials"
    generate_synth_vials(
        str(root),
        n_products=2,
        n_eval_products=2,
        n_runs=1,
        frames=2,
        vials=2,
        defect_rate=1.0,
        image_size=64,
    )
    return root


def collect(ds: tf.data.Dataset) -> dict[str, np.ndarray]:
    batches = list(ds.as_numpy_iterator())
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


def by_index(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.argsort(data["index"], kind="stable")
    return {k: v[order] for k, v in data.items()}


def native_arrays(record, channels: int):
    """What the folder reader decodes for ``record`` without resizing: (image, mask or None, roi or None)."""
    image = decode_image_file(record.path, channels)
    shape = image.shape[:2]
    mask = load_binary_mask(record.mask_path, shape, shape) if record.mask_path else None
    roi = load_binary_mask(record.roi_path, shape, shape) if record.roi_path else None
    return image, mask, roi


def assert_round_trip(out: Path, records, size, channels: int) -> list:
    examples = list(iterate_examples(out))
    assert sorted(ex.index for ex in examples) == list(range(len(records)))
    for ex in examples:
        record = records[ex.index]
        assert ex.record == record  # every label/metadata field and the (absolute) paths
        if size is None:
            image, mask, roi = native_arrays(record, channels)
        else:
            image, mask, roi = load_sample_arrays(record, size, channels, True, True)
            mask = mask if record.mask_path else None
            roi = roi if record.roi_path else None
        assert ex.image.dtype == np.uint8
        np.testing.assert_array_equal(ex.image, image)
        for got, want in ((ex.mask, mask), (ex.roi, roi)):
            assert (got is None) == (want is None)
            if want is not None:
                np.testing.assert_array_equal(got, want)
    return examples


def shard_file(out: Path, k: int) -> Path:
    return out / read_index(out)["shards"][k]["file"]


# --------------------------------------------------------------------------------------- round trips
def test_mvtec_round_trip_native_rgb_and_resized_grey(mvtec_root: Path, tmp_path: Path) -> None:
    train = read_mvtec(str(mvtec_root), "train")  # png, JPG, bmp of three different sizes
    result = pack_dataset(train, tmp_path / "train", None, channels=3, shard_size=2, progress=False,
                          split="train", source_root=mvtec_root)  # fmt: skip
    assert result.shards == ["train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert sorted(os.listdir(tmp_path / "train")) == ["index.json", *result.shards]  # no temp files left
    examples = assert_round_trip(tmp_path / "train", train, None, 3)
    assert {ex.image.shape for ex in examples} == {(40, 60, 3), (50, 50, 3), (30, 80, 3)}
    assert examples[0].source_path == "train/good/000.png" and examples[1].shard == result.shards[0]
    # Images of different sizes, packed as decoded, resized at read time: the folder pipeline's pixels.
    got = collect(make_shard_dataset(tmp_path / "train", (20, 30), 3, batch_size=2, with_masks=True))
    want = collect(make_dataset(train, (20, 30), 3, batch_size=2, with_masks=True))
    for key in ("image", "mask", "label", "index"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)

    test = read_mvtec(str(mvtec_root), "test")  # crack images with masks, one good
    pack_dataset(test, tmp_path / "test", (24, 32), channels=1, progress=False, split="test")
    examples = assert_round_trip(tmp_path / "test", test, (24, 32), 1)
    assert sum(ex.mask is not None for ex in examples) == 2 and examples[0].mask.sum() > 0

    index = json.loads((tmp_path / "test/index.json").read_text())
    assert index["format"] == "tfad-shards/1" and index["split"] == "test"
    assert index["image_size"] == [24, 32] and index["channels"] == 1 and index["records"] == 3
    assert index["source"]["fingerprint"] == fingerprint(test)  # the convention of `tfad fit`
    assert index["counts"]["labels"] == {"0": 1, "1": 2}
    assert index["counts"]["defect_types"] == {"crack": 2, "good": 1}
    assert index["counts"]["with_mask"] == 2 and index["corrupt"] == {}
    [entry] = index["shards"]
    assert entry["bytes"] == os.path.getsize(tmp_path / "test" / entry["file"]) and entry["records"] == 3


def test_line_round_trip_with_masks_rois_labels_and_shuffled_packing(line_root: Path, tmp_path: Path) -> None:
    records = read_line(str(line_root), "test")  # mask, shared ROI (R0), a per-image ROI, labels.csv
    assert any(r.mask_path for r in records) and len({r.roi_path for r in records if r.roi_path}) == 2
    pack_dataset(records, tmp_path / "p", 16, shard_size=5, progress=False, shuffle_seed=3)
    examples = assert_round_trip(tmp_path / "p", records, (16, 16), 1)
    order = [ex.index for ex in examples]
    assert order != sorted(order)  # written in the seeded permutation
    assert [ex.position for ex in examples[:6]] == [0, 1, 2, 3, 4, 0]
    defective = [ex for ex in examples if ex.record.label == 1]
    assert [ex.record.defect_type for ex in defective] == ["particle"] and defective[0].mask.sum() > 0


def test_synth_vials_round_trip(vials: Path, tmp_path: Path) -> None:
    records = read_line(str(vials), "test")
    result = pack_dataset(records, tmp_path / "p", None, shard_size=7, progress=False, source_root=vials)
    assert result.records == 32 and len(result.shards) == 5 and result.skipped == {}
    examples = assert_round_trip(tmp_path / "p", records, None, 1)
    assert sum(ex.mask is not None for ex in examples) == sum(r.mask_path is not None for r in records) > 0
    assert all(ex.roi is not None for ex in examples)
    assert verify_shards(tmp_path / "p", decode=True).records == 32
    # An 8-bit grey source PNG read as decoded is stored verbatim (no re-encoding), and still round-trips.
    raw = next(tf.data.TFRecordDataset(str(shard_file(tmp_path / "p", 0))).as_numpy_iterator())
    stored = tf.train.Example.FromString(raw).features.feature["image"].bytes_list.value[0]
    assert stored == Path(records[0].path).read_bytes()


# ------------------------------------------------------------------------------ tf.data equivalence
def test_shard_dataset_equals_make_dataset(line_root: Path, vials: Path, tmp_path: Path) -> None:
    records = read_line(str(line_root), "test")
    pack_dataset(records, tmp_path / "native", None, shard_size=3, progress=False)
    kwargs = dict(batch_size=5, with_masks=True, with_roi=True)
    shards = make_shard_dataset(tmp_path / "native", (24, 20), 1, shuffle=True, seed=1, **kwargs)
    folder = make_dataset(records, (24, 20), 1, shuffle=True, seed=1, **kwargs)
    assert shards.element_spec == folder.element_spec  # keys, dtypes, shapes
    got, want = collect(shards), collect(folder)
    first_order = got["index"].tolist()
    assert first_order != sorted(first_order)  # shuffled
    got, want = by_index(got), by_index(want)
    assert got["index"].tolist() == list(range(len(records)))
    for key in ("image", "mask", "roi", "label", "index"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert got["mask"].sum() > 0 and 0 < got["roi"].mean() < 1
    # seeded: the same order from a new dataset with the same seed
    again = make_shard_dataset(tmp_path / "native", (24, 20), 1, shuffle=True, seed=1, **kwargs)
    assert collect(again)["index"].tolist() == first_order
    assert collect(again)["index"].tolist() != first_order  # reshuffled every pass

    # Packed at a size: read at that size (image_size defaults to it), unshuffled in index order.
    vial_records = read_line(str(vials), "test")
    pack_dataset(vial_records, tmp_path / "sized", 32, shard_size=10, progress=False)
    ds = make_shard_dataset(tmp_path / "sized", batch_size=6, with_masks=True)
    assert ds.records_per_pass == 32 and set(ds.element_spec) == {"image", "label", "index", "mask"}
    batches = list(ds.as_numpy_iterator())
    assert [len(b["index"]) for b in batches] == [6, 6, 6, 6, 6, 2]
    got = collect(ds)
    want = collect(make_dataset(vial_records, (32, 32), 1, batch_size=6, with_masks=True))
    assert got["index"].tolist() == list(range(32))
    for key in ("image", "mask", "label", "index"):
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    assert got["image"].dtype == np.float32 and 0.0 <= got["image"].min() and got["image"].max() <= 1.0

    # resume: start skips examples of the stream, like make_dataset's start
    resumed = collect(make_shard_dataset(tmp_path / "sized", batch_size=6, start=20))
    assert resumed["index"].tolist() == list(range(20, 32))

    with pytest.raises(DataError, match="packed at 32x32, cannot read it at 16x16"):
        make_shard_dataset(tmp_path / "sized", 16)
    with pytest.raises(DataError, match="packed with 1 channel"):
        make_shard_dataset(tmp_path / "sized", channels=3)
    with pytest.raises(DataError, match="give image_size"):
        make_shard_dataset(tmp_path / "native")


def test_worker_sharding_partitions_the_examples(vials: Path, tmp_path: Path) -> None:
    records = read_line(str(vials), "test")
    pack_dataset(records, tmp_path / "p", 64, shard_size=5, progress=False, shuffle_seed=0)
    files = [e["file"] for e in read_index(tmp_path / "p")["shards"]]
    assert len(files) == 7
    seen: list[list[int]] = []
    for worker in range(3):
        ds = make_shard_dataset(tmp_path / "p", batch_size=4, shuffle=True, seed=5, num_shards=3,
                                shard_index=worker)  # fmt: skip
        assert [os.path.basename(p) for p in ds.shard_files] == files[worker::3]  # files i, i+n, ...
        indices = collect(ds)["index"].tolist()
        assert len(indices) == ds.records_per_pass
        seen.append(indices)
    flat = [i for indices in seen for i in indices]
    assert len(flat) == len(set(flat)) == 32 and sorted(flat) == list(range(32))  # disjoint, complete
    with pytest.raises(DataError, match="worker 7 gets none"):
        make_shard_dataset(tmp_path / "p", num_shards=8, shard_index=7)


# ----------------------------------------------------------------------------------------- integrity
def _damage(out: Path, how: str) -> str:
    """Damage shard 1 (or the index) of ``out``; returns the text the error must contain."""
    target = shard_file(out, 1)
    index_path = out / "index.json"
    if how == "flip":
        data = bytearray(target.read_bytes())
        for i in range(len(data) // 2, len(data) // 2 + 16):
            data[i] ^= 0xFF
        target.write_bytes(bytes(data))
        return "SHA-256 mismatch"
    if how == "truncate":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
        return "truncated"
    if how == "delete":
        target.unlink()
        return "missing"
    index = json.loads(index_path.read_text())
    if how == "index-count":  # the shard is intact, the index claims one record more
        index["shards"][1]["records"] += 1
        index["records"] += 1
        index_path.write_text(json.dumps(index))
        return "holds 5 records, the index says 6"
    if how == "index-sha":
        index["shards"][1]["sha256"] = "0" * 64
        index_path.write_text(json.dumps(index))
        return "SHA-256 mismatch"
    index_path.write_text(index_path.read_text()[:-20])  # "index-json": cut short
    return "not valid JSON"


@pytest.mark.parametrize("how", ["flip", "truncate", "delete", "index-count", "index-sha", "index-json"])
def test_damaged_shards_are_rejected_naming_the_shard(vials: Path, tmp_path: Path, how: str) -> None:
    out = tmp_path / "p"
    pack_dataset(read_line(str(vials), "test"), out, 32, shard_size=5, progress=False, split="test")
    name = "index.json" if how == "index-json" else shard_file(out, 1).name
    assert name in ("index.json", "test-00001-of-00007.tfrecord")
    expected = _damage(out, how)
    with pytest.raises(ShardError, match=re.escape(expected)) as err:
        verify_shards(out)
    assert err.value.shard == name and name in str(err.value) and "\n" not in str(err.value)
    if how == "index-count":
        # Sizes and checksums are intact: reading finds that the shard ends early, naming it.
        ds = make_shard_dataset(out, batch_size=4)
        with pytest.raises(tf.errors.OpError, match=rf"ShardError.*{re.escape(name)}.*read 5 of 6"):
            collect(ds)
    else:
        with pytest.raises(ShardError, match=re.escape(expected)) as err:
            make_shard_dataset(out, batch_size=4)
        assert err.value.shard == name
    with pytest.raises(ShardError, match=re.escape(name)):
        list(iterate_examples(out))


def test_damage_after_a_size_only_check_stops_reading_naming_the_shard(vials: Path, tmp_path: Path) -> None:
    out = tmp_path / "p"
    pack_dataset(read_line(str(vials), "test"), out, 32, shard_size=5, progress=False)
    _damage(out, "flip")
    ds = make_shard_dataset(out, batch_size=4, verify="size", on_corrupt="skip")  # sizes still agree
    # TFRecord's CRC-32C fails; the shard is never read in part silently, whatever on_corrupt says.
    with pytest.raises(tf.errors.OpError, match=rf"ShardError.*{shard_file(out, 1).name}.*unreadable"):
        collect(ds)


def _replace_record_image(out: Path, k: int, position: int, data: bytes) -> None:
    """Rewrite shard ``k`` with the image bytes of one record replaced, index updated (a writer bug)."""
    path = shard_file(out, k)
    raws = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    example = tf.train.Example.FromString(raws[position])
    example.features.feature["image"].bytes_list.value[0] = data
    raws[position] = example.SerializeToString()
    with tf.io.TFRecordWriter(str(path)) as writer:
        for raw in raws:
            writer.write(raw)
    index = json.loads((out / "index.json").read_text())
    import hashlib

    index["shards"][k]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    index["shards"][k]["bytes"] = path.stat().st_size
    (out / "index.json").write_text(json.dumps(index))


def test_undecodable_record_follows_on_corrupt(vials: Path, tmp_path: Path) -> None:
    out = tmp_path / "p"
    pack_dataset(read_line(str(vials), "test"), out, 32, shard_size=5, progress=False)
    _replace_record_image(out, 0, 2, b"\x89PNG\r\n\x1a\n this is no image")
    name = shard_file(out, 0).name
    assert verify_shards(out).records == 32  # checksums and parsing are fine: the writer put bad bytes
    with pytest.raises(ShardError, match=rf"{re.escape(name)}.*record 2: image: PNG does not decode"):
        verify_shards(out, decode=True)
    with pytest.raises(ShardError, match="record 2"):
        list(iterate_examples(out))

    ds = make_shard_dataset(out, batch_size=8, on_corrupt="skip")
    indices = collect(ds)["index"].tolist()
    assert len(indices) == 31 and 2 not in indices
    assert ds.corrupt_counter.count == 1
    [(where, reason)] = ds.corrupt_counter.reasons.items()
    assert where == f"{out / name} record 2" and "PNG does not decode" in reason

    ds = make_shard_dataset(out, batch_size=8, on_corrupt="fail")
    with pytest.raises(tf.errors.OpError, match=rf"ShardError.*{re.escape(name)}.*record 2"):
        collect(ds)


def test_corrupt_source_files_are_skipped_and_listed_or_fail(line_root: Path, tmp_path: Path) -> None:
    bad_image = corrupt_copy(line_root / "test/r0/P2/f0_v1_R0.png", "truncate")
    bad_mask = corrupt_copy(line_root / "masks/test/r0/P2/f1_v0_R1.png", "garbage")
    records = read_line(str(line_root), "test")
    bad_positions = [
        i for i, r in enumerate(records) if r.path == str(bad_image) or r.mask_path == str(bad_mask)
    ]
    assert len(bad_positions) == 2

    result = pack_dataset(records, tmp_path / "skip", 16, progress=False, source_root=line_root)
    assert result.records == len(records) - 2 and result.source_records == len(records)
    assert set(result.skipped) == {"test/r0/P2/f0_v1_R0.png", "masks/test/r0/P2/f1_v0_R1.png"}
    for rel, path in (("test/r0/P2/f0_v1_R0.png", bad_image), ("masks/test/r0/P2/f1_v0_R1.png", bad_mask)):
        with pytest.raises(CorruptImageError) as err:
            decode_image_file(str(path), 1)
        assert result.skipped[rel] == err.value.reason  # the folder reader's reason
    index = read_index(tmp_path / "skip")
    assert index["corrupt"] == result.skipped and index["records"] == len(records) - 2
    indices = collect(make_shard_dataset(tmp_path / "skip", batch_size=4))["index"].tolist()
    assert sorted(indices) == [i for i in range(len(records)) if i not in bad_positions]

    with pytest.raises(CorruptImageError) as err:
        pack_dataset(records, tmp_path / "fail", 16, on_corrupt="fail", progress=False)
    assert err.value.path in (str(bad_image), str(bad_mask))
    assert os.listdir(tmp_path / "fail") == []  # no index, no shard, no temporary file


def test_overwrite_is_refused_unless_asked(line_root: Path, tmp_path: Path) -> None:
    records = read_line(str(line_root), "train")
    out = tmp_path / "p"
    assert len(pack_dataset(records, out, 16, shard_size=1, progress=False).shards) == 16
    with pytest.raises(DataError, match="is not empty"):
        pack_dataset(records, out, 16, progress=False)
    result = pack_dataset(records, out, 16, shard_size=100, progress=False, overwrite=True)
    assert sorted(os.listdir(out)) == ["data-00000-of-00001.tfrecord", "index.json"]  # no stale shard
    assert verify_shards(out).shards == 1 and result.records == 16
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not packed shards"):
        pack_dataset(records, out, 16, progress=False, overwrite=True)
    assert (out / "notes.txt").read_text() == "mine" and (out / "index.json").is_file()


# ----------------------------------------------------------------------------------------------- CLI
def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "error:" in line]


def test_cli_pack_and_verify(vials: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "packed"
    argv = ["datasets", "pack", str(vials), str(out), "--split", "test", "--image-size", "32"]
    assert main([*argv, "--shard-size", "10", "--shuffle-seed", "1"]) == 0
    text = capsys.readouterr().out
    assert f"packed 32 of 32 images of {vials} split test (32x32, 1 channel(s)) into 4 shard(s)" in text
    index = read_index(out)
    assert (
        index["source"]["layout"] == "line" and index["shuffle_seed"] == 1 and index["image_size"] == [32, 32]
    )
    assert main(["datasets", "verify", str(out), "--decode"]) == 0
    assert f"{out}: 4 shard(s), 32 records" in capsys.readouterr().out

    assert main(argv) == 2  # OUT is not empty
    [line] = _error_lines(capsys.readouterr().err)
    assert line.startswith("tfad datasets: error: output folder") and "is not empty" in line

    shard = shard_file(out, 2)
    shard.write_bytes(shard.read_bytes()[:-100])
    assert main(["datasets", "verify", str(out)]) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert (
        line.startswith("tfad datasets: error: packed shards") and shard.name in line and "truncated" in line
    )

    assert main(["datasets", "pack", str(tmp_path / "missing"), str(tmp_path / "o"), "--split", "test"]) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert "data set root not found" in line
    assert main(["datasets", "verify", str(tmp_path)]) == 2
    [line] = _error_lines(capsys.readouterr().err)
    assert "index.json" in line and "missing" in line
