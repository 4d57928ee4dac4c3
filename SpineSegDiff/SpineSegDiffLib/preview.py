"""The preview picture: the processed slice with the segments, and the uncertainty heatmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from .labels import STRUCTURES


def label_colormap() -> ListedColormap:
    return ListedColormap([(0, 0, 0, 0)] + [(*s.color, 0.55) for s in STRUCTURES])


def write_preview(result, path: Path, slice_number: int | None = None) -> None:
    """Side by side: image + segments, image + heatmap (model-space slice, superior up, anterior left)."""
    k = len(result.model_image) // 2 if slice_number is None else slice_number
    image, labels, heat = result.model_image[k], result.model_labels[k], result.model_uncertainty[k]
    figure = Figure(figsize=(8, 4.4), dpi=100)  # its own Agg canvas: pyplot's global backend is left alone
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 2)
    for ax in axes:
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
        ax.axis("off")
    axes[0].imshow(labels, cmap=label_colormap(), vmin=0, vmax=len(STRUCTURES), interpolation="nearest")
    axes[0].set_title("segments: " + ", ".join(f"{s.key}" for s in STRUCTURES), fontsize=9)
    shown = axes[1].imshow(np.ma.masked_less(heat, 0.02), cmap="inferno", vmin=0, vmax=1, alpha=0.8)
    axes[1].set_title("uncertainty (normalised entropy)", fontsize=9)
    figure.colorbar(shown, ax=axes[1], fraction=0.046, pad=0.02)
    index = result.slice_indices[k]
    figure.suptitle(f"sagittal slice {index}", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
