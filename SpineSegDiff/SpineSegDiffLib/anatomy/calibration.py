"""Calibrated Pfirrmann probabilities and when the grader abstains.

The grade head's probabilities are temperature-scaled (:func:`tempered`: the softmax of ``log p / T``; ``T > 1``
softens over-confident probabilities, ``T < 1`` sharpens them), and the most probable grade is reported only
when its calibrated probability reaches the abstain threshold; below it the grade is null, "uncertain", with the
probabilities still reported. Both numbers come from the grader folder's ``config.json`` (``"calibration"``:
``temperature``, ``abstain_below`` and how they were chosen, written by ``python -m
SpineSegDiffTraining.grading_calibration`` from patient-grouped cross-validated predictions); ``config.json`` is
not covered by the folder's checksums, so recalibrating leaves ``model.json`` untouched. A folder without that
block is used uncalibrated (``T = 1``) and never abstains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from .conventions import grade_uncertain

CALIBRATION_KEY = "calibration"
"""The block of the grader's ``config.json`` holding :class:`Calibration`."""


def tempered(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``(N, K)`` probabilities scaled by ``temperature``: rows of ``softmax(log p / T)``, summing to 1."""
    logits = np.log(np.clip(np.asarray(probabilities, float), 1e-12, None)) / temperature
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


class Calibration(NamedTuple):
    """The grade head's temperature and the least top probability at which a grade is given."""

    temperature: float = 1.0
    abstain_below: float = 0.0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Calibration:
        """The ``"calibration"`` block of a grader's ``config.json`` (the identity without one)."""
        block = config.get(CALIBRATION_KEY) or {}
        return cls(float(block.get("temperature", 1.0)), float(block.get("abstain_below", 0.0)))

    def grade(self, probabilities: np.ndarray, grades: tuple[int, ...]) -> tuple[int | None, str | None]:
        """``(grade, None)`` for calibrated ``(K,)`` probabilities, or ``(None, why)`` when the top one is below
        :attr:`abstain_below`."""
        top = float(np.max(probabilities))
        if top < self.abstain_below:
            return None, grade_uncertain(top, self.abstain_below)
        return grades[int(np.argmax(probabilities))], None
