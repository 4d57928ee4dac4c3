"""Checks of the lowest levels for :func:`~.levels.find_levels`: what the field of view cuts, whether the
sacrum is in view, and the signs of a lumbosacral transitional vertebra.

Each check appends to ``reasons`` (why the naming is uncertain) when it fires, and to ``rules`` (every
naming rule that was applied, with its outcome) whenever it applies. Distances are in millimetres,
converted with the slice's pixel size, so that a model folder with another spacing keeps the same rules.
"""

from __future__ import annotations

import numpy as np

from .instances import Part, thickness

SACRUM_MARGIN_MM = 15.0
"""The field of view must extend this far below the lowest disc to call it L5/S1 with confidence."""
EDGE_MARGIN_MM = 3.0
"""A level ending this close to the field of view's lower edge may be cut off by it."""
CUT_OFF_REASON = ("the lowest vertebra touches the lower edge of the image: it may be cut off, and every name may be "
                  "shifted")


def drop_cut_discs(parts: list[Part], field_rows: np.ndarray, reasons: list[str]) -> list[Part]:
    """Leave out discs cut by the top or bottom of the field of view (incomplete, not measurable)."""
    if len(field_rows) == 0:
        return parts
    kept = []
    for part in parts:
        rows = np.flatnonzero(part.mask.any(axis=1))
        if part.kind == "disc" and (rows[0] <= field_rows[0] or rows[-1] >= field_rows[-1]):
            reasons.append(f"a disc cut by the field of view at row {part.centroid[0]:.0f} is not named")
        else:
            kept.append(part)
    return kept


def flag_merged_discs(parts: list[Part], reasons: list[str]) -> None:
    """A disc more than 2.5 times as thick as the median disc probably spans two levels."""
    discs = [p for p in parts if p.kind == "disc"]
    if len(discs) < 3:
        return
    typical = np.median([thickness(p.mask) for p in discs])
    for part in discs:
        if thickness(part.mask) > 2.5 * typical:
            reasons.append(f"the disc at row {part.centroid[0]:.0f} looks merged with another level")


def rows_of(part: Part) -> np.ndarray:
    """Rows that ``part`` covers (empty for a virtual part)."""
    return np.flatnonzero(part.mask.any(axis=1))


def at_lower_edge(part: Part, field_rows: np.ndarray, spacing_mm: float) -> bool:
    """Whether ``part`` ends within :data:`EDGE_MARGIN_MM` of the field of view's lower edge."""
    rows = rows_of(part)
    return len(rows) > 0 and (len(field_rows) == 0 or field_rows[-1] - rows[-1] < EDGE_MARGIN_MM / spacing_mm)


def check_lower_edge(sequence: list[Part], field_rows: np.ndarray, spacing_mm: float, reasons: list[str],
                     rules: list[str]) -> bool:
    """Flag a lowest vertebra cut off by the image's lower edge (it might be L5 taken for the sacrum).

    Returns whether it is cut off."""
    lowest = next((p for p in sequence if p.kind == "vertebra" and p.mask.any()), None)
    if lowest is None or not at_lower_edge(lowest, field_rows, spacing_mm):
        return False
    reasons.append(CUT_OFF_REASON)
    rules.append(f"cut-off rule: the lowest vertebra ends within {EDGE_MARGIN_MM:g} mm of the image's lower edge")
    return True


def check_anchor(sequence: list[Part], field_rows: np.ndarray, spacing_mm: float, reasons: list[str],
                 rules: list[str]) -> None:
    """Record how the lowest level was named, and flag a sacrum that cannot be confirmed."""
    bottom = sequence[0]
    if bottom.kind == "vertebra":
        rules.append("sacrum rule: a vertebra below the lowest disc is taken as the sacrum (S1)")
        return
    rules.append("sacrum rule: no sacrum segmented, so the lowest disc is taken as L5/S1")
    rows = rows_of(bottom)
    if len(rows) and (len(field_rows) == 0 or field_rows[-1] - rows[-1] < SACRUM_MARGIN_MM / spacing_mm):
        reasons.append("the field of view ends under the lowest disc: the sacrum is not in view")
        rules.append(f"field-of-view rule: less than {SACRUM_MARGIN_MM:g} mm of image below the lowest disc")


def check_sacrum_shape(sequence: list[Part], cut_off: bool, reasons: list[str], rules: list[str]) -> None:
    """A bottom vertebra (taken as the sacrum) less than 1.3 times as tall as the bodies above it is not
    sacrum-shaped: a missing L5/S1 disc or a transitional vertebra. Not judged when it is cut off."""
    bottom = sequence[0]
    bodies = [p for p in sequence[1:] if p.kind == "vertebra" and p.mask.any()]
    if bottom.kind != "vertebra" or not bottom.mask.any() or not bodies or cut_off:
        return
    typical = float(np.median([np.ptp(rows_of(p)) for p in bodies]))
    height = float(np.ptp(rows_of(bottom)))
    transitional = height < 1.3 * typical
    rules.append(f"transitional vertebra rule (sacrum shape): the lowest vertebra is {height / typical:.2f} times as "
                 f"tall as the bodies above (under 1.3 flags it): {'flagged' if transitional else 'sacrum-shaped'}")
    if transitional:
        reasons.append("the lowest vertebra is not sacrum-shaped: missing L5/S1 disc or transitional vertebra")


def check_lowest_disc(sequence: list[Part], reasons: list[str], rules: list[str]) -> None:
    """A lowest disc (the first level above the sacrum) less than half as thick as the one above it is
    rudimentary: a possible lumbosacral transitional vertebra, flagged, never renamed."""
    discs = [p for p in sequence if p.kind == "disc" and p.mask.any()]
    if not (len(discs) >= 2 and discs[0] is sequence[int(sequence[0].kind == "vertebra")]):
        return
    ratio = thickness(discs[0].mask) / max(thickness(discs[1].mask), 1e-6)
    rudimentary = ratio < 0.5
    rules.append(f"transitional vertebra rule (disc thickness): the lowest disc is {ratio:.2f} times as thick as "
                 f"the one above (under 0.5 flags it): {'flagged' if rudimentary else 'not rudimentary'}")
    if rudimentary:
        reasons.append("the lowest disc is rudimentary: possible lumbosacral transitional vertebra")


def check_bottom(sequence: list[Part], field_rows: np.ndarray, spacing_mm: float, reasons: list[str],
                 rules: list[str]) -> None:
    """Every check of the lowest levels, in order (``sequence`` bottom-up, alternating)."""
    if not sequence[0].mask.any():
        return
    check_anchor(sequence, field_rows, spacing_mm, reasons, rules)
    cut_off = check_lower_edge(sequence, field_rows, spacing_mm, reasons, rules)
    check_sacrum_shape(sequence, cut_off, reasons, rules)
    check_lowest_disc(sequence, reasons, rules)
