"""Reading data sets from disk into :class:`~tfad.data.records.ImageRecord` lists.

Two layouts (docs/data.md has examples):

* **MVTec** - ``<root>/<split>/<class>/<image>`` with ``good`` = defect-free and
  ``<root>/ground_truth/<class>/<stem>_mask.png`` pixel masks.
* **line** - ``<root>/<split>/<run_id>/<product_id>/f<frame>_v<vial>_<region>.<ext>`` with optional
  ``masks/``, ``roi/``, ``labels.csv`` and ``layout.yaml`` (docs/architecture.md, "Line data layout").

Only directory listings are needed to read a layout (no image is opened), so reading millions of
patches costs one ``scandir`` per folder.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections import Counter
from collections.abc import Iterable
from typing import Literal

import yaml

from tfad.data.errors import DataError
from tfad.data.records import LABEL_DEFECTIVE, LABEL_GOOD, ImageRecord

log = logging.getLogger(__name__)

#: Image file extensions read by every layout (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

#: Line-layout patch file name: f<frame>_v<vial>_<region>.<ext>
LINE_NAME_RE = re.compile(r"^f(\d+)_v(\d+)_([A-Za-z0-9][A-Za-z0-9_-]*)\.([A-Za-z]+)$")

#: Folders of a line root that are not splits.
LINE_RESERVED_DIRS = ("masks", "roi")
LABELS_COLUMNS = ("run_id", "product_id", "frame", "vial", "region", "label", "defect_type")

# Files an OS or a viewer drops into folders; never data.
_IGNORED_FILES = {"thumbs.db", "desktop.ini"}

Layout = Literal["auto", "mvtec", "line"]


def is_image_file(name: str) -> bool:
    """True when ``name`` has one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _ignored(name: str) -> bool:
    return name.startswith(".") or name.lower() in _IGNORED_FILES


def _list_dir(path: str) -> tuple[list[str], list[str]]:
    """Sorted (sub-directory names, file names) of ``path``, hidden/OS files left out."""
    dirs, files = [], []
    with os.scandir(path) as it:
        for entry in it:
            if _ignored(entry.name):
                continue
            (dirs if entry.is_dir() else files).append(entry.name)
    return sorted(dirs), sorted(files)


def _require_dir(path: str, what: str) -> None:
    if not os.path.isdir(path):
        raise DataError(f"{what} not found: {path!r}" + (" (it is a file)" if os.path.exists(path) else ""))


# ----------------------------------------------------------------------------------------------- MVTec
def _find_mvtec_mask(gt_dir: str, stem: str, gt_files: set[str]) -> str | None:
    for candidate in (f"{stem}_mask.png", f"{stem}.png"):
        if candidate in gt_files:
            return os.path.join(gt_dir, candidate)
    for name in gt_files:  # other extensions, e.g. <stem>_mask.bmp
        base, ext = os.path.splitext(name)
        if base == f"{stem}_mask" and ext.lower() in IMAGE_EXTENSIONS:
            return os.path.join(gt_dir, name)
    return None


def read_mvtec(root: str, split: str) -> list[ImageRecord]:
    """Read one split of an MVTec-layout data set.

    ``split="train"`` reads ``train/good`` (and ``train/<defect>`` folders if present), ``"test"`` (or any
    other split folder) reads every class folder in it. ``good`` is label 0, any other class label 1.
    Masks come from ``ground_truth/<class>/<stem>_mask.png`` (``<stem>.png`` is accepted too). When a
    class has a ``ground_truth`` folder every image of it must have a mask; a class without one gets
    ``mask_path=None``. Region is ``"all"``, ``product_id`` is ``"<class>/<stem>"``, ``run_id`` ``"0"``.
    Optional ROI masks (an extension of the layout, non-zero = inspect): ``roi/<split>/<class>/<stem>.png``
    for one image, else ``roi.png`` at the root for every image, else none (all ones).

    Raises:
        DataError: missing root/split/class folder, an empty split, a missing mask, a class folder that
            holds sub-folders (not this layout), naming the path.
    """
    root = os.path.abspath(root)
    _require_dir(root, "data set root")
    split_dir = os.path.join(root, split)
    _require_dir(split_dir, f"MVTec split {split!r}")
    classes, stray_files = _list_dir(split_dir)
    if stray_files:
        raise DataError(
            f"MVTec split folder {split_dir!r} holds files {stray_files[:3]}; expected only class folders"
        )
    if not classes:
        raise DataError(f"MVTec split folder {split_dir!r} has no class folders (expected e.g. 'good')")
    records: list[ImageRecord] = []
    skipped: list[str] = []
    shared_roi = os.path.join(root, "roi.png")
    shared_roi = shared_roi if os.path.isfile(shared_roi) else None
    for defect_type in classes:
        class_dir = os.path.join(split_dir, defect_type)
        roi_dir = os.path.join(root, "roi", split, defect_type)
        roi_files = set(_list_dir(roi_dir)[1]) if os.path.isdir(roi_dir) else set()
        subdirs, files = _list_dir(class_dir)
        if subdirs:
            raise DataError(
                f"MVTec class folder {class_dir!r} holds sub-folders {subdirs[:3]}; "
                "expected images only (is this the line layout?)"
            )
        label = LABEL_GOOD if defect_type == "good" else LABEL_DEFECTIVE
        gt_dir = os.path.join(root, "ground_truth", defect_type)
        gt_files: set[str] | None = None
        if label == LABEL_DEFECTIVE and os.path.isdir(gt_dir):
            gt_files = set(_list_dir(gt_dir)[1])
        for name in files:
            path = os.path.join(class_dir, name)
            if not is_image_file(name):
                skipped.append(path)
                continue
            stem = os.path.splitext(name)[0]
            mask_path = None
            if gt_files is not None:
                mask_path = _find_mvtec_mask(gt_dir, stem, gt_files)
                if mask_path is None:
                    raise DataError(
                        f"mask missing for {path!r}: expected {os.path.join(gt_dir, stem + '_mask.png')!r}"
                    )
            roi_path = os.path.join(roi_dir, f"{stem}.png") if f"{stem}.png" in roi_files else shared_roi
            records.append(
                ImageRecord(
                    path=path,
                    label=label,
                    defect_type=defect_type,
                    mask_path=mask_path,
                    roi_path=roi_path,
                    product_id=f"{defect_type}/{stem}",
                    run_id="0",
                )
            )
    if skipped:
        log.warning("%s: ignored %d non-image file(s), e.g. %s", split_dir, len(skipped), skipped[:3])
    if not records:
        raise DataError(f"MVTec split {split_dir!r} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
    return records


# ------------------------------------------------------------------------------------------------ line
def read_line_config(root: str) -> dict | None:
    """The parsed ``layout.yaml`` of a line root (None when absent), validated.

    Keys (all optional): ``regions`` (list of names), ``frames`` (a count - indices 0..n-1 - or a list of
    frame indices), ``vials`` (a count or a list of indices), ``image_size`` ([H, W]), anything else is
    kept as is (e.g. the generator's parameters).
    """
    path = os.path.join(root, "layout.yaml")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as fh:
            config = yaml.safe_load(fh) or {}
    except yaml.YAMLError as err:
        raise DataError(f"cannot parse {path!r}: {err}") from err
    if not isinstance(config, dict):
        raise DataError(f"{path!r} must hold a mapping, got {type(config).__name__}")
    if "regions" in config and (
        not isinstance(config["regions"], list) or not all(isinstance(r, str) for r in config["regions"])
    ):
        raise DataError(f"{path!r}: 'regions' must be a list of names, got {config['regions']!r}")
    for key in ("frames", "vials"):
        if key in config:
            value = config[key]
            if isinstance(value, int) and value > 0:
                continue
            if isinstance(value, list) and all(isinstance(v, int) and v >= 0 for v in value):
                continue
            raise DataError(f"{path!r}: {key!r} must be a positive count or a list of indices, got {value!r}")
    return config


def _allowed_indices(value: int | list[int] | None) -> set[int] | None:
    if value is None:
        return None
    return set(range(value)) if isinstance(value, int) else set(value)


def line_splits(root: str) -> list[str]:
    """Split folder names of a line root (every folder except ``masks``/``roi``)."""
    dirs, _ = _list_dir(root)
    return [d for d in dirs if d not in LINE_RESERVED_DIRS]


def parse_line_name(path: str) -> tuple[int, int, str]:
    """``(frame, vial, region)`` of a line-layout patch file; DataError naming ``path`` if malformed."""
    name = os.path.basename(path)
    match = LINE_NAME_RE.match(name)
    if not match or "." + match.group(4).lower() not in IMAGE_EXTENSIONS:
        raise DataError(
            f"bad file name in line layout: {path!r} (expected f<frame>_v<vial>_<region>.<ext>, "
            f"ext one of {', '.join(IMAGE_EXTENSIONS)})"
        )
    return int(match.group(1)), int(match.group(2)), match.group(3)


PatchKey = tuple[str, str, int, int, str]  # run_id, product_id, frame, vial, region


def _read_labels(root: str, split: str, all_splits: list[str]) -> dict[PatchKey, tuple[int, str, int]]:
    """labels.csv rows that belong to ``split``: key -> (label, defect_type, csv line number).

    A row belongs to ``split`` when its optional ``split`` column says so or, without that column, when
    ``<split>/<run_id>/<product_id>`` exists. A row whose run/product exists in no split is an error.
    """
    path = os.path.join(root, "labels.csv")
    if not os.path.exists(path):
        return {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in LABELS_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(
                f"{path!r}: missing column(s) {missing}; header must include {list(LABELS_COLUMNS)}"
            )
        has_split = "split" in (reader.fieldnames or [])
        owner_cache: dict[tuple[str, str], list[str]] = {}
        labels: dict[PatchKey, tuple[int, str, int]] = {}
        for row in reader:
            line_no = reader.line_num
            try:
                key: PatchKey = (
                    row["run_id"].strip(),
                    row["product_id"].strip(),
                    int(row["frame"]),
                    int(row["vial"]),
                    row["region"].strip(),
                )
                label = int(row["label"])
            except (TypeError, ValueError) as err:
                raise DataError(f"{path!r} line {line_no}: malformed row {row!r} ({err})") from err
            if label not in (LABEL_GOOD, LABEL_DEFECTIVE):
                raise DataError(f"{path!r} line {line_no}: label must be 0 or 1, got {label}")
            defect_type = (row["defect_type"] or "").strip()
            if label == LABEL_GOOD:
                defect_type = "good"
            elif not defect_type or defect_type == "good":
                raise DataError(
                    f"{path!r} line {line_no}: a defective row needs a defect_type other than 'good'"
                )
            if has_split:
                row_split = (row["split"] or "").strip()
                if row_split not in all_splits:
                    raise DataError(
                        f"{path!r} line {line_no}: split {row_split!r} is not a folder of {root!r}"
                    )
                if row_split != split:
                    continue
            else:
                run_product = key[:2]
                if run_product not in owner_cache:
                    owner_cache[run_product] = [
                        s for s in all_splits if os.path.isdir(os.path.join(root, s, *run_product))
                    ]
                owners = owner_cache[run_product]
                if not owners:
                    raise DataError(
                        f"{path!r} line {line_no}: run {key[0]!r} product {key[1]!r} "
                        "exists in no split folder"
                    )
                if len(owners) > 1:
                    raise DataError(
                        f"{path!r} line {line_no}: run {key[0]!r} product {key[1]!r} exists in splits "
                        f"{owners}; add a 'split' column to labels.csv"
                    )
                if owners[0] != split:
                    continue
            if key in labels and labels[key][:2] != (label, defect_type):
                raise DataError(
                    f"{path!r} line {line_no}: conflicts with line {labels[key][2]} for the same patch {key}"
                )
            labels[key] = (label, defect_type, line_no)
    return labels


def _scan_tree_files(top: str) -> set[str]:
    """Relative paths ('/'-separated) of every file under ``top`` (empty set when absent)."""
    found: set[str] = set()
    if not os.path.isdir(top):
        return found
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = [d for d in dirnames if not _ignored(d)]
        rel_dir = os.path.relpath(dirpath, top).replace(os.sep, "/")
        for name in filenames:
            if not _ignored(name):
                found.add(name if rel_dir == "." else f"{rel_dir}/{name}")
    return found


def read_line(root: str, split: str) -> list[ImageRecord]:
    """Read one split of a line-layout data set (docs/architecture.md, "Line data layout").

    Labels come from ``labels.csv`` (a patch not listed is good); masks from
    ``masks/<split>/<run>/<product>/<stem>.png``; ROI from the per-image ROI file if present, else
    ``roi/<region>.png``, else None. ``layout.yaml`` (optional) is used to validate regions, frame and
    vial indices, and to warn about incomplete acquisitions.

    Raises:
        DataError: missing root/split, an empty split, a file or folder out of place, a bad patch file
            name, a value outside ``layout.yaml``, a mask or ROI file without its image, labels.csv rows
            that are malformed, conflicting or refer to images that do not exist - naming the path.
    """
    root = os.path.abspath(root)
    _require_dir(root, "data set root")
    split_dir = os.path.join(root, split)
    _require_dir(split_dir, f"line split {split!r}")
    if split in LINE_RESERVED_DIRS:
        raise DataError(f"{split!r} is a reserved folder of the line layout, not a split")
    config = read_line_config(root) or {}
    allowed_regions = set(config["regions"]) if "regions" in config else None
    allowed_frames = _allowed_indices(config.get("frames"))
    allowed_vials = _allowed_indices(config.get("vials"))
    layout_yaml = os.path.join(root, "layout.yaml")

    labels = _read_labels(root, split, line_splits(root))
    mask_files = _scan_tree_files(os.path.join(root, "masks", split))
    roi_image_files = _scan_tree_files(os.path.join(root, "roi", split))
    region_roi: dict[str, str] = {}
    roi_dir = os.path.join(root, "roi")
    if os.path.isdir(roi_dir):
        for name in _list_dir(roi_dir)[1]:
            stem, ext = os.path.splitext(name)
            if ext.lower() == ".png":
                region_roi[stem] = os.path.join(roi_dir, name)

    records: list[ImageRecord] = []
    seen_stems: set[str] = set()  # "<run>/<product>/<stem>" of every image, to match masks and labels
    runs, stray = _list_dir(split_dir)
    if stray:
        raise DataError(
            f"unexpected file(s) in line split folder {split_dir!r}: {stray[:3]} (expected run folders)"
        )
    for run_id in runs:
        run_dir = os.path.join(split_dir, run_id)
        products, stray = _list_dir(run_dir)
        if stray:
            raise DataError(
                f"unexpected file(s) in run folder {run_dir!r}: {stray[:3]} (expected product folders)"
            )
        for product_id in products:
            product_dir = os.path.join(run_dir, product_id)
            subdirs, files = _list_dir(product_dir)
            if subdirs:
                raise DataError(f"unexpected folder(s) in product folder {product_dir!r}: {subdirs[:3]}")
            for name in files:
                path = os.path.join(product_dir, name)
                frame, vial, region = parse_line_name(path)
                if allowed_regions is not None and region not in allowed_regions:
                    raise DataError(
                        f"{path!r}: region {region!r} is not in {layout_yaml!r} {sorted(allowed_regions)}"
                    )
                if allowed_frames is not None and frame not in allowed_frames:
                    raise DataError(f"{path!r}: frame {frame} is not allowed by {layout_yaml!r}")
                if allowed_vials is not None and vial not in allowed_vials:
                    raise DataError(f"{path!r}: vial {vial} is not allowed by {layout_yaml!r}")
                stem = os.path.splitext(name)[0]
                rel_stem = f"{run_id}/{product_id}/{stem}"
                if rel_stem in seen_stems:
                    raise DataError(f"{path!r}: two image files for the same patch {rel_stem!r}")
                seen_stems.add(rel_stem)
                mask_path = None
                if f"{rel_stem}.png" in mask_files:
                    mask_path = os.path.join(root, "masks", split, run_id, product_id, f"{stem}.png")
                if f"{rel_stem}.png" in roi_image_files:
                    roi_path: str | None = os.path.join(root, "roi", split, run_id, product_id, f"{stem}.png")
                else:
                    roi_path = region_roi.get(region)
                label, defect_type, _ = labels.get(
                    (run_id, product_id, frame, vial, region), (LABEL_GOOD, "good", 0)
                )
                records.append(
                    ImageRecord(
                        path=path,
                        label=label,
                        defect_type=defect_type,
                        mask_path=mask_path,
                        roi_path=roi_path,
                        region=region,
                        product_id=product_id,
                        run_id=run_id,
                        frame=frame,
                        vial=vial,
                    )
                )
    if not records:
        raise DataError(f"line split {split_dir!r} contains no images")

    # Nothing may point at an image that is not there.
    for label_key, (_, _, line_no) in labels.items():
        run_id, product_id, frame, vial, region = label_key
        if f"{run_id}/{product_id}/f{frame}_v{vial}_{region}" not in seen_stems:
            raise DataError(
                f"{os.path.join(root, 'labels.csv')!r} line {line_no}: no image for run {run_id!r} product "
                f"{product_id!r} frame {frame} vial {vial} region {region!r} in {split_dir!r}"
            )
    for kind, files in (("mask", mask_files), ("ROI", roi_image_files)):
        orphans = sorted(f for f in files if not f.endswith(".png") or f[: -len(".png")] not in seen_stems)
        if orphans:
            folder = "masks" if kind == "mask" else "roi"
            raise DataError(
                f"{kind} file(s) without an image (or not .png): "
                f"{os.path.join(root, folder, split, orphans[0])!r} and {len(orphans) - 1} more"
            )
    _warn_incomplete(records, config, split_dir)
    return records


def _warn_incomplete(records: list[ImageRecord], config: dict, split_dir: str) -> None:
    """Warn (not fail: a line can lose a frame) when an acquisition lacks patches layout.yaml promises."""
    if not all(k in config for k in ("regions", "frames", "vials")):
        return
    expected = (
        len(config["regions"])
        * len(_allowed_indices(config["frames"]) or ())
        * len(_allowed_indices(config["vials"]) or ())
    )
    per_acquisition = Counter((r.run_id, r.product_id) for r in records)
    short = sorted(k for k, n in per_acquisition.items() if n != expected)
    if short:
        log.warning(
            "%s: %d acquisition(s) do not have the %d patches layout.yaml describes, "
            "e.g. run %r product %r (%d)",
            split_dir,
            len(short),
            expected,
            short[0][0],
            short[0][1],
            per_acquisition[short[0]],
        )


# ---------------------------------------------------------------------------------------------- detect
def detect_layout(root: str) -> Literal["mvtec", "line"]:
    """``"line"`` or ``"mvtec"`` from the folder structure of ``root``.

    Line: ``layout.yaml`` or ``labels.csv`` at the root, or a split whose first run/product folder holds
    ``f<frame>_v<vial>_<region>`` files. MVTec: ``ground_truth/`` at the root or a split whose class
    folders hold images directly.
    """
    root = os.path.abspath(root)
    _require_dir(root, "data set root")
    if os.path.exists(os.path.join(root, "layout.yaml")) or os.path.exists(os.path.join(root, "labels.csv")):
        return "line"
    if os.path.isdir(os.path.join(root, "ground_truth")):
        return "mvtec"
    for split in line_splits(root):
        split_dir = os.path.join(root, split)
        for level1 in _list_dir(split_dir)[0]:
            level1_dir = os.path.join(split_dir, level1)
            dirs, files = _list_dir(level1_dir)
            if any(is_image_file(f) for f in files):
                return "mvtec"
            for level2 in dirs:
                files2 = _list_dir(os.path.join(level1_dir, level2))[1]
                if any(LINE_NAME_RE.match(f) for f in files2):
                    return "line"
    raise DataError(
        f"cannot detect the layout of {root!r}: expected <split>/<class>/<image> (MVTec) or "
        "<split>/<run>/<product>/f<frame>_v<vial>_<region>.<ext> (line)"
    )


def read_dataset(root: str, split: str, layout: Layout = "auto") -> list[ImageRecord]:
    """Records of ``split`` in ``root``; ``layout`` ``"auto"`` uses :func:`detect_layout`."""
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "mvtec":
        return read_mvtec(root, split)
    if layout == "line":
        return read_line(root, split)
    raise ValueError(f"layout must be 'auto', 'mvtec' or 'line', got {layout!r}")


def list_splits(root: str, layout: Layout = "auto") -> list[str]:
    """Split folder names of ``root`` (MVTec: everything but ``ground_truth``)."""
    if layout == "auto":
        layout = detect_layout(root)
    dirs = line_splits(root)
    return [d for d in dirs if d != "ground_truth"] if layout == "mvtec" else dirs


def summarize(records: Iterable[ImageRecord]) -> dict:
    """Counts for reports: images, per label, per class, per region, products, runs, masks, ROIs."""
    records = list(records)
    return {
        "images": len(records),
        "labels": dict(sorted(Counter(r.label for r in records).items())),
        "classes": dict(sorted(Counter(r.defect_type for r in records).items())),
        "regions": dict(sorted(Counter(r.region for r in records).items())),
        "products": len({r.product_id for r in records}),
        "runs": len({r.run_id for r in records}),
        "with_mask": sum(r.mask_path is not None for r in records),
        "with_roi": sum(r.roi_path is not None for r in records),
    }
