"""Vertebral levels on a sagittal slice: split VB and IVD labels into instances and name them.

Works on one model-space slice (superior up = row 0, anterior left = column 0). Naming is anchored at
the sacrum and walks upward using the anatomy, not a plain count:

* the spinal canal (SC) is the posterior guide: VB components posterior to it are posterior
  elements (spinous processes, laminae; SPIDER's vertebra label includes them) and are left out,
  as are "discs" behind it;
* discs and vertebral bodies must alternate from the bottom up; two bodies in a row mean a missing
  disc, two discs in a row a missing body, and a gap of about two disc spacings a whole missing level
  (e.g. two discs merged through an unsegmented body): virtual levels are inserted so that the names
  above stay right, and the naming is flagged;
* the lowest level: a VB component below the lowest disc is the sacrum (S1). When there is none (the
  SPIDER annotations leave the sacrum unlabelled) the lowest disc is L5/S1 provided the field of view
  extends below it; if the image ends right under it, the sacrum is not in view and names are
  flagged uncertain;
* a lowest disc much thinner than the one above suggests a lumbosacral transitional vertebra;
* a lowest vertebra that reaches the image's lower edge may be cut off (an image ending mid-L5 would
  otherwise take L5 for the sacrum and shift every name): flagged.

The checks of the lowest levels are in :mod:`.naming_checks`; every rule applied is listed in
:attr:`Levels.rules`. Thresholds are areas and lengths in millimetres, converted with ``spacing_mm``.

Vertebrae count ``from_bottom`` as SPIDER's vertebra labels do (L5 = 1, the sacrum 0); discs as
SPIDER's gradings (L5/S1 = 1). Names assume five lumbar vertebrae; without the whole spine in view no
method can check that, and a transitional anatomy is only flagged, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..labels import by_key
from .instances import (
    MIN_VERTEBRA_AREA_MM2,
    Part,
    anterior_parts,
    canal_columns,
    make_part,
    merge_fragments,
    split_bodies_at_discs,
)
from .naming_checks import check_bottom, drop_cut_discs, flag_merged_discs

VERTEBRA_NAMES = ("S1", "L5", "L4", "L3", "L2", "L1", *(f"T{i}" for i in range(12, 0, -1)),
                  *(f"C{i}" for i in range(7, 0, -1)))
"""Index = ``from_bottom`` (S1 = 0, L5 = 1, ...)."""
MIN_DISC_AREA_MM2 = 30.0
LEVEL_SPACING_MM = 35.0
"""Distance between consecutive discs assumed when fewer than two discs or bodies are found."""

MAX_PARTS = 80
"""More vertebra and disc pieces than this on one slice (a whole spine has about 50) is not anatomy."""


def vertebra_name(from_bottom: int) -> str:
    """``0 -> "S1"``, ``1 -> "L5"``, ... ``6 -> "T12"``; ``"V<n>"`` beyond the cervical spine."""
    return VERTEBRA_NAMES[from_bottom] if 0 <= from_bottom < len(VERTEBRA_NAMES) else f"V{from_bottom}"


def disc_name(from_bottom: int) -> str:
    """``1 -> "L5/S1"``, ``2 -> "L4/L5"``, ``6 -> "T12/L1"``."""
    return f"{vertebra_name(from_bottom)}/{vertebra_name(from_bottom - 1)}"


@dataclass(frozen=True)
class Level:
    """One named vertebra or disc.

    Attributes:
        kind: ``"vertebra"`` or ``"disc"``.
        name: e.g. ``"L4"`` or ``"L4/L5"``.
        from_bottom: disc: 1 = L5/S1; vertebra: 0 = sacrum, 1 = L5.
        instance: its value in :attr:`Levels.instances`; 0 for a level inferred from the anatomy
            but not segmented (``missing``).
        centroid: ``(row, column)`` in pixels; interpolated for a missing level.
    """

    kind: str
    name: str
    from_bottom: int
    instance: int
    centroid: tuple[float, float]

    @property
    def missing(self) -> bool:
        return self.instance == 0


@dataclass
class Levels:
    """Named levels of one slice, bottom-up; ``instances`` is an int32 ``(H, W)`` instance map."""

    instances: np.ndarray
    vertebrae: list[Level]
    discs: list[Level]
    reasons: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    """Every naming rule applied, with its outcome (:mod:`.naming_checks`), whether or not it flagged."""

    @property
    def naming_uncertain(self) -> bool:
        return bool(self.reasons)

    def mask(self, level: Level) -> np.ndarray:
        """Boolean ``(H, W)`` mask of one level (empty for a missing one)."""
        return self.instances == level.instance if level.instance else np.zeros(self.instances.shape, bool)


def level_spacing(parts: list[Part], default: float) -> float:
    """Median row distance between consecutive discs (or vertebrae when fewer than 2 discs)."""
    for kind in ("disc", "vertebra"):
        rows = sorted(p.centroid[0] for p in parts if p.kind == kind)
        if len(rows) >= 2:
            return float(np.median(np.diff(rows)))
    return default


def steps_between(lower: Part, upper: Part, spacing: float) -> int:
    """How many half-level steps separate two consecutive parts, respecting disc/body alternation."""
    gap = (lower.centroid[0] - upper.centroid[0]) / spacing
    if lower.kind == upper.kind:
        return max(2, 2 * int(np.floor(gap + 0.5)))
    return max(1, 2 * int(np.floor(gap - 0.5 + 0.5)) + 1)


def alternate(parts: list[Part], spacing: float, reasons: list[str]) -> list[Part]:
    """Insert virtual parts (empty masks) so that discs and bodies alternate; ``parts`` bottom-up."""
    sequence: list[Part] = []
    other = {"disc": "vertebra", "vertebra": "disc"}
    for part in parts:
        if sequence:
            lower = sequence[-1]
            steps = steps_between(lower, part, spacing)
            for k in range(1, steps):
                t = k / steps
                centroid = tuple(float(a + t * (b - a)) for a, b in zip(lower.centroid, part.centroid))
                kind = other[sequence[-1].kind]
                sequence.append(Part(kind, np.zeros_like(part.mask), centroid))
                reasons.append(f"a {kind} expected at row {centroid[0]:.0f} is not segmented")
        sequence.append(part)
    return sequence


def drop_sacral_disc(sequence: list[Part], reasons: list[str], rules: list[str]) -> list[Part]:
    """Drop a lowest disc that has no vertebral body above it before the next disc: with the sacrum
    unlabelled, that is the rudimentary S1/S2 disc inside the sacrum, not L5/S1."""
    if len(sequence) > 2 and sequence[0].kind == "disc" and not sequence[1].mask.any():
        reasons.remove(next(r for r in reasons if r.startswith("a vertebra expected")))
        reasons.append(f"a disc-like structure at row {sequence[0].centroid[0]:.0f} below the lowest vertebral "
                       "body was taken as the rudimentary S1/S2 disc")
        rules.append("S1/S2 disc rule: a lowest disc with no vertebral body above it is left out as the "
                     "rudimentary S1/S2 disc")
        return sequence[2:]
    return sequence


def trim_below_lumbosacral(parts: list[Part], reasons: list[str], rules: list[str]) -> list[Part]:
    """Under the lowest full-size vertebral body (at least half the median body area) the first disc
    is L5/S1 and what lies below it is sacrum: its pieces labelled as vertebra become one S1 part and
    further disc-like pieces (the rudimentary S1/S2 disc) are dropped. ``parts`` bottom-up."""
    bodies = [p for p in parts if p.kind == "vertebra"]
    if len(bodies) < 3:
        return parts
    typical = np.median([p.mask.sum() for p in bodies])
    lowest = next(i for i, p in enumerate(parts) if p.kind == "vertebra" and p.mask.sum() >= 0.5 * typical)
    below = parts[:lowest]
    discs = [i for i, p in enumerate(below) if p.kind == "disc"]
    keep = [below[discs[-1]]] if discs else []
    if len(discs) > 1:
        reasons.append("disc-like pieces inside the sacrum (below L5/S1) were left out")
    sacrum = [p for p in below if p.kind == "vertebra" and (not discs or p.centroid[0] > below[discs[-1]].centroid[0])]
    if sacrum:
        sacrum = [make_part("vertebra", np.logical_or.reduce([p.mask for p in sacrum]))]
    if len(below) > len(keep):
        rules.append("lumbosacral rule: the first disc under the lowest full-size body (half the median body area) "
                     "is L5/S1; vertebra pieces below it are the sacrum")
    return sacrum + keep + parts[lowest:]


def find_levels(labels: np.ndarray, image: np.ndarray | None = None, spacing_mm: float = 1.0) -> Levels:
    """Split and name the levels of one sagittal slice.

    Args:
        labels: uint8 ``(H, W)`` labelmap (SC/VB/IVD values), row 0 superior, column 0 anterior.
        image: optional ``(H, W)`` intensities; rows that are all zero are outside the field of view.
        spacing_mm: pixel size (model space: 1 mm by default; a model folder may set another). Every
            threshold is an area or a length in millimetres, converted with it.

    Returns:
        :class:`Levels` with vertebrae and discs ordered bottom-up, the reasons the naming is
        uncertain (empty when it is not) and the naming rules applied.
    """
    reasons: list[str] = []
    rules: list[str] = []
    canal = canal_columns(labels, spacing_mm)
    if canal is None:
        reasons.append("no spinal canal: posterior elements cannot be told from vertebral bodies")
    area = spacing_mm**2
    parts = (anterior_parts(labels, by_key("IVD").value, "disc", MIN_DISC_AREA_MM2, canal, area)
             + anterior_parts(labels, by_key("VB").value, "vertebra", MIN_VERTEBRA_AREA_MM2, canal, area))
    if len(parts) > MAX_PARTS:
        return Levels(np.zeros(labels.shape, np.int32), [], [],
                      [f"{len(parts)} separate vertebra and disc pieces: too fragmented to name levels"])
    field_rows = np.flatnonzero((image > 0).any(axis=1)) if image is not None else np.arange(labels.shape[0])
    spacing = level_spacing(parts, default=LEVEL_SPACING_MM / spacing_mm)
    parts = merge_fragments(split_bodies_at_discs(merge_fragments(parts, spacing), area), spacing)
    parts = trim_below_lumbosacral(drop_cut_discs(parts, field_rows, reasons), reasons, rules)
    flag_merged_discs(parts, reasons)
    if not parts:
        return Levels(np.zeros(labels.shape, np.int32), [], [], ["no vertebra or disc found"])
    sequence = drop_sacral_disc(alternate(parts, spacing, reasons), reasons, rules)
    if any(not part.mask.any() for part in sequence):
        rules.append("alternation rule: discs and bodies alternate; unsegmented levels are inserted to keep the "
                     "names above them")
    check_bottom(sequence, field_rows, spacing_mm, reasons, rules)
    return name_sequence(sequence, labels.shape, reasons, rules)


def name_sequence(sequence: list[Part], shape: tuple[int, int], reasons: list[str],
                  rules: list[str] | None = None) -> Levels:
    """Number the alternating bottom-up sequence; a vertebra at the bottom is the sacrum."""
    instances = np.zeros(shape, np.int32)
    vertebrae, discs = [], []
    offset = 0 if sequence[0].kind == "vertebra" else 1
    for position, part in enumerate(sequence, start=offset):
        instance = 0
        if part.mask.any():
            instance = int(instances.max()) + 1
            instances[part.mask] = instance
        if part.kind == "vertebra":
            vertebrae.append(Level("vertebra", vertebra_name(position // 2), position // 2, instance, part.centroid))
        else:
            number = (position + 1) // 2
            discs.append(Level("disc", disc_name(number), number, instance, part.centroid))
    return Levels(instances, vertebrae, discs, reasons, list(rules or []))
