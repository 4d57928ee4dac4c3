"""Per-level assessment of one sagittal slice: names, measurements and disc grades, as report rows."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .levels import Levels, find_levels
from .measurements import measure_levels

GRADE_KEYS = ("pfirrmann_grade", "pfirrmann_probabilities", "narrowing_probability", "modic_probability")
ToPatient = Callable[[float, float], tuple[float, ...]]
"""``(row, column)`` of the slice in pixels -> patient coordinates (LPS, mm)."""


def assess_slice(image: np.ndarray, labels: np.ndarray, heatmap: np.ndarray | None = None, grader=None,
                 spacing_mm: float = 1.0, to_patient: ToPatient | None = None) -> dict:
    """Levels of one model-space slice, bottom-up: :func:`~.levels.find_levels`, then :func:`assess_levels`."""
    return assess_levels(find_levels(labels, image, spacing_mm), image, labels, heatmap, grader, spacing_mm,
                         to_patient)


def assess_levels(levels: Levels, image: np.ndarray, labels: np.ndarray, heatmap: np.ndarray | None = None,
                  grader=None, spacing_mm: float = 1.0, to_patient: ToPatient | None = None) -> dict:
    """Measurements and grades of the named levels of one model-space slice.

    Args:
        levels: from :func:`~.levels.find_levels` on ``labels``.
        image: ``(H, W)`` model-space intensities (0..255).
        labels: uint8 ``(H, W)`` labelmap.
        heatmap: optional ``(H, W)`` uncertainty in 0..1.
        grader: optional :class:`~.grading.DiscGrader`; without it the grade keys are None.
        spacing_mm: the slice's (isotropic) pixel size.
        to_patient: maps pixel positions to patient coordinates; with it, each level's ``centroid_px``
            and ``lines_px`` become ``centroid_lps_mm`` and ``lines_lps_mm`` (points ``[x, y, z]``).

    Returns:
        ``{"naming_uncertain", "naming_reasons", "vertebrae": [...], "discs": [...]}`` (see
        :func:`~.measurements.measure_levels` for the measurement keys).
    """
    measured = measure_levels(levels, labels, heatmap, spacing_mm)
    grades = grader.grade(image, labels, levels, measured["discs"]) if grader is not None else {}
    for disc in measured["discs"]:
        disc.update(grades.get(disc["from_bottom"], dict.fromkeys(GRADE_KEYS)))
    if to_patient is not None:
        for entry in measured["vertebrae"] + measured["discs"]:
            to_patient_coordinates(entry, to_patient)
    return {"naming_uncertain": levels.naming_uncertain, "naming_reasons": list(levels.reasons), **measured}


def to_patient_coordinates(entry: dict, to_patient: ToPatient) -> None:
    """Replace ``centroid_px`` / ``lines_px`` of one level by ``centroid_lps_mm`` / ``lines_lps_mm``."""
    entry["centroid_lps_mm"] = list(to_patient(*entry.pop("centroid_px")))
    lines = entry.pop("lines_px", {})
    entry["lines_lps_mm"] = {name: [list(to_patient(*point)) for point in line] for name, line in lines.items()}


def write_levels_csv(assessment: dict, path: Path) -> None:
    """One row per vertebra and disc (bottom-up), every key as a column; lists (probabilities, coordinates)
    joined by ``;``; the measurement lines (nested) are left to the report."""
    rows = [{"structure": "vertebra", **flat(v)} for v in assessment["vertebrae"]]
    rows += [{"structure": "disc", **flat(d)} for d in assessment["discs"]]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ";".join(map(str, v)) if isinstance(v, (list, tuple)) else v for k, v in row.items()})


def flat(entry: dict) -> dict:
    """The entry without its nested (dict-valued) keys."""
    return {key: value for key, value in entry.items() if not isinstance(value, dict)}
