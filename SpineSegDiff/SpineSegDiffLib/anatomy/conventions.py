"""What each measure of the level report is: its name, unit and definition, the formulas of the measures derived from
others, and why a measure that could not be taken is null.

:data:`CONVENTIONS` holds, per entry key, the convention the measure follows (the README's table of measures is
:func:`conventions_table`); :mod:`.report` says which kinds of level carry each measure and when. A measure that
could not be taken is null (None in the JSON, an empty cell in the CSV files), never a 0.0 that a reader would take
for a value, and the entry's :data:`NOT_MEASURED` mapping says why: ``{measure key: reason}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

HEIGHT_KEYS = ("anterior_height_mm", "middle_height_mm", "posterior_height_mm")


def mean_height(heights: Sequence[float]) -> float:
    """A disc's mean height (mm, to 0.1 mm): the mean of its :data:`HEIGHT_KEYS` values, in that order."""
    return round(float(np.mean(heights)), 1)


def height_index(mean_height_mm: float | None, depth_above_mm: float | None) -> float | None:
    """A disc's height index, to 0.001: its mean height over the depth of the body above it (the vertebra with the
    same ``from_bottom``); None when either is unknown (None, NaN) or zero."""
    known = all(v is not None and v != 0 and not math.isnan(v) for v in (mean_height_mm, depth_above_mm))
    return round(mean_height_mm / depth_above_mm, 3) if known else None


class Convention(NamedTuple):
    """One measure: its title (Slicer's table column, with the unit when that is mm or %), unit and definition."""

    title: str
    unit: str
    definition: str

    @property
    def column(self) -> str:
        return f"{self.title} ({self.unit})" if self.unit in ("mm", "%") else self.title


EXPERIMENTAL = "(experimental)"
"""Marks a measure whose validation is too weak to rely on, in its title (Slicer's column) and CSV column."""
DURAL_SAC_WALK_MM = 80.0
"""How far behind a disc's centre the dural sac is looked for."""
LISTHESIS_PERCENT = 10.0
"""Anterior slip (% of the reference endplate) from which a level is graded Meyerding I; below it, grade 0."""
MAX_SLIP_PERCENT = 100.0
"""A slip beyond a whole endplate (spondyloptosis) on one slice is far likelier a segmentation error: refused."""
_AT = "across the level (along its short axis; a vertebral body takes the mean axis of its adjacent discs), through"
CONVENTIONS: Mapping[str, Convention] = {
    "anterior_height_mm": Convention("Anterior height", "mm", f"extent {_AT} the point 10 % of its depth from its "
                                     "anterior edge"),
    "middle_height_mm": Convention("Middle height", "mm", f"extent {_AT} the middle of its depth"),
    "posterior_height_mm": Convention("Posterior height", "mm", f"extent {_AT} the point 90 % of its depth from its "
                                      "anterior edge"),
    "depth_mm": Convention("Depth", "mm", "anteroposterior extent of a vertebral body along the mean long axis of its "
                           "adjacent discs"),
    "mean_height_mm": Convention("Mean height", "mm", "mean of a disc's anterior, middle and posterior heights"),
    "dural_sac_ap_diameter_mm": Convention(
        "Dural sac AP diameter", "mm", "anteroposterior width of the dural sac at a disc: the first run of "
        "spinal-canal-label pixels (the CSF-filled thecal sac, SNOMED 'Spinal cerebrospinal fluid pathway') met "
        f"walking posterior from the disc's centre along its long axis, within {DURAL_SAC_WALK_MM:.0f} mm; the sac, "
        "not the bony canal (epidural fat and ligaments are left out)"),
    "mean_uncertainty": Convention("Mean uncertainty", "0-1", "mean of the uncertainty heatmap (normalised entropy) "
                                   "over the level's pixels"),
    "height_index": Convention("Height index", "ratio", "a disc's mean height over the depth of the vertebral body "
                               "above it (Frobin et al., Clin Biomech 12 Suppl 1, 1997)"),
    "slip_mm": Convention("Slip", "mm", "how far the posterior wall of the body above the disc lies anterior to the "
                          "posterior wall of the body below at their shared disc, along the disc (each wall placed "
                          "at its endplate by the median over the rows 10-35 % of the body's height from it); "
                          "positive for anterolisthesis, negative for retrolisthesis"),
    "slip_percent": Convention("Slip", "%", "the slip over the length of the reference endplate (the superior "
                               "endplate of the body below; Meyerding 1932)"),
    "meyerding_grade": Convention("Meyerding grade", "grade 0-4", f"0 below {LISTHESIS_PERCENT:.0f} % anterior slip "
                                  f"(within the measure's spread on discs radiologists graded free of listhesis), "
                                  "then I up to 25 %, II to 50 %, III to 75 %, IV to 100 %; retrolisthesis is not "
                                  "graded (see the signed slip)"),
    "slip_reference": Convention("Slip reference", "text", "the endplate the slip was measured on: the superior "
                                 "endplate of the body below, or at L5/S1 without a segmented sacrum the disc's lower "
                                 "surface standing for S1's"),
    "pfirrmann_grade": Convention("Pfirrmann grade", "grade 1-5", "the most probable Pfirrmann grade; null "
                                  "(uncertain) when its calibrated probability is below the grader's abstain "
                                  "threshold, and no grades at all when the level naming is uncertain"),
    "pfirrmann_probabilities": Convention("Pfirrmann probabilities", "probability", "the grading model's "
                                          "calibrated (temperature-scaled) probabilities of Pfirrmann grades 1 to 5"),
    "narrowing_probability": Convention("Narrowing probability", "probability", "the grading model's probability "
                                        "that the disc is narrowed"),
    "modic_probability": Convention(f"Modic probability {EXPERIMENTAL}", "probability", "EXPERIMENTAL: the "
                                    "grading model's probability of a Modic change next to the disc, from the T2 "
                                    "image alone (held-out AUROC 0.64 on 10 positive discs: not for clinical use)"),
}
"""The convention of every measure of :class:`~.report.LevelEntry`, by entry key, in report order."""


def conventions_table() -> str:
    """The measures as a Markdown table (key, unit, definition), as the README gives it."""
    rows = [f"| `{key}` | {c.unit} | {c.definition} |" for key, c in CONVENTIONS.items()]
    return "\n".join(["| key | unit | definition |", "|---|---|---|", *rows])


NOT_MEASURED = "not_measured"
"""The entry key of why each null measure of the entry is null: ``{measure key: reason}``."""
NOT_SEGMENTED = "the level is not segmented: its place is inferred from its neighbours"
NO_HEATMAP = "no uncertainty heatmap was given"
NO_GRADER = "no disc grading model was loaded"
NO_DURAL_SAC = (f"no dural sac (spinal canal label) on the line from the disc's centre posterior along its long axis "
                f"within {DURAL_SAC_WALK_MM:.0f} mm")
CSV_COLUMNS: Mapping[str, str] = {"modic_probability": "modic_probability_experimental"}
"""The CSV column of an entry key when it differs from the key (experimental measures say so in their header)."""


def naming_uncertain(reasons: Sequence[str]) -> str:
    """Why no disc is graded: the level naming is uncertain (``reasons``: the report's ``naming_reasons``)."""
    return "level naming uncertain: " + "; ".join(reasons)


def grade_uncertain(top_probability: float, threshold: float) -> str:
    """Why a disc's Pfirrmann grade is null although graded: its top (calibrated) probability is too low."""
    return f"uncertain (top probability {top_probability:.2f} < {threshold:.2f})"


def meyerding_grade(slip_percent: float | None) -> int | None:
    """Meyerding grade of an anterior slip (``slip_percent``, % of the reference endplate): 0 below
    :data:`LISTHESIS_PERCENT` (and for any retrolisthesis), I up to 25 %, II to 50 %, III to 75 %, IV to 100 %."""
    if slip_percent is None:
        return None
    return 0 if slip_percent < LISTHESIS_PERCENT else min(4, math.ceil(slip_percent / 25.0))


def slip_refused(slip_percent: float, reference_fraction: float, min_fraction: float) -> str | None:
    """Why a measured slip is not reported: beyond :data:`MAX_SLIP_PERCENT` either way, or measured on a reference
    endplate under ``min_fraction`` of the upper body's (``reference_fraction``); None when it is plausible."""
    if abs(slip_percent) > MAX_SLIP_PERCENT:
        return (f"implausible slip ({slip_percent:.0f} % of the endplate below): more likely a segmentation error "
                "than a spondyloptosis; check the image")
    if reference_fraction < min_fraction:
        return (f"the endplate below is {reference_fraction:.0%} as long as the one above: not whole on this slice, "
                "so the slip cannot be put in proportion")
    return None


UNKNOWN = "not measured"
"""For a null measure whose entry records no reason (an entry made by hand)."""


def body_not_segmented(where: str, name: str) -> str:
    """Why a disc's relation to one of its vertebral bodies (``where``: ``"above"`` or ``"below"``) is null."""
    return f"the vertebral body {where} ({name}) is not segmented on this slice"


def reasons_text(reasons: Mapping[str, str]) -> str:
    """``{measure key: reason}`` as one CSV cell or table cell: ``"key: reason; key: reason"``."""
    return "; ".join(f"{key}: {reason}" for key, reason in reasons.items())
