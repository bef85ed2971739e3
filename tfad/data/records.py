"""The sample record shared by every part of the package, its class index, the training-data fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

#: Label values (see docs/architecture.md): defective is the positive class of the metrics.
LABEL_GOOD = 0
LABEL_DEFECTIVE = 1
LABEL_UNKNOWN = -1


@dataclass(frozen=True)
class ImageRecord:
    """One image/patch of a data set. Field meanings: docs/architecture.md, "The sample record"."""

    path: str
    label: int
    defect_type: str
    mask_path: str | None = None
    roi_path: str | None = None
    region: str = "all"
    product_id: str = ""
    run_id: str = ""
    frame: int = 0
    vial: int = 0


def _common_root(records: Sequence[ImageRecord]) -> str:
    dirs = {os.path.dirname(os.path.abspath(r.path)) for r in records}
    return os.path.commonpath(sorted(dirs)) if dirs else ""


def fingerprint(
    records: Iterable[ImageRecord],
    root: str | None = None,
    method: Literal["stat", "content"] = "stat",
) -> str:
    """A stable ``"sha256:<hex>"`` identifying a set of records and the files behind them.

    Hashed, for each record sorted by relative path: the relative path of the image (and of its mask and
    ROI), the labelling fields (label, defect_type, region, product_id, run_id, frame, vial) and, per file,
    either (``method="stat"``, the default) its size in bytes and modification time in whole seconds -
    one ``stat`` per file, cheap on millions of files - or (``method="content"``) the SHA-256 of its
    bytes (reads everything; use for an audit). Whole seconds because copies between file systems keep
    seconds but not always sub-second precision. Paths are relative to ``root`` (default: the deepest
    common directory of all images), so the same data copied elsewhere with ``cp -p``/``rsync -a`` keeps its
    fingerprint; record order does not matter.

    Raises:
        FileNotFoundError: a file of a record does not exist (the error names it).
    """
    records = list(records)
    base = os.path.abspath(root) if root is not None else _common_root(records)
    file_cache: dict[str, list] = {}  # ROI files are shared by many records: stat/hash them once

    def file_entry(path: str | None) -> list | None:
        if path is None:
            return None
        abspath = os.path.abspath(path)
        if abspath not in file_cache:
            rel = os.path.relpath(abspath, base).replace(os.sep, "/")
            if method == "stat":
                st = os.stat(abspath)
                file_cache[abspath] = [rel, st.st_size, int(st.st_mtime)]
            elif method == "content":
                digest = hashlib.sha256()
                with open(abspath, "rb") as fh:
                    for chunk in iter(lambda: fh.read(1 << 20), b""):
                        digest.update(chunk)
                file_cache[abspath] = [rel, digest.hexdigest()]
            else:
                raise ValueError(f"fingerprint method must be 'stat' or 'content', got {method!r}")
        return file_cache[abspath]

    rows = []
    for r in records:
        rows.append(
            [
                file_entry(r.path),
                file_entry(r.mask_path),
                file_entry(r.roi_path),
                r.label,
                r.defect_type,
                r.region,
                r.product_id,
                r.run_id,
                r.frame,
                r.vial,
            ]
        )
    rows.sort(key=lambda row: json.dumps(row, separators=(",", ":")))
    digest = hashlib.sha256(f"tfad-records/1 {method}\n".encode())
    for row in rows:
        digest.update(json.dumps(row, separators=(",", ":")).encode())
        digest.update(b"\n")
    return "sha256:" + digest.hexdigest()


def class_indices(records: Sequence[ImageRecord], class_names: Sequence[str]) -> list[int]:
    """Each record's class: 0 (``class_names[0]``, "good") for good images, else its defect type's index.

    Raises ValueError naming a defect type that is not one of ``class_names``.
    """
    lookup = {name: i for i, name in enumerate(class_names)}
    out = []
    for record in records:
        if record.label == LABEL_GOOD:
            out.append(0)
        elif record.defect_type in lookup and lookup[record.defect_type] != 0:
            out.append(lookup[record.defect_type])
        else:
            raise ValueError(
                f"{record.path}: defect type {record.defect_type!r} is not one of the classes "
                f"{list(class_names)} (supervised.classes)"
            )
    return out
