"""Instances on a sagittal slice: connected components of one structure, their principal axes, and
the repairs of common segmentation faults (broken discs, bodies joined across a disc)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..labels import by_key

MIN_VERTEBRA_AREA_MM2 = 60.0
CANAL_TAIL_MM = 30.0
"""Below the spinal canal, its centre is taken as the most posterior one of its lowest this many mm."""


@dataclass(eq=False)
class Part:
    kind: str
    mask: np.ndarray
    centroid: tuple[float, float]


def canal_columns(labels: np.ndarray, spacing_mm: float = 1.0) -> np.ndarray | None:
    """Column of the spinal canal's centre on every row ``(H,)``, or None without a canal.

    Rows above the canal take its first column; rows below it the most posterior centre of its lowest
    :data:`CANAL_TAIL_MM` (the canal's tapering tip turns anterior while the sacrum curves posterior, and
    a constant last column would put a slipped or lordotic L5 behind the canal)."""
    canal = labels == by_key("SC").value
    rows = np.flatnonzero(canal.any(axis=1))
    if len(rows) < 2:
        return None
    centres = np.array([np.flatnonzero(canal[r]).mean() for r in rows])
    columns = np.interp(np.arange(labels.shape[0]), rows, centres)
    columns[rows[-1] + 1:] = centres[rows >= rows[-1] - CANAL_TAIL_MM / spacing_mm].max()
    return columns


def components(mask: np.ndarray, min_area: float, pixel_area: float) -> list[Part]:
    """Connected components (4-connected) of ``mask`` ``(H, W)`` with at least ``min_area`` mm^2."""
    labelled, count = ndimage.label(mask)
    parts = []
    for index in range(1, count + 1):
        part = labelled == index
        if part.sum() * pixel_area >= min_area:
            rows, cols = np.nonzero(part)
            parts.append(Part("", part, (float(rows.mean()), float(cols.mean()))))
    return parts


def anterior_parts(labels: np.ndarray, value: int, kind: str, min_area: float, canal: np.ndarray | None,
                   pixel_area: float) -> list[Part]:
    """Components of ``value`` whose centroid lies anterior to (left of) the canal centre line.

    Discs below the canal's lowest labelled row are kept: there the canal's tapering tip is no guide
    (a lordotic or slipped L5/S1 disc lies behind its extrapolated line), and posterior elements carry
    the vertebra label, not the disc label."""
    parts = components(labels == value, min_area, pixel_area)
    if canal is not None:
        end = np.flatnonzero((labels == by_key("SC").value).any(axis=1))[-1]
        parts = [p for p in parts if p.centroid[1] < canal[int(round(p.centroid[0]))]
                 or (kind == "disc" and p.centroid[0] > end)]
    for part in parts:
        part.kind = kind
    return parts


def make_part(kind: str, mask: np.ndarray) -> Part:
    rows, cols = np.nonzero(mask)
    return Part(kind, mask, (float(rows.mean()), float(cols.mean())))


def merge_fragments(parts: list[Part], spacing: float) -> list[Part]:
    """Merge same-kind parts whose centroids are less than 0.4 level spacings apart in height
    (a disc or body broken into pieces); the result is sorted bottom-up."""
    merged: list[Part] = []
    for part in sorted(parts, key=lambda p: -p.centroid[0]):
        twin = next((i for i, m in enumerate(merged) if m.kind == part.kind
                     and abs(m.centroid[0] - part.centroid[0]) < 0.4 * spacing), None)
        if twin is None:
            merged.append(part)
        else:
            merged[twin] = make_part(part.kind, merged[twin].mask | part.mask)
    return sorted(merged, key=lambda p: -p.centroid[0])


def split_bodies_at_discs(parts: list[Part], pixel_area: float = 1.0) -> list[Part]:
    """Cut a vertebra component that runs across a disc (two bodies joined where the disc was
    under-segmented) along the line of that disc's long axis; pieces under a quarter of
    :data:`MIN_VERTEBRA_AREA_MM2` (``pixel_area`` mm^2 per pixel) are dropped."""
    discs = [p for p in parts if p.kind == "disc"]
    result = [p for p in parts if p.kind == "disc"]
    for body in (p for p in parts if p.kind == "vertebra"):
        pieces = [body.mask]
        for disc in discs:
            rows = np.flatnonzero(body.mask.any(axis=1))
            margin = 0.25 * (rows[-1] - rows[0])
            if rows[0] + margin < disc.centroid[0] < rows[-1] - margin:
                normal = principal_axes(disc.mask)[1]
                grid = np.indices(body.mask.shape).transpose(1, 2, 0) - np.array(disc.centroid)
                above = grid @ normal > 0
                pieces = [cut for piece in pieces for side in (above, ~above) if (cut := piece & side).any()]
        result += [make_part("vertebra", piece) for piece in pieces
                   if piece.sum() * pixel_area >= MIN_VERTEBRA_AREA_MM2 / 4]
    return result


def principal_axes(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit ``(row, col)`` vectors of the long and the short axis of a mask ``(H, W)`` (PCA).

    The long axis points posterior (towards larger columns), the short one superior (smaller rows)."""
    points = np.argwhere(mask).astype(float)
    if len(points) < 3:
        return np.array([0.0, 1.0]), np.array([-1.0, 0.0])
    _, vectors = np.linalg.eigh(np.cov(points.T))
    long_axis, short_axis = vectors[:, 1], vectors[:, 0]
    long_axis = long_axis if long_axis[1] >= 0 else -long_axis
    short_axis = short_axis if short_axis[0] <= 0 else -short_axis
    return long_axis, short_axis


def thickness(mask: np.ndarray) -> float:
    """Mean thickness in pixels across the long axis: area / extent along the long axis."""
    points = np.argwhere(mask).astype(float)
    if len(points) == 0:
        return 0.0
    along = points @ principal_axes(mask)[0]
    return float(len(points) / (np.ptp(along) + 1.0))
