"""Per-level assessment of one sagittal slice: names, measurements and disc grades, gathered into the report's
levels part (:class:`~.report.LevelReport`; its CSV and coordinate mapping are there too)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .contrast import not_t2
from .conventions import NO_GRADER, naming_uncertain
from .levels import Levels, find_levels
from .measurements import measure_report
from .report import GRADES, LevelEntry, LevelReport, ToPatient


def assess_slice(image: np.ndarray, labels: np.ndarray, heatmap: np.ndarray | None = None, grader=None,
                 spacing_mm: float = 1.0, to_patient: ToPatient | None = None) -> dict:
    """Levels of one model-space slice, bottom-up: :func:`~.levels.find_levels`, then :func:`assess_levels`."""
    return assess_levels(find_levels(labels, image, spacing_mm), image, labels, heatmap, grader, spacing_mm,
                         to_patient)


def assess_levels(levels: Levels, image: np.ndarray, labels: np.ndarray, heatmap: np.ndarray | None = None,
                  grader=None, spacing_mm: float = 1.0, to_patient: ToPatient | None = None) -> dict:
    """Measurements and grades of the named levels of one model-space slice, as the report gives them.

    Args:
        levels: from :func:`~.levels.find_levels` on ``labels``.
        image: ``(H, W)`` model-space intensities (0..255).
        labels: uint8 ``(H, W)`` labelmap.
        heatmap: optional ``(H, W)`` uncertainty in 0..1.
        grader: optional :class:`~.grading.DiscGrader`; without it the grade keys are None (with the reason).
        spacing_mm: the slice's (isotropic) pixel size.
        to_patient: maps pixel positions to patient coordinates; with it, each level's ``centroid_px``
            and ``lines_px`` become ``centroid_lps_mm`` and ``lines_lps_mm`` (points ``[x, y, z]``).

    Returns:
        :meth:`~.report.LevelReport.to_dict` of :func:`assess_report`: ``{"naming_uncertain", "naming_reasons",
        "vertebrae": [...], "discs": [...]}`` (see :func:`~.measurements.measure_levels` for the measurement keys).
    """
    return assess_report(levels, image, labels, heatmap, grader, spacing_mm, to_patient).to_dict()


def assess_report(levels: Levels, image: np.ndarray, labels: np.ndarray, heatmap: np.ndarray | None = None,
                  grader=None, spacing_mm: float = 1.0, to_patient: ToPatient | None = None) -> LevelReport:
    """:func:`assess_levels` as a typed :class:`~.report.LevelReport`: measured, graded, then mapped to patient
    coordinates when ``to_patient`` is given."""
    measured = measure_report(levels, labels, heatmap, spacing_mm)
    discs = [disc.to_dict() for disc in measured.discs]
    refused = naming_uncertain(measured.naming_reasons) if measured.naming_uncertain else not_t2(image, labels)
    grades = grader.grade(image, labels, levels, discs) if grader is not None and not refused else {}
    graded = replace(measured, discs=tuple(graded_disc(disc, grades, grader is not None, refused)
                                           for disc in measured.discs))
    return graded.in_patient_space(to_patient) if to_patient is not None else graded


def graded_disc(disc: LevelEntry, grades: dict[int, dict], have_grader: bool, refused: str | None = None) -> LevelEntry:
    """The disc with its grades from ``grades`` (by ``from_bottom``) and the grader's reasons for a null one (an
    abstained grade); segmented discs say why their grades are None without a grader, or when grading was
    ``refused`` (the reason: the level naming is uncertain, or the image does not look T2-weighted)."""
    reason = NO_GRADER if not have_grader else refused
    why = {m.name: reason for m in GRADES} if reason and disc.segmented else {}
    given = grades.get(disc.from_bottom) or {}
    return replace(disc.with_grades(given), not_measured={**disc.not_measured, **given.get("not_measured", {}), **why})
