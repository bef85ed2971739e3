"""Synthetic blow-fill-seal vial line: the embedded demo data set, written in the line layout.

A product is a strip of ``vials`` plastic vials seen against a backlight. Each vial is rendered as one
tall ``4*S x S`` camera image (S = ``image_size``) and cut into four S x S region patches: R0 flag/top,
R1 shoulder, R2 liquid, R3 bottom. Everything is procedural numpy/OpenCV (no data files).

Nuisance variation, none of it a defect: per product the mould geometry, fill level, flag embossing and
plastic mottle; per run (the same product acquired again) a shift of a few pixels, lighting gain and
gradient, and droplets on the wall; per frame the meniscus sloshes, bubbles move, the light flickers and
the sensor adds noise. Defects (``black_spot`` in the plastic, ``particle`` floating/sinking in the
liquid, ``scratch`` on the wall) belong to the product and are seen in every run (moved with the vial
and, for particles, elsewhere in the liquid), with exact pixel masks.

All randomness derives from ``(seed, product, run, frame, vial)`` seed sequences, so the output depends
only on the arguments (not on generation order). A contact sheet of a generated split:
:mod:`tfad.data.contact_sheet`.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import yaml

from tfad.data.errors import DataError

REGIONS = ("R0", "R1", "R2", "R3")
REGION_NAMES = {"R0": "flag/top", "R1": "shoulder", "R2": "liquid", "R3": "bottom"}
DEFECT_TYPES = ("black_spot", "particle", "scratch")
_BASE = 256.0  # geometry constants below are in pixels of a 256-pixel patch, scaled by S/256
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]  # fast, small


@dataclass(frozen=True)
class VialGeometry:
    """Mould and fill of one vial (canvas pixels at S=256)."""

    flag_half_width: float
    neck_half_width: float
    head_half_width: float
    body_half_width: float
    liquid_level: float  # y of the meniscus centre
    meniscus_rise: float  # how far the liquid climbs the wall


@dataclass(frozen=True)
class Defect:
    """A defect fixed to the product. Positions in vial coordinates at S=256 (x relative to the axis)."""

    kind: str
    vial: int
    region: str
    points: tuple[tuple[float, float], ...]  # polygon (spot/particle) or polyline (scratch)
    strength: float  # fraction of light removed
    width: float = 1.0  # scratch line width
    drift: tuple[float, float] = (0.0, 0.0)  # particle motion per frame (x, y)
    run_offset_y: tuple[float, float] = (0.0, 0.0)  # particle: range of its start offset from run to run


@dataclass
class SynthSummary:
    """What :func:`generate_synth_vials` wrote."""

    out_dir: str
    patches: dict[str, int]
    defective_patches: dict[str, int]
    products: dict[str, int]
    defective_products: dict[str, int]
    seconds: float


# ------------------------------------------------------------------------------------------ geometry
def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# Vertical landmarks (S=256 units): flag plate, twist neck, head, shoulder, body, rounded bottom, seal stub.
_FLAG_TOP, _FLAG_BOTTOM, _NECK_TOP, _NECK_BOTTOM = 18.0, 168.0, 190.0, 232.0
_HEAD_PEAK, _COLLAR, _BODY_TOP, _BODY_BOTTOM = 290.0, 320.0, 470.0, 935.0
_BOTTOM_END, _STUB_END = 985.0, 1008.0
_REGION_ROWS = {name: (i * _BASE, (i + 1) * _BASE) for i, name in enumerate(REGIONS)}


def _half_width(y: np.ndarray, g: VialGeometry) -> np.ndarray:
    """Half-width of the plastic silhouette at rows ``y`` (0 outside the vial)."""
    r = 22.0
    flag = g.flag_half_width - r + np.sqrt(np.clip(r * r - np.clip(_FLAG_TOP + r - y, 0, None) ** 2, 0, None))
    taper = g.flag_half_width + (g.neck_half_width - g.flag_half_width) * _smoothstep(
        (y - _FLAG_BOTTOM) / (_NECK_TOP - _FLAG_BOTTOM)
    )
    head = g.neck_half_width + (g.head_half_width - g.neck_half_width) * _smoothstep(
        (y - _NECK_BOTTOM) / (_HEAD_PEAK - _NECK_BOTTOM)
    )
    collar = g.head_half_width + (0.8 * g.head_half_width - g.head_half_width) * _smoothstep(
        (y - _HEAD_PEAK) / (_COLLAR - _HEAD_PEAK)
    )
    shoulder = 0.8 * g.head_half_width + (g.body_half_width - 0.8 * g.head_half_width) * _smoothstep(
        (y - _COLLAR) / (_BODY_TOP - _COLLAR)
    )
    t_bottom = (y - _BODY_BOTTOM) / (_BOTTOM_END - _BODY_BOTTOM)
    bottom = g.body_half_width * np.sqrt(np.clip(1.0 - t_bottom**2, 0, 1))
    return np.select(
        [
            y < _FLAG_TOP,
            y < _FLAG_BOTTOM,
            y < _NECK_TOP,
            y < _NECK_BOTTOM,
            y < _HEAD_PEAK,
            y < _COLLAR,
            y < _BODY_TOP,
            y < _BODY_BOTTOM,
            y < _BOTTOM_END,
            y < _STUB_END,
        ],
        [
            0.0,
            flag,
            taper,
            np.full_like(y, g.neck_half_width),
            head,
            collar,
            shoulder,
            np.full_like(y, g.body_half_width),
            bottom,
            np.full_like(y, 0.3 * g.body_half_width),
        ],
        0.0,
    )


def _product_geometry(rng: np.random.Generator, vials: int) -> list[VialGeometry]:
    flag = rng.uniform(76, 88)
    neck = rng.uniform(11, 14)
    head = rng.uniform(24, 29)
    body = rng.uniform(82, 90)
    fill = rng.uniform(540, 600)
    return [
        VialGeometry(
            flag_half_width=flag + rng.normal(0, 0.6),
            neck_half_width=neck + rng.normal(0, 0.3),
            head_half_width=head + rng.normal(0, 0.4),
            body_half_width=body + rng.normal(0, 0.5),
            liquid_level=fill + rng.normal(0, 7),  # filling varies vial to vial
            meniscus_rise=rng.uniform(6, 12),
        )
        for _ in range(vials)
    ]


def _mottle(rng: np.random.Generator, height: int, width: int, amplitude: float) -> np.ndarray:
    """Low-frequency multiplicative texture (1 +/- amplitude) of the moulded plastic."""
    coarse = rng.normal(0, 1, (max(2, height // 24), max(2, width // 24))).astype(np.float32)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return 1.0 + amplitude * smooth / (np.abs(smooth).max() + 1e-6)


# ------------------------------------------------------------------------------------------- defects
def _irregular_polygon(rng: np.random.Generator, cx: float, cy: float, radius: float, n: int) -> list:
    angles = np.sort(rng.uniform(0, 2 * math.pi, n))
    radii = radius * rng.uniform(0.6, 1.0, n)
    aspect = rng.uniform(0.6, 1.0)
    return [(cx + r * math.cos(a), cy + aspect * r * math.sin(a)) for a, r in zip(angles, radii, strict=True)]


def _sample_defect(rng: np.random.Generator, kind: str, vial: int, g: VialGeometry, frames: int) -> Defect:
    """A defect placed fully inside one region (20 px margin: run shifts never push it across)."""
    margin = 20.0
    for _ in range(200):
        if kind == "black_spot":
            region = REGIONS[rng.integers(0, 4)]
        elif kind == "particle":
            region = REGIONS[rng.integers(2, 4)]
        else:
            region = REGIONS[rng.integers(1, 4)]
        top, bottom = _REGION_ROWS[region]
        lo, hi = top + margin, bottom - margin
        if kind == "particle":
            lo = max(lo, g.liquid_level + 25.0)  # in the liquid, below any slosh
            hi = min(hi, _BODY_BOTTOM - 15.0)
        if hi - lo < 20:
            continue
        y = rng.uniform(lo, hi)
        hw = float(_half_width(np.array([y]), g)[0])
        if hw < 18:
            continue
        x = rng.uniform(-0.6, 0.6) * hw
        if kind == "black_spot":
            radius = rng.uniform(3.0, 6.5)
            poly = _irregular_polygon(rng, x, y, radius, 9)
            return Defect(kind, vial, region, tuple(poly), rng.uniform(0.6, 0.8))
        if kind == "particle":
            # Sinks 12-30 px over the acquisition; starts elsewhere in each run, always inside the region.
            travel = rng.uniform(12.0, 30.0)
            steps = max(1, frames - 1)
            drift = (rng.uniform(-8.0, 8.0) / steps, travel / steps)
            radius = rng.uniform(3.5, 7.0)
            poly = _irregular_polygon(rng, x, y, radius, 6)
            poly_top, poly_bottom = min(p[1] for p in poly), max(p[1] for p in poly)
            offset_range = (lo - poly_top, hi - poly_bottom - travel)
            if offset_range[0] > offset_range[1]:
                continue
            return Defect(
                kind, vial, region, tuple(poly), rng.uniform(0.6, 0.8), drift=drift, run_offset_y=offset_range
            )
        length = rng.uniform(25, 60)
        angle = rng.uniform(0, math.pi)
        bend = rng.uniform(-0.4, 0.4)
        pts = []
        for t in np.linspace(-0.5, 0.5, 8):
            a = angle + bend * t
            pts.append((x + t * length * math.cos(a), y + t * length * math.sin(a)))
        ys = [p[1] for p in pts]
        if min(ys) < lo or max(ys) > hi:
            continue
        inside = all(abs(px) < 0.75 * float(_half_width(np.array([py]), g)[0]) for px, py in pts)
        if inside:
            return Defect(kind, vial, region, tuple(pts), rng.uniform(0.45, 0.6), width=rng.uniform(1.5, 2.5))
    raise RuntimeError(f"could not place a {kind} defect")  # geometry bug: never expected


# --------------------------------------------------------------------------------------------- render
@dataclass(frozen=True)
class _RunState:
    shift: tuple[float, float]  # vial displacement in this run (S=256 units)
    gain: float
    gradient: tuple[float, float]
    droplets: tuple[tuple[float, float, float], ...]  # x, y, radius on the wall
    particle_start: float  # 0..1: where in its allowed range a particle starts in this run


def _plastic_light(
    rows: np.ndarray, g: VialGeometry, run: _RunState, mottle: np.ndarray, size: int, meniscus_offset: float
) -> np.ndarray:
    """Fraction of the backlight reaching pixel ``rows`` (float32 [len(rows), S]) for an empty scene."""
    s = size / _BASE
    width = size
    dx, dy = run.shift
    # Vial coordinates (S=256 units) of the pixel centres; the vial moves by the run's shift.
    yy = ((rows.astype(np.float32) + 0.5) / s - dy)[:, None]
    xs = (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / s - dx
    hw = _half_width(yy, g).astype(np.float32)
    dist = (hw - np.abs(xs)[None, :]) * s  # pixels to the silhouette edge (positive inside)
    dist = np.where(yy < _FLAG_BOTTOM, np.minimum(dist, (yy - _FLAG_TOP) * s), dist)
    dist = np.where(yy > _BOTTOM_END, np.minimum(dist, (_STUB_END - yy) * s), dist)
    inside = np.clip(dist + 0.5, 0.0, 1.0)
    u = np.clip(xs[None, :] / np.maximum(hw, 1e-3), -1.0, 1.0)
    u2 = u * u
    # Body: empty (air) above the meniscus, a liquid lens (bright axis, dark sides) below it.
    air = 0.70 - 0.16 * u2 * u2 + 0.06 * np.exp(-(((u + 0.45) / 0.08) ** 2))
    meniscus_y = g.liquid_level + meniscus_offset - g.meniscus_rise * u2 * u2  # the liquid climbs the wall
    below = np.clip((yy - meniscus_y) * s + 0.5, 0.0, 1.0)
    liquid = 0.60 * (1.0 + 0.38 * np.exp(-u2 / 0.08)) * (1.0 - 0.32 * u2)
    body = (air * (1.0 - below) + liquid * below) * (1.0 - 0.55 * np.exp(-(((yy - meniscus_y) / 2.0) ** 2)))
    in_body = (yy >= _COLLAR) & (yy < _BOTTOM_END)
    flat = np.where(yy < _NECK_TOP, 0.80, np.where(yy < _COLLAR, 0.55, 0.50))  # flag plate, neck, seal stub
    transmission = np.where(in_body, body, flat)
    edge = 1.0 - 0.72 * np.exp(-np.maximum(dist, 0.0) / (2.5 * s))  # refraction darkens the contour
    wall = 1.0 - 0.22 * np.exp(-(((dist - 7.0 * s) / (1.5 * s)) ** 2)) * in_body  # inner wall line
    plastic = transmission * edge * wall * mottle
    # Web joining the vials of the strip: thin flat bands out to the patch edges.
    band = ((yy > 180) & (yy < 224)) | ((yy > 950) & (yy < 990))
    band_edge = np.min(np.abs(yy[..., None] - np.array([180.0, 224.0, 950.0, 990.0])), axis=-1) * s
    web = np.where(band, 0.86, 1.0) * (1.0 - 0.35 * np.exp(-band_edge / 1.5))
    return (inside * plastic + (1.0 - inside) * web).astype(np.float32)


def _draw_alpha(shape: tuple[int, int], polys: list[np.ndarray], closed: bool, thickness: int) -> np.ndarray:
    """Anti-aliased coverage (float32 0..1) of polygons (points x16, 4 fractional bits)."""
    canvas = np.zeros(shape, np.uint8)
    if closed:
        cv2.fillPoly(canvas, polys, 255, cv2.LINE_AA, 4)
    else:
        cv2.polylines(canvas, polys, False, 255, thickness, cv2.LINE_AA, 4)
    return canvas.astype(np.float32) / 255.0


def _to_canvas(points, size: int, shift: tuple[float, float]) -> np.ndarray:
    s = size / _BASE
    xy = [[(size / 2 + (x + shift[0]) * s) * 16, (y + shift[1]) * s * 16] for x, y in points]
    return np.array(xy, np.int32)


def _run_canvas(
    g: VialGeometry, run: _RunState, mottle: np.ndarray, emboss: list, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per run and vial: (lit scene without moving things, illumination, mottle moved with the vial)."""
    s = size / _BASE
    height = 4 * size
    mottle = np.roll(mottle, (round(run.shift[1] * s), round(run.shift[0] * s)), axis=(0, 1))
    light = _plastic_light(np.arange(height), g, run, mottle, size, 0.0)
    # Embossed lot code on the flag: fixed per product, moves with the vial.
    polys = [_to_canvas(rect, size, run.shift) for rect in emboss]
    light *= 1.0 - 0.12 * _draw_alpha((height, size), polys, True, 1)
    ramp_y = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    ramp_x = np.linspace(-1, 1, size, dtype=np.float32)[None, :]
    illumination = 212.0 * run.gain * (1.0 + run.gradient[0] * ramp_x + run.gradient[1] * ramp_y)
    return light * illumination, illumination.astype(np.float32), mottle


def _render_frame(
    g: VialGeometry,
    run: _RunState,
    canvas: tuple[np.ndarray, np.ndarray, np.ndarray],
    defects: list[Defect],
    frame: int,
    size: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One camera image of one vial: (uint8 [4S, S], uint8 mask [4S, S] of defect numbers, their kinds)."""
    static, illumination, mottle = canvas
    s = size / _BASE
    height, width = 4 * size, size
    dx, dy = run.shift
    image = static.copy()
    # The meniscus sloshes from frame to frame: re-render only the rows it can touch.
    offset = float(np.clip(rng.normal(0, 2.0), -5, 5))
    top = int(max(0, (g.liquid_level - g.meniscus_rise - 16 + dy) * s))
    bottom = int(min(height, (g.liquid_level + 16 + dy) * s + 1))
    rows = np.arange(top, bottom)
    band_light = _plastic_light(rows, g, run, mottle[top:bottom], size, offset)
    image[top:bottom] = band_light * illumination[top:bottom]

    # Droplets on the wall (this run) and bubbles in the liquid (this frame): dark rims, bright centres.
    spots = [(x, y, r, 0.35) for x, y, r in run.droplets]
    for _ in range(rng.poisson(2.5)):
        by = g.liquid_level + rng.uniform(6, 160) if rng.random() < 0.8 else rng.uniform(g.liquid_level, 920)
        bhw = float(_half_width(np.array([by]), g)[0])
        spots.append((rng.uniform(-0.8, 0.8) * bhw, by, rng.uniform(2.0, 7.0), 0.5))
    for bx, by, br, contrast in spots:
        cy, cx = (by + dy) * s, width / 2 + (bx + dx) * s
        r = br * s
        y0, y1 = max(0, int(cy - r - 4)), min(height, int(cy + r + 5))
        x0, x1 = max(0, int(cx - r - 4)), min(width, int(cx + r + 5))
        if y0 >= y1 or x0 >= x1:
            continue
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        rr = np.sqrt((gy + 0.5 - cy) ** 2 + (gx + 0.5 - cx) ** 2)
        ring = 1.0 - contrast * np.exp(-(((rr - r) / max(0.8, 0.25 * r)) ** 2))
        core = 1.0 + 0.25 * contrast * np.exp(-((rr / max(0.6, 0.35 * r)) ** 2))
        image[y0:y1, x0:x1] *= ring * core

    mask = np.zeros((height, width), np.uint8)
    kinds: list[str] = []
    for defect in defects:
        shift = run.shift
        if defect.kind == "particle":  # moves with the liquid: sinks and tumbles from frame to frame
            jitter = rng.normal(0, 0.7, 2)
            lo, hi = defect.run_offset_y
            start_y = lo + run.particle_start * (hi - lo)
            shift = (
                dx + defect.drift[0] * frame + jitter[0],
                dy + start_y + defect.drift[1] * frame + jitter[1],
            )
        polys = [_to_canvas(defect.points, size, shift)]
        if defect.kind == "scratch":
            alpha = _draw_alpha((height, width), polys, False, max(1, round(defect.width * s)))
        else:
            alpha = _draw_alpha((height, width), polys, True, 1)
        image *= 1.0 - defect.strength * alpha
        kinds.append(defect.kind)
        mask[alpha > 0.15] = len(kinds)

    image *= rng.uniform(0.98, 1.02)  # flicker
    image += 2.5 * rng.standard_normal((height, width), dtype=np.float32)  # sensor noise
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), mask, kinds


# ------------------------------------------------------------------------------------------ generator
def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(list(keys)))


@dataclass(frozen=True)
class _Product:
    index: int
    product_id: str
    split: str
    geometry: list[VialGeometry]
    defects: list[Defect]
    emboss: list  # rectangles (4 corner points each) of the lot code embossed on every flag


def _make_product(seed: int, index: int, split: str, vials: int, frames: int, defect_rate: float) -> _Product:
    rng = _rng(seed, index)
    geometry = _product_geometry(rng, vials)
    defects: list[Defect] = []
    if split != "train" and rng.random() < defect_rate:
        n = 2 if rng.random() < 0.2 and vials > 1 else 1
        for vial in rng.choice(vials, size=n, replace=False):
            kind = DEFECT_TYPES[rng.integers(0, len(DEFECT_TYPES))]
            defects.append(_sample_defect(rng, kind, int(vial), geometry[int(vial)], frames))
    emboss = []
    for line_y, n_chars in ((62.0, int(rng.integers(4, 8))), (100.0, int(rng.integers(3, 7)))):
        x = -0.5 * n_chars * 16.0
        for _ in range(n_chars):
            w, h = rng.uniform(8, 12), rng.uniform(18, 24)
            emboss.append(((x, line_y), (x + w, line_y), (x + w, line_y + h), (x, line_y + h)))
            x += 16.0
    return _Product(index, f"P{index:04d}", split, geometry, defects, emboss)


def _run_state(seed: int, product: int, run: int, geometry: VialGeometry) -> _RunState:
    rng = _rng(seed, product, run, 1_000_003)
    droplets = []
    for _ in range(rng.poisson(3.0)):
        y = rng.uniform(_COLLAR + 10, geometry.liquid_level - 12)
        hw = float(_half_width(np.array([y]), geometry)[0])
        droplets.append((rng.uniform(-0.75, 0.75) * hw, y, rng.uniform(1.5, 4.5)))
    return _RunState(
        shift=(rng.uniform(-5, 5), rng.uniform(-5, 5)),
        gain=rng.uniform(0.86, 1.12),
        gradient=(rng.uniform(-0.08, 0.08), rng.uniform(-0.06, 0.06)),
        droplets=tuple(droplets),
        particle_start=float(rng.random()),
    )


def generate_synth_vials(
    out_dir: str,
    n_products: int = 60,
    n_runs: int = 1,
    frames: int = 3,
    defect_rate: float = 0.3,
    seed: int = 0,
    image_size: int = 256,
    n_eval_products: int | None = None,
    vials: int = 5,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> SynthSummary:
    """Write a synthetic vial-line data set in the line layout under ``out_dir``.

    Splits: ``train`` (``n_products`` good products), ``calib`` and ``test`` (``n_eval_products`` each,
    default ``max(4, n_products // 3)``, a fraction ``defect_rate`` of them defective); every product is
    acquired in ``n_runs`` runs of ``frames`` frames x ``vials`` vials x 4 regions patches
    (``image_size`` square, grayscale PNG). Also writes ``masks/`` for defective patches, ``labels.csv``
    listing every defective patch, ``roi/<region>.png`` and ``layout.yaml``. Product ids are unique over
    all splits (``P0000`` ...), run ids are ``r00`` ...

    Args:
        progress: called as ``progress(done, total)`` after each acquisition (product x run).
        overwrite: allow writing into a non-empty ``out_dir``; what an earlier generation wrote there
            (the split folders, ``masks/``, ``roi/``, ``labels.csv``, ``layout.yaml``) is removed first so
            that no stale patch mixes into the new set.

    Returns:
        A :class:`SynthSummary` with counts and the time taken.
    """
    if n_products < 1 or n_runs < 1 or frames < 1 or vials < 1:
        raise ValueError("n_products, n_runs, frames and vials must be >= 1")
    if not 0.0 <= defect_rate <= 1.0:
        raise ValueError(f"defect_rate must be in [0, 1], got {defect_rate}")
    if image_size < 64:
        raise ValueError(f"image_size must be >= 64, got {image_size}")
    if os.path.isdir(out_dir) and os.listdir(out_dir) and not overwrite:
        raise DataError(f"output folder {out_dir!r} is not empty (pass overwrite=True / --overwrite)")
    if overwrite and os.path.isdir(out_dir):
        import shutil

        for name in ("train", "calib", "test", "masks", "roi", "labels.csv", "layout.yaml"):
            path = os.path.join(out_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    started = time.perf_counter()
    n_eval = n_eval_products if n_eval_products is not None else max(4, n_products // 3)
    split_sizes = {"train": n_products, "calib": n_eval, "test": n_eval}
    products: list[_Product] = []
    for split, count in split_sizes.items():
        first = len(products)
        products += [_make_product(seed, first + i, split, vials, frames, defect_rate) for i in range(count)]

    os.makedirs(out_dir, exist_ok=True)
    total = len(products) * n_runs
    done = 0
    patches = dict.fromkeys(split_sizes, 0)
    defective_patches = dict.fromkeys(split_sizes, 0)
    label_rows: list[list] = []
    for product in products:
        mottles = [
            _mottle(_rng(seed, product.index, 2_000_003, v), 4 * image_size, image_size, 0.035)
            for v in range(vials)
        ]
        for run in range(n_runs):
            run_id = f"r{run:02d}"
            product_dir = os.path.join(out_dir, product.split, run_id, product.product_id)
            os.makedirs(product_dir, exist_ok=True)
            states = [_run_state(seed, product.index, run, product.geometry[v]) for v in range(vials)]
            canvases = [
                _run_canvas(product.geometry[v], states[v], mottles[v], product.emboss, image_size)
                for v in range(vials)
            ]
            for frame in range(frames):
                for vial in range(vials):
                    rng = _rng(seed, product.index, run, frame, vial)
                    vial_defects = [d for d in product.defects if d.vial == vial]
                    image, mask, kinds = _render_frame(
                        product.geometry[vial],
                        states[vial],
                        canvases[vial],
                        vial_defects,
                        frame,
                        image_size,
                        rng,
                    )
                    for k, region in enumerate(REGIONS):
                        rows = slice(k * image_size, (k + 1) * image_size)
                        name = f"f{frame}_v{vial}_{region}.png"
                        cv2.imwrite(os.path.join(product_dir, name), image[rows], _PNG)
                        patches[product.split] += 1
                        region_mask = mask[rows]
                        present = np.unique(region_mask[region_mask > 0])
                        if present.size:
                            mask_dir = os.path.join(
                                out_dir, "masks", product.split, run_id, product.product_id
                            )
                            os.makedirs(mask_dir, exist_ok=True)
                            binary = (region_mask > 0).astype(np.uint8) * 255
                            cv2.imwrite(os.path.join(mask_dir, name), binary, _PNG)
                            kind = kinds[int(present[0]) - 1]
                            label_rows.append([run_id, product.product_id, frame, vial, region, 1, kind])
                            defective_patches[product.split] += 1
            done += 1
            if progress:
                progress(done, total)

    with open(os.path.join(out_dir, "labels.csv"), "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["run_id", "product_id", "frame", "vial", "region", "label", "defect_type"])
        writer.writerows(label_rows)
    _write_roi(out_dir, image_size)
    summary = SynthSummary(
        out_dir=out_dir,
        patches=patches,
        defective_patches=defective_patches,
        products=split_sizes,
        defective_products={s: sum(1 for p in products if p.split == s and p.defects) for s in split_sizes},
        seconds=round(time.perf_counter() - started, 2),
    )
    layout = {
        "regions": list(REGIONS),
        "region_names": REGION_NAMES,
        "frames": frames,
        "vials": vials,
        "image_size": [image_size, image_size],
        "channels": 1,
        "generator": {
            "name": "tfad synth-vials",
            "seed": seed,
            "n_products": n_products,
            "n_eval_products": n_eval,
            "n_runs": n_runs,
            "defect_rate": defect_rate,
            "defect_types": list(DEFECT_TYPES),
        },
        "summary": {k: v for k, v in asdict(summary).items() if k not in ("out_dir", "seconds")},
    }
    with open(os.path.join(out_dir, "layout.yaml"), "w", encoding="utf-8") as fh:
        yaml.safe_dump(layout, fh, sort_keys=False)
    return summary


def _write_roi(out_dir: str, size: int) -> None:
    """roi/<region>.png: the nominal vial silhouette dilated by 8 px (covers run shifts)."""
    g = VialGeometry(82.0, 12.5, 26.5, 86.0, 570.0, 9.0)
    s = size / _BASE
    ys = (np.arange(4 * size, dtype=np.float32) + 0.5) / s
    xs = np.abs((np.arange(size, dtype=np.float32) + 0.5 - size / 2) / s)
    inside = ((_half_width(ys, g)[:, None] - xs[None, :]) > 0) & (ys[:, None] > _FLAG_TOP)
    roi = cv2.dilate(inside.astype(np.uint8) * 255, np.ones((2 * round(8 * s) + 1,) * 2, np.uint8))
    os.makedirs(os.path.join(out_dir, "roi"), exist_ok=True)
    for k, region in enumerate(REGIONS):
        cv2.imwrite(os.path.join(out_dir, "roi", f"{region}.png"), roi[k * size : (k + 1) * size], _PNG)
