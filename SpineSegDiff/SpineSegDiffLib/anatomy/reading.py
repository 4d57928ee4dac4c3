"""A disc's findings as one line a radiologist can paste into a report draft.

Built from the measures of one level entry (:class:`~.report.LevelEntry`), in the order a reader dictates them: the
Pfirrmann grade with its calibrated probability (or "uncertain" with the top probability when the grader abstained),
the probability of narrowing, the slip with its Meyerding grade, the dural sac's anteroposterior diameter. The Modic
probability is left out: it is experimental (see :mod:`.conventions`). A measure that was not taken is left out, so
the line never states what was not measured.

Example: ``"L4/L5: Pfirrmann 3 (52 %); narrowing 71 %; anterolisthesis Meyerding I (12 %, 4.1 mm); dural sac 11.2
mm AP"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ROMAN = ("0", "I", "II", "III", "IV")
READING = "reading"
"""The key of a disc's line in the report's entries and the CSV files."""


def grade_text(grade: int | None, probabilities: list[float] | tuple[float, ...] | None) -> str | None:
    """``"Pfirrmann 3 (52 %)"``, ``"Pfirrmann uncertain (3: 38 %)"`` when the grader abstained, None ungraded."""
    if not probabilities:
        return None
    top = max(range(len(probabilities)), key=lambda k: probabilities[k])
    if grade is None:
        return f"Pfirrmann uncertain ({top + 1}: {probabilities[top]:.0%})".replace("%", " %")
    return f"Pfirrmann {grade} ({probabilities[grade - 1]:.0%})".replace("%", " %")


def slip_text(grade: int | None, percent: float | None, mm: float | None) -> str | None:
    """``"anterolisthesis Meyerding I (12 %, 4.1 mm)"``, ``"no anterolisthesis"`` below grade I, None unmeasured."""
    if grade is None or percent is None or mm is None:
        return None
    if grade == 0:
        return "no anterolisthesis"
    return f"anterolisthesis Meyerding {ROMAN[grade]} ({percent:.0f} %, {mm:.1f} mm)"


def disc_reading(entry: Mapping[str, Any]) -> str:
    """One disc's findings (the keys of a report entry) as one line, its name first."""
    narrowing = entry.get("narrowing_probability")
    sac = entry.get("dural_sac_ap_diameter_mm")
    parts = [grade_text(entry.get("pfirrmann_grade"), entry.get("pfirrmann_probabilities")),
             None if narrowing is None else f"narrowing {narrowing:.0%}".replace("%", " %"),
             slip_text(entry.get("meyerding_grade"), entry.get("slip_percent"), entry.get("slip_mm")),
             None if sac is None else sac_text(sac)]
    findings = "; ".join(p for p in parts if p)
    return f"{entry['name']}: {findings or 'not measured'}"


def sac_text(diameter_mm: float) -> str:
    """``"dural sac 11.2 mm AP"``."""
    return f"dural sac {diameter_mm:.1f} mm AP"


def with_dural_sac(reading: str, diameter_mm: float) -> str:
    """``reading`` with its dural sac diameter replaced (a reader moved the line in Slicer), or added at the end."""
    replaced, count = re.subn(r"dural sac [0-9.]+ mm AP", sac_text(diameter_mm), reading)
    if count:
        return replaced
    name, _, findings = reading.partition(": ")
    kept = "" if findings == "not measured" else findings
    return f"{name}: {'; '.join(p for p in (kept, sac_text(diameter_mm)) if p)}"
