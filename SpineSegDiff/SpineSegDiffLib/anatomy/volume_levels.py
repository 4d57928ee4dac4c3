"""Vertebral levels through a volume: carry the central slice's named instances to every sagittal
slice, and measure each level on every slice where it appears.

Works on model-space volumes ``(N, H, W)`` (row 0 superior, column 0 anterior). The central slice is
named by :func:`~.levels.find_levels`; the other slices are not named again but tracked outwards from
it, one slice at a time: each vertebra or disc component takes the instance of the neighbour slice
(the one nearer the centre) that it overlaps most, discs only matching discs and bodies only bodies.
A component overlapping several instances of its kind (two bodies joined on a lateral slice) is split
between them, each pixel going to the nearest pixel of those instances on the neighbour slice. A
component overlapping nothing stays unlabelled, and an instance absent from one slice is not looked
for further out. Pixels posterior to the spinal canal's centre line (posterior elements) are never
labelled; a slice without a canal uses the line of its neighbour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from scipy import ndimage

from .instances import canal_columns, components
from .levels import Level, Levels
from .measurements import measure_report
from .report import DISC, KINDS, SLICES_CSV, VERTEBRA, csv_row

MIN_PIECE_AREA_MM2 = 5.0
"""Smaller vertebra or disc pieces on a non-central slice are left unlabelled (noise)."""
MIN_OVERLAP_SHARE = 0.1
"""A component is split between instances only when each overlaps it by at least this share of the
largest overlap; smaller touches are taken as contact, not as a merge."""


def instance_kinds(central: Levels) -> dict[int, str]:
    """``{instance: "vertebra" | "disc"}`` for every segmented level of the central slice."""
    return {level.instance: level.kind for level in (*central.vertebrae, *central.discs) if not level.missing}


def anterior_mask(mask: np.ndarray, canal: np.ndarray | None) -> np.ndarray:
    """``mask`` ``(H, W)`` without the pixels on or behind the canal centre line ``canal`` ``(H,)``."""
    if canal is None:
        return mask
    columns = np.arange(mask.shape[1])[None, :]
    return mask & (columns < canal[:, None])


def split_by_nearest(piece: np.ndarray, neighbour: np.ndarray, candidates: list[int]) -> np.ndarray:
    """Give every pixel of ``piece`` ``(H, W)`` the candidate instance whose pixel on the neighbour
    slice ``neighbour`` (int ``(H, W)``) is nearest; returns int32 ``(H, W)``, 0 outside ``piece``."""
    labelled = np.isin(neighbour, candidates)
    _, (rows, cols) = ndimage.distance_transform_edt(~labelled, return_indices=True)
    result = np.zeros(piece.shape, np.int32)
    result[piece] = neighbour[rows[piece], cols[piece]]
    return result


def match_piece(piece: np.ndarray, neighbour: np.ndarray, same_kind: np.ndarray) -> np.ndarray:
    """Instance map ``(H, W)`` of one component ``piece`` ``(H, W)`` from the overlap with the
    neighbour slice's instances; ``same_kind`` is a boolean lookup ``(max_instance + 1,)`` of the
    instances of the piece's kind."""
    overlaps = np.bincount(neighbour[piece], minlength=len(same_kind))[: len(same_kind)]
    overlaps = np.where(same_kind, overlaps, 0)
    result = np.zeros(piece.shape, np.int32)
    if overlaps.max() == 0:
        return result
    candidates = np.flatnonzero(overlaps >= MIN_OVERLAP_SHARE * overlaps.max()).tolist()
    if len(candidates) == 1:
        result[piece] = candidates[0]
        return result
    return split_by_nearest(piece, neighbour, candidates)


def label_slice(labels: np.ndarray, neighbour: np.ndarray, kinds: dict[int, str], canal: np.ndarray | None,
                spacing_mm: float) -> np.ndarray:
    """Instance map int32 ``(H, W)`` of one slice ``labels`` uint8 ``(H, W)`` tracked from the already
    labelled ``neighbour`` int32 ``(H, W)``; ``canal`` ``(H,)`` is the canal centre line to use."""
    result = np.zeros(labels.shape, np.int32)
    size = max(kinds, default=0) + 1
    for kind in KINDS:
        same_kind = np.zeros(size, bool)
        same_kind[[i for i, k in kinds.items() if k == kind.name]] = True
        if not same_kind.any():
            continue
        mask = anterior_mask(labels == kind.structure.value, canal)
        for part in components(mask, MIN_PIECE_AREA_MM2, spacing_mm**2):
            matched = match_piece(part.mask, neighbour, same_kind)
            result[part.mask] = matched[part.mask]
    return result


def track(labels: np.ndarray, start: np.ndarray, centre: int, step: int, kinds: dict[int, str],
          spacing_mm: float, out: np.ndarray) -> None:
    """Fill ``out`` ``(N, H, W)`` from slice ``centre + step`` outwards in the direction ``step``
    (+1 or -1), starting from the instance map ``start`` ``(H, W)`` of slice ``centre``; stops when
    no instance is left."""
    neighbour = start
    canal = canal_columns(labels[centre])
    for n in range(centre + step, len(labels) if step > 0 else -1, step):
        canal = own if (own := canal_columns(labels[n])) is not None else canal
        neighbour = label_slice(labels[n], neighbour, kinds, canal, spacing_mm)
        if not neighbour.any():
            return
        out[n] = neighbour


def propagate_levels(central: Levels, labels: np.ndarray, centre: int, spacing_mm: float = 1.0) -> np.ndarray:
    """Instance map of a whole volume, consistent with the central slice's named levels.

    Args:
        central: :func:`~.levels.find_levels` of slice ``centre``.
        labels: uint8 ``(N, H, W)`` labelmap (SC/VB/IVD values), model space.
        centre: the slice ``central`` was found on.
        spacing_mm: in-plane pixel size.

    Returns:
        int32 ``(N, H, W)``: on slice ``centre`` exactly ``central.instances``; elsewhere each vertebra
        and disc pixel tracked to a central level carries that level's ``instance``, 0 otherwise.
    """
    if labels.ndim != 3 or not 0 <= centre < len(labels):
        raise ValueError(f"labels must be (N, H, W) with 0 <= centre < N, got {labels.shape} and {centre}")
    out = np.zeros(labels.shape, np.int32)
    out[centre] = central.instances
    kinds = instance_kinds(central)
    if kinds:
        for step in (1, -1):
            track(labels, out[centre], centre, step, kinds, spacing_mm, out)
    return out


def slice_levels(central: Levels, instances: np.ndarray) -> Levels:
    """The central levels present on one slice's instance map ``instances`` int32 ``(H, W)``, with
    their centroids recomputed there (absent and missing levels left out)."""
    found: dict[str, list[Level]] = {kind.name: [] for kind in KINDS}
    for level in (*central.vertebrae, *central.discs):
        if level.missing:
            continue
        rows, cols = np.nonzero(instances == level.instance)
        if len(rows):
            found[level.kind].append(replace(level, centroid=(float(rows.mean()), float(cols.mean()))))
    return Levels(instances, found[VERTEBRA], found[DISC])


def measure_slices(central: Levels, instances: np.ndarray, labels: np.ndarray, heatmap: np.ndarray | None,
                   spacing_mm: float, slice_indices: Sequence[int]) -> list[dict]:
    """Per-slice measurements of every level on every slice where it appears.

    Args:
        central: the central slice's levels (names, ``from_bottom`` and ``instance`` values).
        instances: int32 ``(N, H, W)`` from :func:`propagate_levels`.
        labels: uint8 ``(N, H, W)`` labelmap (for the spinal canal).
        heatmap: optional float ``(N, H, W)`` uncertainty, 0..1.
        spacing_mm: in-plane pixel size.
        slice_indices: ``(N,)`` index of each model slice along the input's sagittal axis.

    Returns:
        One row of the per-slice CSV (:data:`~.report.SLICES_CSV`) per (slice, level), slices in order and levels
        bottom-up within a slice: ``slice_index`` (input grid), ``model_slice``, ``name``, ``kind``,
        ``from_bottom`` and the scalar keys of :func:`~.measurements.measure_levels` (no pixel positions).
    """
    if not (len(instances) == len(labels) == len(slice_indices)):
        raise ValueError("instances, labels and slice_indices must have one entry per slice")
    rows: list[dict] = []
    for n in range(len(instances)):
        levels = slice_levels(central, instances[n])
        if not (levels.vertebrae or levels.discs):
            continue
        measured = measure_report(levels, labels[n], None if heatmap is None else heatmap[n], spacing_mm)
        rows += [csv_row(SLICES_CSV, entry.kind, entry.to_dict(), slice_index=int(slice_indices[n]), model_slice=n)
                 for entry in measured.bottom_up()]
    return rows
