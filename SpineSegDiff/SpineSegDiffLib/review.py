"""Where to look first: the most uncertain regions of a result, ranked for review.

A region is a connected component of the uncertainty heatmap above a threshold. Regions are ranked
by ``mean uncertainty x size``, so a large doubtful area comes before a single noisy voxel, and each
is attributed to the structure it overlaps most (uncertainty concentrates on structure borders).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from .labels import STRUCTURES

BACKGROUND_KEY = "background"
"""``structure_key`` of a region that overlaps no segmented structure."""


@dataclass(frozen=True)
class Region:
    """One uncertain region.

    Attributes:
        structure_key: key of the structure (``SC``, ``VB``, ``IVD``) the region overlaps most, or
            :data:`BACKGROUND_KEY`.
        size_mm: area in mm^2 (``unit == "mm2"``) when the heatmap covers one slice, else volume in mm^3.
        mean_uncertainty: mean heatmap value over the region, 0..1.
        centroid_ijk: centre of the region as a continuous voxel index ``(i, j, k)`` (SimpleITK/Slicer order).
        voxel_count: number of voxels in the region.
        unit: ``"mm2"`` or ``"mm3"``.
    """

    structure_key: str
    size_mm: float
    mean_uncertainty: float
    centroid_ijk: tuple[float, float, float]
    voxel_count: int
    unit: str = "mm3"

    @property
    def score(self) -> float:
        """Ranking score: mean uncertainty x size."""
        return self.mean_uncertainty * self.size_mm


def planar_axis(heatmap: np.ndarray) -> int | None:
    """The NumPy axis along which the heatmap's non-zero support is one slice thick, if there is one.

    That is the case in central-slice mode: only the processed sagittal slice carries uncertainty.
    """
    support = np.nonzero(heatmap > 0)
    for axis in np.argsort(heatmap.shape)[::-1]:  # prefer the longest axis when several are flat
        if len(support[axis]) and support[axis].min() == support[axis].max() and heatmap.shape[axis] > 1:
            return int(axis)
    return None


def voxel_measure(spacing: Sequence[float], axis: int | None) -> tuple[float, str]:
    """Size of one voxel: area in the plane normal to NumPy ``axis`` (mm^2), or volume (mm^3) if ``axis`` is None.

    ``spacing`` is in SimpleITK order ``(i, j, k)``; NumPy axis ``a`` has spacing ``spacing[2 - a]``.
    """
    numpy_spacing = [float(s) for s in reversed(tuple(spacing))]
    if axis is None:
        return float(np.prod(numpy_spacing)), "mm3"
    return float(np.prod([s for a, s in enumerate(numpy_spacing) if a != axis])), "mm2"


def dominant_structure(labels_in_region: np.ndarray) -> str:
    """Key of the most frequent structure label among the region's voxels (ties: lower value)."""
    counts = np.bincount(labels_in_region.astype(np.int64).ravel(), minlength=1 + max(s.value for s in STRUCTURES))
    counts[0] = 0
    if counts.max() == 0:
        return BACKGROUND_KEY
    value = int(np.argmax(counts))
    return next((s.key for s in STRUCTURES if s.value == value), BACKGROUND_KEY)


def uncertain_regions(heatmap: np.ndarray, labels: np.ndarray, spacing: Sequence[float], threshold: float = 0.5,
                      max_regions: int = 20, min_voxels: int = 1) -> list[Region]:
    """Connected components of ``heatmap >= threshold``, most important first.

    Args:
        heatmap: uncertainty ``(k, j, i)`` (NumPy order of a SimpleITK image), 0..1.
        labels: labelmap of the same shape, values from the label table.
        spacing: voxel spacing in SimpleITK order ``(i, j, k)``, mm.
        threshold: heatmap value from which a voxel counts as uncertain.
        max_regions: at most this many regions are returned.
        min_voxels: smaller components are ignored.

    Returns:
        Regions sorted by ``mean_uncertainty x size_mm`` (descending).
    """
    heatmap, labels, measure = _checked(heatmap, labels, spacing)
    return _regions_above(heatmap, labels, measure, threshold, max_regions, min_voxels)


def _checked(heatmap, labels, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray, tuple[float, str]]:
    """Heatmap (float32) and labels as arrays of the same shape, with the measure of one voxel."""
    heatmap, labels = np.asarray(heatmap, dtype=np.float32), np.asarray(labels)
    if heatmap.shape != labels.shape:
        raise ValueError(f"heatmap {heatmap.shape} and labels {labels.shape} must have the same shape")
    return heatmap, labels, voxel_measure(spacing, planar_axis(heatmap))


def _regions_above(heatmap: np.ndarray, labels: np.ndarray, measure: tuple[float, str], threshold: float,
                   max_regions: int, min_voxels: int = 1) -> list[Region]:
    """:func:`uncertain_regions` with the voxel measure given, computed inside the bounding box of the mask."""
    mask = heatmap >= threshold
    box = ndimage.find_objects(mask.astype(np.int8))
    if not box or max_regions < 1:
        return []
    offset = np.array([s.start for s in box[0]], dtype=float)
    heatmap, labels = heatmap[box[0]], labels[box[0]]
    components, count = ndimage.label(mask[box[0]])
    index = np.arange(1, count + 1)
    ones = np.ones_like(heatmap)
    voxels = ndimage.sum_labels(ones, components, index)
    means = ndimage.mean(heatmap, components, index)
    centres = ndimage.center_of_mass(ones, components, index)
    per_voxel, unit = measure
    regions = []
    for n, (count_n, mean_n, centre_n, part) in enumerate(
            zip(voxels, means, centres, ndimage.find_objects(components)), start=1):
        if count_n < min_voxels:
            continue
        in_region = labels[part][components[part] == n]
        regions.append(Region(
            structure_key=dominant_structure(in_region), size_mm=round(float(count_n) * per_voxel, 3),
            mean_uncertainty=round(float(mean_n), 4),
            centroid_ijk=tuple(float(c) for c in reversed(np.asarray(centre_n) + offset)),
            voxel_count=int(count_n), unit=unit,
        ))
    regions.sort(key=lambda r: r.score, reverse=True)
    return regions[:max_regions]


REVIEW_LEVELS = tuple(round(0.05 * n, 2) for n in range(1, 21))
"""Thresholds the review list is computed for, once per result: the module's slider steps (0.05 .. 1.0)."""


@dataclass(frozen=True)
class RegionsByLevel:
    """The review regions of one result for every threshold of ``levels``, computed once.

    A threshold slider then only picks a precomputed list (:meth:`at`); nothing is relabelled.
    """

    levels: tuple[float, ...]
    regions: tuple[tuple[Region, ...], ...]

    def at(self, threshold: float) -> list[Region]:
        """The regions of the highest level not above ``threshold`` (the lowest level below all of them)."""
        index = max((n for n, level in enumerate(self.levels) if level <= threshold + 1e-9), default=0)
        return list(self.regions[index])


def regions_by_level(heatmap: np.ndarray, labels: np.ndarray, spacing: Sequence[float],
                     levels: Sequence[float] = REVIEW_LEVELS, max_regions: int = 20) -> RegionsByLevel:
    """:func:`uncertain_regions` at each of ``levels`` (ascending), for a slider that filters without recomputing."""
    ordered = tuple(sorted(float(level) for level in levels))
    if not ordered:
        raise ValueError("at least one review level is needed")
    heatmap, labels, measure = _checked(heatmap, labels, spacing)
    found = tuple(tuple(_regions_above(heatmap, labels, measure, level, max_regions)) for level in ordered)
    return RegionsByLevel(ordered, found)


def regions_to_dict(found: RegionsByLevel) -> dict:
    """A JSON-ready form of :class:`RegionsByLevel` (read back with :func:`regions_from_dict`)."""
    return {"levels": list(found.levels),
            "regions": [[{**asdict(region), "centroid_ijk": list(region.centroid_ijk)} for region in level]
                        for level in found.regions]}


def regions_from_dict(data: dict) -> RegionsByLevel:
    """:class:`RegionsByLevel` from :func:`regions_to_dict`'s form."""
    regions = tuple(tuple(Region(**{**item, "centroid_ijk": tuple(item["centroid_ijk"])}) for item in level)
                    for level in data["regions"])
    return RegionsByLevel(tuple(float(level) for level in data["levels"]), regions)
