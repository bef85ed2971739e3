"""Report plots (PNG), written with matplotlib's object API (no pyplot, no global backend change).

* ``roc.png`` - image-level ROC, overall and per region, AUROC in the legend, calibrated operating points;
* ``score_histograms.png`` - score distribution per class and per region with the threshold line;
* ``region_thresholds.png`` - every score per region (good / defective) with the region thresholds;
* ``pixel_curves.png`` - pixel ROC and the PRO curve up to the AUPRO FPR limit;
* ``heatmap_examples.png`` - input + ground-truth contour, heatmap, overlay for the hardest defects,
  the goods closest to a false reject and the clearest defects.

Axes are labelled in line terms (good rejected, defective rejected) so an operator or auditor can read
them without knowing the positive-class convention.
"""

from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from tfad.scoring.metrics import UndefinedMetricError, auroc, roc_curve
from tfad.scoring.table import ScoreTable
from tfad.scoring.thresholds import ThresholdTable

__all__ = [
    "plot_heatmap_examples",
    "plot_pixel_curves",
    "plot_region_thresholds",
    "plot_roc",
    "plot_score_histograms",
    "write_plots",
]

GOOD_COLOR = "tab:blue"
DEFECT_COLOR = "tab:red"
THRESHOLD_COLOR = "black"
MAX_POINTS_PER_REGION = 4000  # strip plot: more points than this are subsampled (deterministically)
DPI = 110


def _save(fig: Figure, path: str) -> str:
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return path


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(n, max_cols)
    return int(np.ceil(n / cols)), cols


def plot_roc(table: ScoreTable, path: str, thresholds: ThresholdTable | None = None) -> str | None:
    """Image-level ROC curves; returns the path, or None when no curve is defined (one class only)."""
    regions = sorted(set(table.regions.tolist()))
    fig = Figure(figsize=(6.4, 5.6))
    ax = fig.add_subplot()
    drawn = 0
    groups = [("all images", np.ones(len(table), dtype=bool))]
    if len(regions) > 1:
        groups += [(f"region {r}", table.regions == r) for r in regions]
    colors = ["black"] + [f"C{i % 10}" for i in range(len(regions))]
    for (name, sel), color in zip(groups, colors, strict=False):
        labels, scores = table.labels[sel], table.scores[sel]
        try:
            fpr, tpr, _ = roc_curve(labels, scores)
            value = auroc(labels, scores)
        except UndefinedMetricError:
            continue
        width = 2.2 if name == "all images" else 1.3
        ax.plot(fpr, tpr, color=color, lw=width, drawstyle="default", label=f"{name}: AUROC {value:.4f}")
        drawn += 1
        if thresholds is not None and name.startswith("region "):
            region = name[len("region ") :]
            thr = thresholds.threshold_for(region)
            rej = scores > thr
            frr = rej[labels == 0].mean()
            trr = rej[labels == 1].mean()
            ax.plot([frr], [trr], marker="o", color=color, ms=7, mec="black")
    if thresholds is not None and len(regions) == 1:
        thr = thresholds.threshold_for(regions[0])
        rej = table.scores > thr
        if (table.labels == 0).any() and (table.labels == 1).any():
            ax.plot(
                [rej[table.labels == 0].mean()],
                [rej[table.labels == 1].mean()],
                marker="o",
                ls="",
                color="black",
                ms=7,
                label=f"calibrated threshold {thr:.4g}",
            )
    if drawn == 0:
        return None
    ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="chance")
    if thresholds is not None and len(regions) > 1:
        ax.plot([], [], marker="o", ls="", color="grey", mec="black", label="calibrated threshold (dot)")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false-reject rate  (good rejected / good)")
    ax.set_ylabel("true-reject rate  (defective rejected / defective)")
    ax.set_title("Image-level ROC (defective = positive class)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_score_histograms(table: ScoreTable, thresholds: ThresholdTable, path: str) -> str:
    """One panel per region: score histograms of good and defective samples, threshold as a line."""
    regions = sorted(set(table.regions.tolist()))
    rows, cols = _grid(len(regions))
    fig = Figure(figsize=(5.2 * cols, 3.8 * rows))
    for i, region in enumerate(regions):
        ax = fig.add_subplot(rows, cols, i + 1)
        sel = table.regions == region
        scores, labels = table.scores[sel], table.labels[sel]
        thr = thresholds.threshold_for(region)
        low, high = min(scores.min(), thr), max(scores.max(), thr)
        pad = 0.02 * (high - low) if high > low else 0.5 * max(abs(high), 1e-6)
        bins = np.linspace(low - pad, high + pad, 50)
        for label, color, name in ((0, GOOD_COLOR, "good"), (1, DEFECT_COLOR, "defective")):
            values = scores[labels == label]
            if values.size:
                ax.hist(values, bins=bins, color=color, alpha=0.55, label=f"{name} (n={values.size})")
        ax.axvline(thr, color=THRESHOLD_COLOR, ls="--", lw=1.5, label=f"threshold {thr:.4g}")
        false_rej = int(((scores > thr) & (labels == 0)).sum())
        false_acc = int(((scores <= thr) & (labels == 1)).sum())
        ax.set_title(
            f"region {region}: {false_rej} good rejected, {false_acc} defective accepted", fontsize=9
        )
        ax.set_yscale("log")
        ax.set_xlabel("anomaly score (reject when > threshold)")
        ax.set_ylabel("count (log)")
        ax.legend(fontsize=7)
    fig.suptitle(f"Score distributions per region (policy: {thresholds.policy})")
    fig.tight_layout()
    return _save(fig, path)


def plot_region_thresholds(table: ScoreTable, thresholds: ThresholdTable, path: str) -> str:
    """Strip plot: every score per region (jittered), region thresholds as horizontal bars."""
    regions = sorted(set(table.regions.tolist()))
    fig = Figure(figsize=(max(5.0, 1.6 * len(regions) + 2.5), 4.8))
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)  # fixed jitter: identical plots for identical data
    subsampled = False
    for x, region in enumerate(regions):
        sel = np.flatnonzero(table.regions == region)
        for label, color, marker, offset in ((0, GOOD_COLOR, "o", -0.17), (1, DEFECT_COLOR, "x", 0.17)):
            idx = sel[table.labels[sel] == label]
            if idx.size > MAX_POINTS_PER_REGION:
                idx = np.sort(rng.choice(idx, MAX_POINTS_PER_REGION, replace=False))
                subsampled = True
            jitter = rng.uniform(-0.12, 0.12, idx.size)
            ax.scatter(
                x + offset + jitter,
                table.scores[idx],
                s=9,
                color=color,
                marker=marker,
                alpha=0.6,
                linewidths=1,
            )
        thr = thresholds.threshold_for(region)
        ax.hlines(thr, x - 0.42, x + 0.42, color=THRESHOLD_COLOR, lw=2)
        ax.annotate(
            f"{thr:.4g}", (x + 0.42, thr), xytext=(3, 0), textcoords="offset points", va="center", fontsize=8
        )
    ax.scatter([], [], color=GOOD_COLOR, marker="o", label="good")
    ax.scatter([], [], color=DEFECT_COLOR, marker="x", label="defective")
    ax.plot([], [], color=THRESHOLD_COLOR, lw=2, label="threshold (reject above)")
    ax.set_xticks(range(len(regions)), regions)
    ax.set_xlim(-0.6, len(regions) - 0.2)
    ax.set_xlabel("region")
    ax.set_ylabel("anomaly score")
    title = f"Per-region thresholds (policy: {thresholds.policy})"
    if subsampled:
        title += f"\n(at most {MAX_POINTS_PER_REGION} points per class and region shown)"
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return _save(fig, path)


def _load_image(path: str, shape: tuple[int, int]) -> np.ndarray | None:
    """The input image as float in [0, 1] resized to ``shape`` (gray [H, W] or RGB [H, W, 3])."""
    if not path or not os.path.exists(path):
        return None
    from skimage.io import imread
    from skimage.transform import resize

    try:
        img = imread(path)
    except (OSError, ValueError):
        return None
    img = img.astype(np.float64)
    img = img / 255.0 if img.max() > 1.0 else img
    if img.ndim == 3:
        img = img[..., 0] if img.shape[-1] == 1 else img[..., :3]
    if img.shape[:2] != tuple(shape):
        img = resize(img, shape, order=1, anti_aliasing=True)
    return np.clip(img, 0.0, 1.0)


def _pick(order: np.ndarray, table: ScoreTable, count: int, exclude: set[int]) -> list[int]:
    """First ``count`` indices of ``order`` not in ``exclude``, at most one per physical product (the same
    product seen in several runs would otherwise fill a group)."""
    picked: list[int] = []
    seen: set[str] = set()
    for i in order.tolist():
        product = str(table.product_ids[i])
        if i in exclude or (product and product in seen):
            continue
        picked.append(int(i))
        seen.add(product)
        if len(picked) == count:
            break
    return picked


def _example_groups(table: ScoreTable, margins: np.ndarray, per_group: int) -> list[tuple[str, list[int]]]:
    defect = np.flatnonzero(table.labels == 1)
    good = np.flatnonzero(table.labels == 0)
    hardest = _pick(defect[np.argsort(margins[defect], kind="stable")], table, per_group, set())
    risky_good = _pick(good[np.argsort(-margins[good], kind="stable")], table, per_group, set())
    clear = _pick(defect[np.argsort(-margins[defect], kind="stable")], table, per_group, set(hardest))
    return [
        ("defective, lowest score vs threshold\n(hardest to catch)", hardest),
        ("good, highest score vs threshold\n(closest to a false reject)", risky_good),
        ("defective, highest score vs threshold\n(clearly detected)", clear),
    ]


def plot_heatmap_examples(
    table: ScoreTable, thresholds: ThresholdTable, path: str, per_group: int = 3
) -> str | None:
    """Examples in three groups side by side (hardest defects, riskiest goods, clearest defects); per
    example the input with the ground-truth contour and the heatmap overlay. None without heatmaps."""
    if not table.has_heatmaps or len(table) == 0:
        return None
    margins = table.scores - thresholds.thresholds_for(table.regions)
    groups = [
        (name, [i for i in idx if table.heatmap(i) is not None])
        for name, idx in _example_groups(table, margins, per_group)
    ]
    groups = [(name, idx) for name, idx in groups if idx]
    if not groups:
        return None
    maps = {i: table.heatmap(i) for _, idx in groups for i in idx}
    vmin = min(float(m.min()) for m in maps.values())
    vmax = max(float(m.max()) for m in maps.values())
    vmax = vmax if vmax > vmin else vmin + 1.0
    n_rows = max(len(idx) for _, idx in groups)
    fig = Figure(figsize=(4.6 * len(groups) + 1.0, 2.7 * n_rows + 0.8), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(1, len(groups), wspace=0.04))
    artist = None
    for subfig, (group, idx) in zip(subfigs, groups, strict=True):
        subfig.suptitle(group.replace("\n", " "), fontsize=10, fontweight="bold")
        axes = subfig.subplots(n_rows, 2, squeeze=False)
        for r in range(n_rows):
            ax_img, ax_ovl = axes[r]
            for ax in (ax_img, ax_ovl):
                ax.set_xticks([])
                ax.set_yticks([])
            if r >= len(idx):
                ax_img.set_axis_off()
                ax_ovl.set_axis_off()
                continue
            i = idx[r]
            hm = maps[i]
            mask = table.mask(i, shape=hm.shape)
            img = _load_image(str(table.paths[i]), hm.shape)
            thr = thresholds.threshold_for(str(table.regions[i]))
            verdict = "REJECT" if table.scores[i] > thr else "ACCEPT"
            background = np.full(hm.shape, 0.5) if img is None else img
            ax_img.imshow(background, cmap="gray", vmin=0, vmax=1)
            if img is None:
                ax_img.text(
                    0.5,
                    0.5,
                    "image not\navailable",
                    ha="center",
                    va="center",
                    transform=ax_img.transAxes,
                    fontsize=8,
                )
            ax_ovl.imshow(background, cmap="gray", vmin=0, vmax=1)
            artist = ax_ovl.imshow(hm, cmap="inferno", vmin=vmin, vmax=vmax, alpha=0.55)
            if mask is not None and mask.any():
                for ax in (ax_img, ax_ovl):
                    ax.contour(mask.astype(np.float64), levels=[0.5], colors="lime", linewidths=1.2)
            name = os.path.basename(str(table.paths[i])) or f"#{i}"
            if table.product_ids[i]:
                name = f"{table.run_ids[i]}/{table.product_ids[i]}/{name}".lstrip("/")
            ax_img.set_title(f"{name}\nregion {table.regions[i]}, {table.defect_types[i]}", fontsize=8)
            ax_ovl.set_title(
                f"score {table.scores[i]:.4g} (thr {thr:.4g})\n{verdict}",
                fontsize=8,
                color=DEFECT_COLOR if verdict == "REJECT" else "black",
            )
    if artist is not None:  # one shared scale: the colorbar goes with the last group
        subfigs[-1].colorbar(artist, ax=axes[:, 1].tolist(), shrink=0.6, label="heatmap value (overlay)")
    fig.suptitle("Heatmap examples: input | heatmap overlay (green contour = ground-truth defect)")
    return _save(fig, path)


def plot_pixel_curves(report: dict, path: str) -> str | None:
    """Pixel ROC and the PRO curve up to the FPR limit, from the report's thinned curves."""
    pixel = report.get("pixel_level", {})
    curves = pixel.get("curves") or {}
    if not curves:
        return None
    fig = Figure(figsize=(11.0, 4.6), layout="constrained")
    ax_roc, ax_pro = fig.subplots(1, 2)
    if "roc" in curves:
        err = pixel["pixel_auroc_max_abs_error"]
        ax_roc.plot(
            curves["roc"]["fpr"],
            curves["roc"]["y"],
            color="black",
            lw=2,
            label=f"pixel AUROC {pixel['pixel_auroc']:.4f} (+/- {err:.1g})",
        )
        ax_roc.plot([0, 1], [0, 1], ls=":", color="grey", lw=1, label="chance")
        ax_roc.legend(loc="lower right", fontsize=8)
    ax_roc.set_xlabel("fraction of good pixels flagged")
    ax_roc.set_ylabel("fraction of defect pixels flagged")
    ax_roc.set_title("Pixel-level ROC")
    ax_roc.grid(alpha=0.3)
    limit = pixel["fpr_limit"]
    if "pro" in curves:
        fpr = np.asarray(curves["pro"]["fpr"])
        pro = np.asarray(curves["pro"]["y"])
        err = pixel["aupro_max_abs_error"]
        ax_pro.plot(
            fpr,
            pro,
            color="tab:purple",
            lw=2,
            label=f"AUPRO (FPR <= {limit:g}) {pixel['aupro']:.4f} (+/- {err:.1g})",
        )
        inside = fpr <= limit
        shade_x = np.append(fpr[inside], limit)
        shade_y = np.append(pro[inside], np.interp(limit, fpr, pro))
        ax_pro.fill_between(shade_x, shade_y, color="tab:purple", alpha=0.15, label="integrated area")
        ax_pro.legend(loc="lower right", fontsize=8)
    ax_pro.axvline(limit, color="grey", ls="--", lw=1)
    ax_pro.set_xlim(0, min(1.0, limit * 1.1))
    ax_pro.set_ylim(0, 1.01)
    ax_pro.set_xlabel("false-positive rate on good pixels")
    ax_pro.set_ylabel("mean per-region overlap (PRO)")
    ax_pro.set_title(f"Per-region overlap, {pixel['n_components']} ground-truth regions")
    ax_pro.grid(alpha=0.3)
    return _save(fig, path)


def plot_shift_curves(results: dict[str, list[dict]], path: str, metric: str = "image_auroc") -> str:
    """``metric`` against shift strength, one panel per shift kind, one line per model of ``results``
    (model name -> rows of :func:`tfad.evaluation.shift.evaluate_shifts`; the unshifted row is strength 0
    of every kind)."""
    kinds = list(dict.fromkeys(r["kind"] for rows in results.values() for r in rows if r["kind"] != "none"))
    rows_n, cols_n = _grid(max(1, len(kinds)), max_cols=4)
    fig = Figure(figsize=(3.6 * cols_n + 3.4, 3.2 * rows_n + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows_n, cols_n, squeeze=False)).ravel()
    label = metric.replace("_", " ").replace("auroc", "AUROC")
    for ax, kind in zip(axes, kinds, strict=False):
        for index, (model, rows) in enumerate(results.items()):
            base = [r for r in rows if r["kind"] == "none"]
            points = sorted((r["strength"], r[metric]) for r in base + [r for r in rows if r["kind"] == kind])
            points = [(x, y) for x, y in points if y is not None]
            if points:
                # the colour cycle has 10 entries: the line style tells the next ten apart
                style = ("-", "--", ":", "-.")[index // 10 % 4]
                ax.plot(*zip(*points, strict=True), marker="o", lw=1.6, ls=style, label=model)
        ax.axhline(0.5, color="grey", ls=":", lw=1)
        ax.set_title(f"shift: {kind}")
        ax.set_xlabel("strength (1 = the stated maximum)")
        ax.set_ylabel(label)
        ax.set_ylim(0.3, 1.01)
        ax.grid(alpha=0.3)
    for ax in axes[len(kinds) :]:
        ax.set_visible(False)
    if len(results) > 1 or kinds:
        # beside the panels: with many models a legend inside one would hide its curves
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right center", fontsize=7)
    fig.suptitle(f"{label} under domain shift (thresholds and model fixed)")
    return _save(fig, path)


def write_plots(
    table: ScoreTable, thresholds: ThresholdTable, out_dir: str, report: dict | None = None
) -> list[str]:
    """Write every plot that is defined for ``table`` into ``out_dir``; returns the written paths."""
    os.makedirs(out_dir, exist_ok=True)
    written = [
        plot_roc(table, os.path.join(out_dir, "roc.png"), thresholds),
        plot_score_histograms(table, thresholds, os.path.join(out_dir, "score_histograms.png")),
        plot_region_thresholds(table, thresholds, os.path.join(out_dir, "region_thresholds.png")),
        plot_heatmap_examples(table, thresholds, os.path.join(out_dir, "heatmap_examples.png")),
        plot_pixel_curves(report or {}, os.path.join(out_dir, "pixel_curves.png")),
    ]
    return [p for p in written if p is not None]
