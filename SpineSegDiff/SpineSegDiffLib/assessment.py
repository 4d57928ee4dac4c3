"""Per-level assessment of one sagittal slice: names, measurements and disc grades, as report rows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .levels import find_levels
from .measurements import measure_levels

GRADE_KEYS = ("pfirrmann_grade", "pfirrmann_probabilities", "narrowing_probability", "modic_probability")


def assess_slice(image: np.ndarray, labels: np.ndarray, heatmap: np.ndarray | None = None, grader=None,
                 spacing_mm: float = 1.0) -> dict:
    """Levels of one model-space slice, bottom-up.

    Args:
        image: ``(H, W)`` model-space intensities (0..255).
        labels: uint8 ``(H, W)`` labelmap.
        heatmap: optional ``(H, W)`` uncertainty in 0..1.
        grader: optional :class:`~.grading.DiscGrader`; without it the grade keys are None.
        spacing_mm: the slice's (isotropic) pixel size.

    Returns:
        ``{"naming_uncertain", "naming_reasons", "vertebrae": [...], "discs": [...]}`` (see
        :func:`~.measurements.measure_levels` for the measurement keys).
    """
    levels = find_levels(labels, image, spacing_mm)
    measured = measure_levels(levels, labels, heatmap, spacing_mm)
    grades = grader.grade(image, labels, levels) if grader is not None else {}
    for disc in measured["discs"]:
        disc.update(grades.get(disc["from_bottom"], dict.fromkeys(GRADE_KEYS)))
    return {"naming_uncertain": levels.naming_uncertain, "naming_reasons": list(levels.reasons), **measured}


def write_levels_csv(assessment: dict, path: Path) -> None:
    """One row per vertebra and disc (bottom-up), every key as a column; probabilities joined by ``;``."""
    rows = [{"structure": "vertebra", **v} for v in assessment["vertebrae"]]
    rows += [{"structure": "disc", **d} for d in assessment["discs"]]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ";".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()})
