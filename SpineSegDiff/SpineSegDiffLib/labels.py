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
        kind = f"{self.coding_scheme}^{self.code}^{self.meaning}"
        return f"{TERMINOLOGY_CONTEXT}~{CATEGORY}~{kind}~^^~{ANATOMIC_CONTEXT}~^^~^^"


STRUCTURES: tuple[Structure, ...] = (
    # no verified SNOMED CT concept for the spinal canal: a private code, defined in the module's .term.json
    Structure(1, "SC", "Spinal canal", (0.49, 0.78, 0.95), "99SPINESEGDIFF", "SPINAL_CANAL", "Spinal canal"),
    # Slicer's DICOM master list
    Structure(2, "VB", "Vertebrae", (0.95, 0.84, 0.57), "SCT", "51282000", "Vertebra"),
    # SlicerTotalSegmentator's mapping (Slicer's lists have no disc)
    Structure(3, "IVD", "Intervertebral discs", (0.41, 0.83, 0.45), "SCT", "360499006", "Intervertebral disc"),
)

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
