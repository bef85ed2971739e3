"""The training plots ``tfad fit`` redraws after every epoch in ``<run>/plots``: the loss curves of the
trainer's ``plot_panels`` and a few samples of its ``preview_panels``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tfad.rundir import PLOTS_DIR


def write_plots(run_dir: Path, history: list[dict], trainer: Any, dataset: Any) -> None:
    """Loss curves and a few validation samples (input X*, clean X, reconstruction, heatmap)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = run_dir / PLOTS_DIR
    plots.mkdir(exist_ok=True)
    epochs = [h["epoch"] for h in history]
    panels = trainer.plot_panels
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.6))
    for ax, (keys, title) in zip(axes, panels, strict=True):
        for i, key in enumerate(keys):
            for split, style in (("train", "-"), ("val", "--")):  # one colour per quantity
                values = [h.get(f"{split}_{key}") for h in history]
                if any(v is not None for v in values):
                    ax.plot(epochs, values, style, color=f"C{i}", marker="o", label=f"{split} {key}")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(plots / "training_curves.png", dpi=90)
    plt.close(fig)

    batch = next(iter(dataset.take(1)))
    n = min(4, int(batch["image"].shape[0]))
    columns, labels = trainer.preview_panels(batch, n)
    fig, axes = plt.subplots(n, len(columns), figsize=(2 * len(columns), 2.1 * n), squeeze=False)
    for i in range(n):
        for j, (title, images, cmap) in enumerate(columns):
            ax = axes[i, j]
            arr = np.asarray(images[i])
            ax.imshow(arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 1 else arr, cmap=cmap, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=8)
        axes[i, 0].set_ylabel(labels[i], fontsize=7)
    fig.suptitle(f"validation samples after epoch {history[-1]['epoch']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(plots / "reconstructions.png", dpi=90)
    plt.close(fig)
