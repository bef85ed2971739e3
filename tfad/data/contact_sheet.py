"""A PNG contact sheet of a generated vial-line split (``tfad datasets generate --contact-sheet``): one
column per vial, good and defective ones, defect masks outlined."""

from __future__ import annotations

import os

import cv2
import numpy as np

from tfad.data.errors import DataError
from tfad.data.layouts import read_line
from tfad.data.synth_vials import REGIONS


def make_contact_sheet(
    root: str, out_png: str, split: str = "test", columns: int = 6, tile: int = 112
) -> str:
    """A PNG contact sheet of a generated (line-layout) split: one column per vial (regions R0..R3 top to
    bottom, frame 0), half good vials from different products/runs, half defective vials (one per defect
    type where possible) with the defect masks outlined in red. Returns ``out_png``."""
    records = read_line(root, split)
    vials: dict[tuple[str, str, int], dict[str, object]] = {}
    for r in records:
        if r.frame == 0:
            vials.setdefault((r.product_id, r.run_id, r.vial), {})[r.region] = r
    defective, seen_types, good, seen_products = [], set(), [], set()
    for key, regions in sorted(vials.items()):
        types = {r.defect_type for r in regions.values() if r.label == 1}
        if types and not types <= seen_types and len(defective) < columns // 2:
            defective.append((key, "/".join(sorted(types))))
            seen_types |= types
        elif not types and key[0] not in seen_products and len(good) < columns - columns // 2:
            good.append((key, "good"))
            seen_products.add(key[0])
    chosen = good + defective
    if not chosen:
        raise DataError(f"no vials to show in {os.path.join(root, split)!r}")
    header = 18
    sheet = np.full((header + 4 * tile, len(chosen) * (tile + 4) - 4, 3), 255, np.uint8)
    for col, ((product_id, run_id, vial), title) in enumerate(chosen):
        x0 = col * (tile + 4)
        colour = (0, 0, 200) if title != "good" else (0, 120, 0)
        cv2.putText(sheet, title, (x0 + 3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
        for k, region in enumerate(REGIONS):
            r = vials[(product_id, run_id, vial)][region]
            img = cv2.imread(r.path, cv2.IMREAD_GRAYSCALE)
            img = cv2.resize(img, (tile, tile), interpolation=cv2.INTER_AREA)
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
            if r.mask_path:
                m = cv2.resize(cv2.imread(r.mask_path, cv2.IMREAD_GRAYSCALE), (tile, tile))
                m = cv2.dilate((m > 0).astype(np.uint8), np.ones((5, 5), np.uint8))
                contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
                cv2.drawContours(img, contours, -1, (0, 0, 255), 1)
            y0 = header + k * tile
            sheet[y0 : y0 + tile, x0 : x0 + tile] = img
    os.makedirs(os.path.dirname(os.path.abspath(out_png)), exist_ok=True)
    _write_palette_png(out_png, sheet)
    return out_png


def _write_palette_png(path: str, bgr: np.ndarray) -> None:
    """Grey + a few pure colours as an 8-bit palette PNG (several times smaller than RGB)."""
    try:
        from PIL import Image  # Pillow comes with matplotlib
    except ImportError:
        cv2.imwrite(path, bgr, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        return
    colours = {(0, 0, 255): 250, (0, 0, 200): 251, (0, 120, 0): 252}  # BGR -> palette index
    index = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 249 // 255
    for bgr_colour, i in colours.items():
        index[np.all(bgr == bgr_colour, axis=-1)] = i
    palette = [round(v * 255 / 249) for v in range(250) for _ in range(3)]
    for bgr_colour in colours:
        palette += list(bgr_colour[::-1])
    image = Image.fromarray(index.astype(np.uint8), mode="P")
    image.putpalette(palette)
    image.save(path, optimize=True)
