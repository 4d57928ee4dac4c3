"""The one table of structures SpineSegDiff segments: values, names, colours and terminology.

Every other module (labelmaps, .seg.nrrd files, Slicer segments, reports, training masks) reads
this table; nothing else hard-codes a label value, a name or a colour.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMINOLOGY_CONTEXT = "Segmentation category and type - SpineSegDiff"
"""The module's terminology (``SpineSegDiff/Resources/Terminology/*.term.json``, loaded by the module at startup)."""
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
CATEGORY = "SCT^123037004^Anatomical Structure"
"""Slicer's category of every structure (DICOM master list)."""


@dataclass(frozen=True)
class Structure:
    """One segmented structure.

    Attributes:
        value: label value in labelmaps (0 is background).
        key: short machine name used in file names and reports.
        name: human-readable segment name.
        color: RGB in 0..1, as Slicer segment colours.
        coding_scheme: coding scheme of the structure's type code (``SCT`` = SNOMED CT).
        code: the type code; where it comes from is recorded in
            ``SpineSegDiff/Resources/Terminology/sources/PROVENANCE.md``.
        meaning: the code's meaning, exactly as in the list it comes from.
    """

    value: int
    key: str
    name: str
    color: tuple[float, float, float]
    coding_scheme: str
    code: str
    meaning: str

    @property
    def terminology(self) -> str:
        """Slicer terminology entry: context~category~type~type modifier~anatomic context~region~modifier."""
        return terminology_entry((self.coding_scheme, self.code, self.meaning))


STRUCTURES: tuple[Structure, ...] = (
    # Slicer's DICOM master list (CID 7153): on T2 the canal label holds the dural sac and its CSF (the
    # displayed name stays "Spinal canal")
    Structure(1, "SC", "Spinal canal", (0.49, 0.78, 0.95),
              "SCT", "280401006", "Spinal cerebrospinal fluid pathway"),
    # Slicer's DICOM master list
    Structure(2, "VB", "Vertebrae", (0.95, 0.84, 0.57), "SCT", "51282000", "Vertebra"),
    # SlicerTotalSegmentator's mapping (Slicer's lists have no disc)
    Structure(3, "IVD", "Intervertebral discs", (0.41, 0.83, 0.45), "SCT", "360499006", "Intervertebral disc"),
)

LEVEL_TYPES: dict[str, tuple[str, str, str]] = {
    name: ("SCT", code, meaning) for name, code, meaning in (
        ("S1", "54735007", "Sacrum"),
        ("L5", "49668003", "L5 vertebra"), ("L4", "11994002", "L4 vertebra"), ("L3", "36470004", "L3 vertebra"),
        ("L2", "14293000", "L2 vertebra"), ("L1", "66794005", "L1 vertebra"),
        ("T12", "23215003", "T12 vertebra"), ("T11", "12989004", "T11 vertebra"), ("T10", "7610001", "T10 vertebra"),
        ("T9", "82687006", "T9 vertebra"), ("T8", "11068009", "T8 vertebra"), ("T7", "62487009", "T7 vertebra"),
        ("T6", "45296009", "T6 vertebra"), ("T5", "56401006", "T5 vertebra"), ("T4", "73071006", "T4 vertebra"),
        ("T3", "1626008", "T3 vertebra"), ("T2", "53733008", "T2 vertebra"), ("T1", "64864005", "T1 vertebra"),
    )
}
"""Type code of each named vertebra (``levels.VERTEBRA_NAMES``; the S1 level is the sacrum), from
SlicerTotalSegmentator's SNOMED CT mapping (see ``Resources/Terminology/sources/PROVENANCE.md``).
Vertebrae without an entry (cervical) and discs take their structure's code: the level kinds, their
structures and :func:`~SpineSegDiffLib.anatomy.report.level_terminology` are in the level report module."""


def terminology_entry(kind: tuple[str, str, str]) -> str:
    """Slicer terminology entry of a type code ``(scheme, value, meaning)`` in the Anatomical Structure category."""
    return f"{TERMINOLOGY_CONTEXT}~{CATEGORY}~{'^'.join(kind)}~^^~{ANATOMIC_CONTEXT}~^^~^^"


BACKGROUND = 0
NUM_CLASSES = 1 + len(STRUCTURES)
"""Classes the networks predict: background plus every structure."""


def by_value(value: int) -> Structure:
    """The structure with this label value; ``KeyError`` if none."""
    for structure in STRUCTURES:
        if structure.value == value:
            return structure
    raise KeyError(f"no structure has label value {value}")


def by_key(key: str) -> Structure:
    """The structure with this short key (``SC``, ``VB``, ``IVD``); ``KeyError`` if none."""
    for structure in STRUCTURES:
        if structure.key == key:
            return structure
    raise KeyError(f"no structure has key {key!r}")
