"""ImageRecord and the training-data fingerprint."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

from tfad.data.layouts import read_mvtec
from tfad.data.records import ImageRecord, fingerprint


def test_record_is_frozen_with_the_documented_fields() -> None:
    names = [f.name for f in dataclasses.fields(ImageRecord)]
    assert names == ("path label defect_type mask_path roi_path region product_id run_id frame vial".split())
    record = ImageRecord("a.png", 0, "good")
    assert (record.region, record.frame, record.vial, record.mask_path) == ("all", 0, 0, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.label = 1  # type: ignore[misc]


def test_fingerprint_is_stable_order_free_and_location_free(mvtec_root: Path, tmp_path: Path) -> None:
    records = read_mvtec(str(mvtec_root), "test")
    fp = fingerprint(records)
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 64
    assert fingerprint(list(reversed(records))) == fp
    copy = tmp_path / "elsewhere"
    shutil.copytree(mvtec_root, copy)  # copytree keeps mtimes (copy2)
    assert fingerprint(read_mvtec(str(copy), "test")) == fp
    copied = read_mvtec(str(copy), "test")
    assert fingerprint(records, method="content") == fingerprint(copied, method="content")


def test_fingerprint_changes_with_labels_content_and_membership(mvtec_root: Path) -> None:
    records = read_mvtec(str(mvtec_root), "test")
    fp_stat, fp_content = fingerprint(records), fingerprint(records, method="content")
    assert fp_content != fp_stat
    relabelled = [dataclasses.replace(records[0], label=0, defect_type="good"), *records[1:]]
    assert fingerprint(relabelled) != fp_stat
    assert fingerprint(records[1:]) != fp_stat
    # Same size, same mtime, other bytes: only the content fingerprint sees it.
    target = Path(records[0].path)
    st = target.stat()
    data = bytearray(target.read_bytes())
    data[-20] ^= 0xFF
    target.write_bytes(bytes(data))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint(records) == fp_stat
    assert fingerprint(records, method="content") != fp_content
    # A newer modification time changes the stat fingerprint.
    os.utime(target, (st.st_atime + 10, st.st_mtime + 10))
    assert fingerprint(records) != fp_stat


def test_fingerprint_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.png"):
        fingerprint([ImageRecord(str(tmp_path / "nope.png"), 0, "good")])
