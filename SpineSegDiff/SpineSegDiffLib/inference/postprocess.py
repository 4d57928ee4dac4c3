"""From fused probabilities to a clean labelmap, and the region of interest the diffusion runs on."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..labels import STRUCTURES

MIN_COMPONENT_PIXELS = 20
"""Connected components smaller than this (pixels of 1 mm^2 in model space) are removed."""
ROI_WIDTH = 192
ROI_MARGIN = 24
ROI_MULTIPLE = 16


def remove_small_components(labels: np.ndarray, min_pixels: int = MIN_COMPONENT_PIXELS) -> np.ndarray:
    """Set components (8-connected, per slice and structure) below ``min_pixels`` to background.

    ``labels``: uint8 ``(N, H, W)``; returns a new array of the same shape.
    """
    cleaned = labels.copy()
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-connected within a slice, never across slices
    for s in STRUCTURES:
        components, count = ndimage.label(labels == s.value, structure=structure)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())
        small = np.flatnonzero(sizes < min_pixels)
        cleaned[np.isin(components, small[small > 0])] = 0
    return cleaned


def roi_columns(presegmentation: np.ndarray, width: int = ROI_WIDTH, margin: int = ROI_MARGIN) -> slice:
    """Anterior-posterior window (columns) around the presegmented spine.

    ``presegmentation``: ``(H, W)`` labels. The window is ``width`` wide, or wider (a multiple of 16)
    when the spine plus ``margin`` does not fit; all columns when nothing was presegmented.
    """
    total = presegmentation.shape[1]
    columns = np.flatnonzero(presegmentation.any(axis=0))
    if columns.size == 0 or width >= total:
        return slice(0, total)
    span = columns[-1] - columns[0] + 1 + 2 * margin
    size = min(total, max(width, -(-span // ROI_MULTIPLE) * ROI_MULTIPLE))
    centre = (columns[0] + columns[-1] + 1) // 2
    start = int(np.clip(centre - size // 2, 0, total - size))
    return slice(start, start + size)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(*spatial)`` integer labels -> float32 ``(K, *spatial)``."""
    return (np.arange(num_classes).reshape(-1, *([1] * labels.ndim)) == labels[None]).astype(np.float32)
