"""The segments of the two DICOM SEGs: which voxels each holds, its number, name and codes.

The structure SEG has one segment per structure of the label table, the level SEG one per named level. Each is
built from one labelmap (an array of segment numbers), so no voxel belongs to two segments and highdicom marks the
SEG ``SegmentsOverlap`` "NO". Segments without voxels are left out and the others are numbered 1, 2, ... in table
(or level) order, as the standard requires. A vertebra level holds what the level labelmap marks for it: the
vertebral body only (the components of the vertebra label in front of the spinal canal,
:func:`~SpineSegDiffLib.anatomy.instances.anterior_parts`), so it is coded "Vertebral body" with the vertebra's own
code as anatomic region; a disc level holds that disc. highdicom is imported only when a description is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import __version__
from ..anatomy.report import DISC, VERTEBRA, level_kind, structure_of
from ..labels import CATEGORY, LEVEL_TYPES, STRUCTURES, Structure

Code = tuple[str, str, str]
"""``(coding scheme, code value, code meaning)``."""


def type_code(structure: Structure) -> Code:
    """A structure's type code from the label table."""
    return structure.coding_scheme, structure.code, structure.meaning


VERTEBRAL_BODY: Code = ("SCT", "3572006", "Vertebral body")
"""Type of a vertebra level's segment: SlicerTotalSegmentator's code for vertebral bodies (the ``vertebrae_body``
row of its ``totalsegmentator_snomed_mapping.csv``, commit ``19cea7a82e460f6b271c3c4af23377590cc5548d``)."""
LEVEL_PARTS: dict[str, tuple[str, Code]] = {
    VERTEBRA: ("vertebral body", VERTEBRAL_BODY),
    DISC: ("intervertebral disc", type_code(structure_of(DISC))),
}
"""Per level kind: what its segment holds, as named after the level (``"L4 vertebral body"``), and its type code."""
ALGORITHM = "SpineSegDiff"


@dataclass(frozen=True)
class Segment:
    """One segment of a DICOM SEG.

    Attributes:
        number: segment number, from 1.
        label: segment label (``"Vertebrae"``, ``"L4 vertebral body"``).
        kind: segmented property type, in the Anatomical Structure category.
        color: RGB in 0..1.
        region: anatomic region (the vertebra of a vertebral body), or None.
        tracking_id: the level's name for level segments, else None.
    """

    number: int
    label: str
    kind: Code
    color: tuple[float, float, float]
    region: Code | None = None
    tracking_id: str | None = None


def structure_segments(labels: np.ndarray) -> tuple[np.ndarray, list[Segment]]:
    """The structure SEG's segments: one per structure of the label table with voxels in ``labels``.

    Args:
        labels: labelmap (label table values), any shape.

    Returns:
        The segment number of every voxel (0: none), same shape, and the segments in number order.
    """
    numbers = np.zeros(labels.shape, np.uint8)
    segments: list[Segment] = []
    for structure in STRUCTURES:
        mask = labels == structure.value
        if mask.any():
            segments.append(Segment(len(segments) + 1, structure.name, type_code(structure), structure.color))
            numbers[mask] = len(segments)
    return numbers, segments


def level_segments(level_labels: np.ndarray, levels: list[dict]) -> tuple[np.ndarray, list[Segment]]:
    """The level SEG's segments: one per named level with voxels in ``level_labels``, in the order of ``levels``.

    Args:
        level_labels: integer level labelmap, any shape.
        levels: dicts with ``name``, ``kind`` (a level kind of the report) and ``label_value`` (the level's value
            in ``level_labels``; None or 0 for a level that was not segmented).

    Returns:
        The segment number of every voxel (0: none), same shape, and the segments in number order.

    Raises:
        ValueError: a level of unknown kind, or two levels with the same label value.
    """
    for level in levels:
        level_kind(level.get("kind"))
    values = [int(level["label_value"] or 0) for level in levels]
    segmented = [value for value in values if value]
    if len(set(segmented)) < len(segmented):
        raise ValueError(f"two levels share a label value: {values}")
    numbers = np.zeros(level_labels.shape, np.uint8 if len(levels) < 256 else np.uint16)
    segments: list[Segment] = []
    for level, value in zip(levels, values):
        mask = level_labels == value if value else None
        if mask is not None and mask.any():
            segments.append(level_segment(len(segments) + 1, level))
            numbers[mask] = len(segments)
    return numbers, segments


def level_segment(number: int, level: dict) -> Segment:
    """A named level's segment: labelled with the level and what it holds, coded as what it holds, with the
    vertebra's code (:data:`~SpineSegDiffLib.labels.LEVEL_TYPES`) as region; its structure's colour."""
    part, kind = LEVEL_PARTS[level["kind"]]
    region = LEVEL_TYPES.get(level["name"]) if level["kind"] == VERTEBRA else None
    color = structure_of(level["kind"]).color
    return Segment(number, f"{level['name']} {part}", kind, color, region, tracking_id=level["name"])


def description(segment: Segment) -> Any:
    """highdicom ``SegmentDescription`` of ``segment``: Anatomical Structure category, made by the SpineSegDiff
    algorithm (automatic), a new tracking UID with the tracking ID."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    category_scheme, category_code, category_meaning = CATEGORY.split("^")
    regions = [_coded(segment.region)] if segment.region else None
    return hd.seg.SegmentDescription(
        segment_number=segment.number, segment_label=segment.label,
        segmented_property_category=hd.sr.CodedConcept(category_code, category_scheme, category_meaning),
        segmented_property_type=_coded(segment.kind), anatomic_regions=regions,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=ALGORITHM, family=codes.cid7162.ArtificialIntelligence, version=__version__),
        tracking_id=segment.tracking_id, tracking_uid=hd.UID() if segment.tracking_id else None,
        display_color=hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in segment.color)),
    )


def _coded(code: Code) -> Any:
    """highdicom ``CodedConcept`` of ``(scheme, value, meaning)``."""
    import highdicom as hd

    scheme, value, meaning = code
    return hd.sr.CodedConcept(value, scheme, meaning)
