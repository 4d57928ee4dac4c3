"""The level report: what the report, the CSV files and Slicer's levels table say about each vertebra and disc.

The one place for the level kinds (:data:`KINDS`: report list, structure of the label table), their order from
the sacrum up, the fields of an entry (:class:`LevelEntry`: which kinds carry each measure, and when; what each
measure is, the formulas of those derived from others and why one is null are in :mod:`.conventions`), the levels
part of the report (:class:`LevelReport`, whose ``to_dict`` is the report's JSON), and both CSV files
(:data:`LEVELS_CSV`, :data:`SLICES_CSV`: one row rule, one writer). Positions are model-space pixels ``(row,
column)`` as measured, or patient coordinates (LPS, mm) after :meth:`LevelReport.in_patient_space`, as reported.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..labels import LEVEL_TYPES, Structure, by_key, terminology_entry
from .conventions import CONVENTIONS, CSV_COLUMNS, NOT_MEASURED, NOT_SEGMENTED, UNKNOWN, reasons_text
from .conventions import HEIGHT_KEYS as HEIGHT_KEYS
from .conventions import height_index as height_index
from .conventions import mean_height as mean_height
from .reading import READING, disc_reading

VERTEBRA, DISC = "vertebra", "disc"


class LevelKind(NamedTuple):
    """One kind of level: its name, the report list it is filed under, its structure in the label table."""

    name: str
    group: str
    structure: Structure


KINDS = (LevelKind(VERTEBRA, "vertebrae", by_key("VB")), LevelKind(DISC, "discs", by_key("IVD")))
"""In the order the report lists them."""
KIND_NAMES = tuple(kind.name for kind in KINDS)


def level_kind(name: str) -> LevelKind:
    """The kind called ``name``; ``ValueError`` for anything else."""
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise ValueError(f"level kind {name!r} is not one of {list(KIND_NAMES)}")


def structure_of(kind: str) -> Structure:
    """The label table's structure a level of this kind is part of (its colour, its generic type code)."""
    return level_kind(kind).structure


def level_terminology(kind: str, name: str) -> str:
    """Terminology entry of one named level (``kind`` ``"vertebra"`` or ``"disc"``, ``name`` e.g. ``"L4"``): the
    vertebra's own code from :data:`~SpineSegDiffLib.labels.LEVEL_TYPES`, else its structure's."""
    if kind == VERTEBRA and name in LEVEL_TYPES:
        return terminology_entry(LEVEL_TYPES[name])
    return structure_of(kind).terminology


def bottom_up_position(kind: str, from_bottom: int) -> int:
    """Anatomical order from the sacrum up: S1 = 0, L5/S1 = 1, L5 = 2, L4/L5 = 3, ... (disc n is under vertebra n)."""
    return 2 * from_bottom - (kind == DISC)


SEGMENTED, ALWAYS, GRADED = "segmented", "always", "graded"
"""When an entry of a kind that carries a measure has it: once segmented, always, once graded."""
BOTH = KIND_NAMES


def _measure(kinds: tuple[str, ...], present: str) -> Any:
    return field(default=None, metadata={"kinds": kinds, "present": present})


Point, Line = tuple[float, ...], tuple[tuple[float, ...], ...]
ToPatient = Callable[[float, float], Sequence[float]]
"""``(row, column)`` of the slice in pixels -> patient coordinates (LPS, mm)."""


@dataclass(frozen=True)
class LevelEntry:
    """One vertebra or disc of the report: identity, position, measurement lines, then the measures in report
    order (units: :data:`~.conventions.CONVENTIONS`).

    ``label_value``: in the level labelmap, None for a level inferred but not segmented; ``centroid``: ``(row,
    column)`` pixels, or ``(x, y, z)`` LPS mm when ``in_patient``; ``lines``: the end points of each length, named
    as its key without ``_mm``; ``graded``: the grade keys are reported (None without a grading model);
    ``not_measured``: why a measure is None (``{key: reason}``; :meth:`reasons` gives every null measure one)."""

    kind: str
    name: str
    from_bottom: int
    label_value: int | None = None
    centroid: Point = ()
    lines: Mapping[str, Line] = field(default_factory=dict)
    in_patient: bool = False
    graded: bool = False
    not_measured: Mapping[str, str] = field(default_factory=dict)
    anterior_height_mm: float | None = _measure(BOTH, SEGMENTED)
    middle_height_mm: float | None = _measure(BOTH, SEGMENTED)
    posterior_height_mm: float | None = _measure(BOTH, SEGMENTED)
    depth_mm: float | None = _measure((VERTEBRA,), SEGMENTED)
    mean_height_mm: float | None = _measure((DISC,), SEGMENTED)
    dural_sac_ap_diameter_mm: float | None = _measure((DISC,), SEGMENTED)
    mean_uncertainty: float | None = _measure(BOTH, ALWAYS)
    height_index: float | None = _measure((DISC,), ALWAYS)
    slip_mm: float | None = _measure((DISC,), ALWAYS)
    slip_percent: float | None = _measure((DISC,), ALWAYS)
    meyerding_grade: int | None = _measure((DISC,), ALWAYS)
    slip_reference: str | None = _measure((DISC,), ALWAYS)
    pfirrmann_grade: int | None = _measure((DISC,), GRADED)
    pfirrmann_probabilities: tuple[float, ...] | None = _measure((DISC,), GRADED)
    narrowing_probability: float | None = _measure((DISC,), GRADED)
    modic_probability: float | None = _measure((DISC,), GRADED)

    def __post_init__(self) -> None:
        """Refuse an unknown kind; keep the probabilities as a tuple, whatever sequence they came as."""
        level_kind(self.kind)
        if self.pfirrmann_probabilities is not None:
            object.__setattr__(self, "pfirrmann_probabilities", tuple(self.pfirrmann_probabilities))

    @property
    def segmented(self) -> bool:
        return self.label_value is not None

    def measures(self) -> dict[str, Any]:
        """The measures this entry reports, in report order (None where a value is not defined)."""
        shown = {ALWAYS: True, SEGMENTED: self.segmented, GRADED: self.graded}
        return {m.name: getattr(self, m.name) for m in MEASURES
                if self.kind in m.metadata["kinds"] and shown[m.metadata["present"]]}

    def reasons(self) -> dict[str, str]:
        """Why each measure this entry reports as None is None, in report order (the level is not segmented, or
        the reason recorded in ``not_measured``)."""
        fallback = UNKNOWN if self.segmented else NOT_SEGMENTED
        return {key: self.not_measured.get(key, fallback) for key, value in self.measures().items() if value is None}

    def to_dict(self) -> dict[str, Any]:
        """The report's entry: ``name``, ``from_bottom``, ``segmented``, ``label_value``, the measures, then
        ``centroid_lps_mm`` and ``lines_lps_mm`` (lists); in pixels ``centroid_px`` comes before the measures
        and ``lines_px`` (tuples) after them; last :data:`~.conventions.NOT_MEASURED` (:meth:`reasons`). A disc's
        measures end with its :data:`~.reading.READING`, the line to paste into a report draft."""
        head = {"name": self.name, "from_bottom": self.from_bottom, "segmented": self.segmented,
                "label_value": self.label_value}
        measures = {key: list(value) if isinstance(value, tuple) else value for key, value in self.measures().items()}
        if self.kind == DISC:
            measures[READING] = disc_reading({"name": self.name, **measures})
        why = {NOT_MEASURED: self.reasons()}
        if self.in_patient:
            lines = {name: [list(point) for point in line] for name, line in self.lines.items()}
            return head | measures | {"centroid_lps_mm": list(self.centroid), "lines_lps_mm": lines} | why
        pixels = {"lines_px": dict(self.lines)} if self.lines else {}
        return head | {"centroid_px": self.centroid} | measures | pixels | why

    @classmethod
    def from_dict(cls, kind: str, entry: Mapping[str, Any]) -> LevelEntry:
        """The entry of a report (:meth:`to_dict` of either form); ``ValueError`` for a key it does not know."""
        space = "lps_mm" if "centroid_lps_mm" in entry else "px"
        unknown = set(entry) - {"name", "from_bottom", "segmented", "label_value", f"centroid_{space}",
                                f"lines_{space}", NOT_MEASURED, READING} - {m.name for m in MEASURES}
        segmented = entry.get("label_value") is not None
        if unknown or entry.get("segmented", segmented) != segmented:
            raise ValueError(f"level {entry.get('name')!r}: unknown keys {sorted(unknown)}, or segmented "
                             f"{entry.get('segmented')} with label value {entry.get('label_value')}")
        lines = {name: tuple(tuple(point) for point in line) for name, line in entry.get(f"lines_{space}", {}).items()}
        return cls(kind, entry["name"], entry["from_bottom"], entry.get("label_value"),
                   tuple(entry.get(f"centroid_{space}", ())), lines, space == "lps_mm",
                   any(m.name in entry for m in GRADES), dict(entry.get(NOT_MEASURED) or {}),
                   **{m.name: entry.get(m.name) for m in MEASURES})

    def in_patient_space(self, to_patient: ToPatient) -> LevelEntry:
        """The entry with its centroid and line end points mapped from pixels to patient coordinates."""
        if self.in_patient:
            return self
        lines = {name: tuple(tuple(to_patient(*point)) for point in line) for name, line in self.lines.items()}
        return replace(self, centroid=tuple(to_patient(*self.centroid)), lines=lines, in_patient=True)

    def with_grades(self, grades: Mapping[str, Any] | None) -> LevelEntry:
        """The entry graded with ``grades`` (a grader's values by key; None for every grade it lacks)."""
        return replace(self, graded=True, **{m.name: (grades or {}).get(m.name) for m in GRADES})


MEASURES = tuple(f for f in fields(LevelEntry) if f.metadata)
"""The measure fields of :class:`LevelEntry` (``name``, ``metadata["kinds"]``, ``metadata["present"]``)."""
GRADES = tuple(f for f in MEASURES if f.metadata["present"] == GRADED)
TABLE_KEYS = ("anterior_height_mm", "middle_height_mm", "posterior_height_mm", "mean_height_mm", "depth_mm",
              "height_index", "dural_sac_ap_diameter_mm", "slip_mm", "slip_percent", "meyerding_grade",
              "pfirrmann_grade", "narrowing_probability", "modic_probability", "mean_uncertainty")
TABLE_COLUMNS = (("From bottom", "from_bottom"), *((CONVENTIONS[key].column, key) for key in TABLE_KEYS))
"""The number columns of Slicer's levels table, in its order: ``(title, entry key)``, units in the titles."""


@dataclass(frozen=True)
class LevelReport:
    """The report's levels part: the vertebrae and the discs, each bottom-up, why the naming is uncertain, and
    every naming rule applied (:attr:`~.levels.Levels.rules`)."""

    vertebrae: tuple[LevelEntry, ...] = ()
    discs: tuple[LevelEntry, ...] = ()
    naming_reasons: tuple[str, ...] = ()
    naming_rules: tuple[str, ...] = ()

    @property
    def naming_uncertain(self) -> bool:
        return bool(self.naming_reasons)

    def bottom_up(self) -> list[LevelEntry]:
        """Every entry in anatomical order (:func:`bottom_up_position`)."""
        return sorted((*self.vertebrae, *self.discs), key=lambda e: bottom_up_position(e.kind, e.from_bottom))

    def entry_lists(self) -> dict[str, list[dict]]:
        """``{"vertebrae": [...], "discs": [...]}`` of :meth:`LevelEntry.to_dict`."""
        return {kind.group: [entry.to_dict() for entry in getattr(self, kind.group)] for kind in KINDS}

    def to_dict(self) -> dict[str, Any]:
        """The report's keys ``naming_uncertain``, ``naming_reasons``, ``naming_rules``, ``vertebrae``, ``discs``."""
        return {"naming_uncertain": self.naming_uncertain, "naming_reasons": list(self.naming_reasons),
                "naming_rules": list(self.naming_rules), **self.entry_lists()}

    @classmethod
    def from_dict(cls, report: Mapping[str, Any]) -> LevelReport:
        """The levels part of a report, or of a whole report (``naming_uncertain`` is that reasons are given)."""
        entries = {kind.group: tuple(LevelEntry.from_dict(kind.name, e) for e in report.get(kind.group) or [])
                   for kind in KINDS}
        return cls(naming_reasons=tuple(report.get("naming_reasons") or ()),
                   naming_rules=tuple(report.get("naming_rules") or ()), **entries)

    def in_patient_space(self, to_patient: ToPatient) -> LevelReport:
        """Every position mapped from pixels to patient coordinates (:meth:`LevelEntry.in_patient_space`)."""
        return replace(self, vertebrae=tuple(v.in_patient_space(to_patient) for v in self.vertebrae),
                       discs=tuple(d.in_patient_space(to_patient) for d in self.discs))


def kind_entries(levels: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """``(kind, entry)`` of every entry of a report's levels part (or a whole report), vertebrae then discs, each
    list in the report's order; entries may be partial (e.g. only ``name`` and ``label_value``)."""
    return [(kind.name, entry) for kind in KINDS for entry in levels.get(kind.group) or []]


def level_rows(levels: Mapping[str, Any]) -> list[dict]:
    """The entries of a report's levels part, bottom-up (S1, L5/S1, L5, L4/L5, ...), each with its ``kind``."""
    rows = [{**entry, "kind": kind} for kind, entry in kind_entries(levels)]
    return sorted(rows, key=lambda row: bottom_up_position(row["kind"], row["from_bottom"]))


@dataclass(frozen=True)
class CsvLayout:
    """The leading columns of one CSV file: ``kind_column`` holds the level kind (``"structure"`` in the levels CSV
    as it has always been written, ``"kind"`` everywhere else), the others the row's context (e.g. its slice) or
    entry values; :func:`flat` gives the rest."""

    head: tuple[str, ...]
    kind_column: str


LEVELS_CSV = CsvLayout(("structure", "name", "from_bottom"), kind_column="structure")
"""``<stem>_levels.csv``: one row per level of the report, vertebrae then discs."""
SLICES_CSV = CsvLayout(("slice_index", "model_slice", "name", "kind", "from_bottom"), kind_column="kind")
"""``<stem>_levels_per_slice.csv``: one row per (slice, level), slices in order, levels bottom-up."""
PIXEL_KEYS = ("centroid_px", "lines_px")
"""Model-space pixel positions: never written to a file (the report's positions are in patient coordinates)."""


def flat(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The CSV values of one entry: scalars (NumPy scalars as Python numbers; None is an empty cell), lists joined by
    ``;`` (probabilities, patient coordinates) and the reasons of :data:`~.conventions.NOT_MEASURED` as one text
    (:func:`~.conventions.reasons_text`); other nested values (the measurement lines) and :data:`PIXEL_KEYS` are left
    out; a key of :data:`~.conventions.CSV_COLUMNS` goes under its column there (an experimental measure says so)."""
    row = {}
    for key, value in entry.items():
        if key == NOT_MEASURED:
            row[key] = reasons_text(value)
        elif key not in PIXEL_KEYS and not isinstance(value, Mapping):
            row[CSV_COLUMNS.get(key, key)] = (";".join(map(str, value)) if isinstance(value, (list, tuple))
                                              else value.item() if isinstance(value, np.generic) else value)
    return row


def csv_row(layout: CsvLayout, kind: str, entry: Mapping[str, Any], **context: Any) -> dict[str, Any]:
    """One CSV row: ``layout``'s leading columns (the kind, else ``context``'s or the entry's value), then
    :func:`flat`."""
    head = {column: kind if column == layout.kind_column else context[column] if column in context else entry[column]
            for column in layout.head}
    return head | flat(entry)


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """The rows as CSV; the columns are the union of the rows' keys in first-seen order (the reasons of
    :data:`~.conventions.NOT_MEASURED` last), and a value a row lacks is left empty."""
    columns = sorted(dict.fromkeys(key for row in rows for key in row), key=lambda column: column == NOT_MEASURED)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def write_levels_csv(levels: Mapping[str, Any], path: Path) -> None:
    """The levels CSV of a report's levels part (:data:`LEVELS_CSV`)."""
    write_csv([csv_row(LEVELS_CSV, kind, entry) for kind, entry in kind_entries(levels)], path)


write_slice_levels_csv = write_csv
"""The per-slice CSV of :func:`~.volume_levels.measure_slices`' rows (:data:`SLICES_CSV`)."""
