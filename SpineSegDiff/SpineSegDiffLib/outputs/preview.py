"""The preview picture: the processed slice with the segments and the level names, and with the
uncertainty heatmap.

Composed directly in NumPy (names drawn with Pillow's built-in font) and written as PNG by SimpleITK: no
plotting library is imported for it (matplotlib's import and layout cost about a second per run, more
than a fast segmentation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..anatomy.report import kind_entries, structure_of
from ..labels import STRUCTURES

LABEL_OPACITY = 0.55
HEATMAP_OPACITY = 0.8
HEATMAP_FLOOR = 0.02
"""Uncertainty below this is not drawn (the image shows through)."""
GAP_PIXELS = 4
NAME_FONT_SIZE = 10
NAME_MARGIN = 3
"""Pixels between a level's name and the level's anterior edge."""
INFERNO = np.array([(0, 0, 4), (33, 12, 74), (87, 16, 110), (138, 34, 106), (188, 55, 84), (228, 90, 49),
                    (249, 142, 9), (249, 203, 53), (252, 255, 164)]) / 255.0
"""matplotlib's ``inferno`` colour map at 0, 1/8, ..., 1 (dark = certain, bright = uncertain)."""


def label_colormap():
    """The label colours as a matplotlib colour map (for figures drawn with matplotlib)."""
    from matplotlib.colors import ListedColormap

    return ListedColormap([(0, 0, 0, 0)] + [(*s.color, LABEL_OPACITY) for s in STRUCTURES])


def grey_rgb(image: np.ndarray) -> np.ndarray:
    """Model-space intensities ``(H, W)`` (0..255) -> grey RGB ``(H, W, 3)`` in 0..1."""
    return np.repeat(np.clip(image / 255.0, 0.0, 1.0)[..., None], 3, axis=-1)


def with_labels(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Blend each structure's colour over its pixels; ``labels`` ``(H, W)``."""
    out = rgb.copy()
    for s in STRUCTURES:
        mask = labels == s.value
        out[mask] = (1 - LABEL_OPACITY) * out[mask] + LABEL_OPACITY * np.asarray(s.color)
    return out


def with_heatmap(rgb: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Blend the inferno colour of ``heat`` ``(H, W)`` (0..1) where it is at least :data:`HEATMAP_FLOOR`."""
    anchors = np.linspace(0.0, 1.0, len(INFERNO))
    colours = np.stack([np.interp(np.clip(heat, 0, 1), anchors, INFERNO[:, c]) for c in range(3)], axis=-1)
    shown = (heat >= HEATMAP_FLOOR)[..., None]
    return np.where(shown, (1 - HEATMAP_OPACITY) * rgb + HEATMAP_OPACITY * colours, rgb)


def level_name_positions(levels: dict | None, level_labels: np.ndarray | None) -> list[tuple[str, int, int, str]]:
    """``(name, row, anterior column, kind)`` of every named level found in ``level_labels`` ``(H, W)``
    (values: the levels' ``label_value``)."""
    if not levels or level_labels is None:
        return []
    found = []
    for kind, entry in kind_entries(levels):
        rows, columns = np.nonzero(level_labels == (entry.get("label_value") or -1))
        if len(rows):
            found.append((entry["name"], int(round(rows.mean())), int(columns.min()), kind))
    return found


def with_level_names(rgb: np.ndarray, names: list[tuple[str, int, int, str]]) -> np.ndarray:
    """Write each level's name left of (anterior to) the level, in its structure's colour; ``rgb`` ``(H, W, 3)``."""
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:  # a Python without Pillow (a dependency of the command line) gets no names
        return rgb
    if not names:
        return rgb

    picture = Image.fromarray(np.round(rgb * 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=NAME_FONT_SIZE)
    for name, row, column, kind in names:
        colour = tuple(round(255 * c) for c in structure_of(kind).color)
        width = draw.textlength(name, font=font)
        x = max(0.0, column - NAME_MARGIN - width)
        draw.text((x, row), name, fill=colour, font=font, anchor="lm", stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(picture, dtype=np.float64) / 255.0


def write_preview(result, path: Path, slice_number: int | None = None) -> None:
    """Side by side: image + segments + level names, image + heatmap (model-space slice, superior up,
    anterior left)."""
    k = len(result.model_image) // 2 if slice_number is None else slice_number
    image, labels, heat = result.model_image[k], result.model_labels[k], result.model_uncertainty[k]
    level_labels = getattr(result, "model_level_labels", None)
    names = level_name_positions(getattr(result, "levels", None), None if level_labels is None else level_labels[k])
    grey = grey_rgb(image)
    gap = np.ones((grey.shape[0], GAP_PIXELS, 3))
    segments = with_level_names(with_labels(grey, labels), names)
    canvas = np.concatenate([segments, gap, with_heatmap(grey, heat)], axis=1)
    picture = sitk.GetImageFromArray(np.round(canvas * 255).astype(np.uint8), isVector=True)
    sitk.WriteImage(picture, str(path))
