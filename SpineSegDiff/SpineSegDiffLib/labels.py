"""The one table of structures SpineSegDiff segments: values, names, colours and terminology.

Every other module (labelmaps, .seg.nrrd files, Slicer segments, reports, training masks) reads
this table; nothing else hard-codes a label value, a name or a colour.
"""

from __future__ import annotations

from dataclasses import dataclass

TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"


@dataclass(frozen=True)
class Structure:
    """One segmented structure.

    Attributes:
        value: label value in labelmaps (0 is background).
        key: short machine name used in file names and reports.
        name: human-readable segment name.
        color: RGB in 0..1, as Slicer segment colours.
        snomed_code: SNOMED CT code of the anatomical structure.
        snomed_meaning: the code's meaning, as shown in Slicer's terminology.
    """

    value: int
    key: str
    name: str
    color: tuple[float, float, float]
    snomed_code: str
    snomed_meaning: str

    @property
    def terminology(self) -> str:
        """Slicer terminology entry: context~category~type~type modifier~anatomic context~region~modifier."""
        category = "SCT^123037004^Anatomical Structure"
        kind = f"SCT^{self.snomed_code}^{self.snomed_meaning}"
        return f"{TERMINOLOGY_CONTEXT}~{category}~{kind}~^^~Anatomic codes - DICOM master list~^^~^^"


STRUCTURES: tuple[Structure, ...] = (
    Structure(1, "SC", "Spinal canal", (0.49, 0.78, 0.95), "53120007", "Spinal canal"),
    Structure(2, "VB", "Vertebrae", (0.95, 0.84, 0.57), "51282000", "Vertebra"),
    Structure(3, "IVD", "Intervertebral discs", (0.41, 0.83, 0.45), "3177009", "Intervertebral disc"),
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
