"""Calibrating the disc grader: a temperature for the Pfirrmann head and the abstain threshold, from
patient-grouped cross-validated (out-of-fold) predictions over every graded patient.

The heads are refitted as the bundled ``model.json`` chose them (kind, features, L2) on the discs of the ground-truth
masks (all slices of the training folds, as ``spinesegdiff-train grading`` fits), and scored on the central slice of
the held-out patients. The temperature minimises the pooled out-of-fold log loss (:func:`fit_temperature`); the
threshold is the least top probability at which the graded discs' top grade is right at least half of the time
(:func:`abstain_threshold`); the expected calibration error (:func:`expected_calibration_error`) before and after
comes with patient-bootstrap intervals. :func:`write_calibration` records both numbers and how they were found in the
grader folder's ``config.json`` (not covered by its checksums: ``model.json`` is left as it is).

Run: ``python -m SpineSegDiffTraining.grading_calibration DATA WORK MODEL_FOLDER``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from SpineSegDiffLib.anatomy.calibration import CALIBRATION_KEY, tempered

BINS = 10
LEAST_GRADED = 10
"""Fewest discs graded at a threshold for its accuracy to count."""


def log_loss(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """Mean negative log probability of the true class (``truth``: 0-based class per row)."""
    picked = probabilities[np.arange(len(truth)), truth.astype(int)]
    return float(-np.mean(np.log(np.clip(picked, 1e-12, None))))


def fit_temperature(probabilities: np.ndarray, truth: np.ndarray) -> float:
    """The temperature (0.2-5, to 0.01) minimising :func:`log_loss` of :func:`tempered` probabilities."""
    grid = np.exp(np.linspace(np.log(0.2), np.log(5.0), 400))
    losses = [log_loss(tempered(probabilities, t), truth) for t in grid]
    return round(float(grid[int(np.argmin(losses))]), 2)


def expected_calibration_error(probabilities: np.ndarray, truth: np.ndarray, bins: int = BINS) -> float:
    """Top-label ECE: over equal-width bins of the top probability, the disc-weighted mean gap between the bin's
    mean top probability and the accuracy of its top grades."""
    top, right = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    which = np.minimum((top * bins).astype(int), bins - 1)
    gaps = [abs(top[which == b].mean() - right[which == b].mean()) * (which == b).sum()
            for b in range(bins) if (which == b).any()]
    return float(np.sum(gaps) / len(truth))


def abstain_threshold(probabilities: np.ndarray, truth: np.ndarray, floor: float = 0.5) -> float:
    """The least top probability ``t`` (to 0.01) at which the discs graded (top probability >= ``t``, at least
    :data:`LEAST_GRADED` of them) have their top grade right at least ``floor`` of the time: the most discs graded
    while a given grade is more often right than wrong; 0 when all discs already are."""
    top, right = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    for t in np.round(np.arange(0.0, 1.0, 0.01), 2):
        kept = top >= t
        if kept.sum() >= LEAST_GRADED and right[kept].mean() >= floor:
            return float(t)
    return 1.0


def coverage(probabilities: np.ndarray, truth: np.ndarray, threshold: float) -> dict[str, float]:
    """Fraction of discs graded at ``threshold``, the accuracy on them and on those abstained."""
    top, right = probabilities.max(axis=1), probabilities.argmax(axis=1) == truth
    kept = top >= threshold
    return {"coverage": round(float(kept.mean()), 3),
            "accuracy_graded": round(float(right[kept].mean()), 3) if kept.any() else None,
            "accuracy_abstained": round(float(right[~kept].mean()), 3) if (~kept).any() else None}


def bootstrap_interval(statistic, patients: np.ndarray, draws: int = 1000, seed: int = 0) -> list[float]:
    """95 % percentile interval of ``statistic(rows)`` over patient-bootstrap resamples (rows: index array)."""
    rng = np.random.default_rng(seed)
    ids = np.unique(patients)
    by_patient = {p: np.flatnonzero(patients == p) for p in ids}
    values = [statistic(np.concatenate([by_patient[p] for p in rng.choice(ids, len(ids))])) for _ in range(draws)]
    return [round(float(v), 3) for v in np.percentile(values, [2.5, 97.5])]


def calibration_summary(probabilities: np.ndarray, truth: np.ndarray, patients: np.ndarray) -> dict:
    """Temperature, threshold, coverage and ECE/log loss before and after, with patient-bootstrap 95 % CIs."""
    temperature = fit_temperature(probabilities, truth)
    calibrated = tempered(probabilities, temperature)
    threshold = abstain_threshold(calibrated, truth)
    summary = {"temperature": temperature, "abstain_below": threshold, "discs": len(truth),
               "patients": len(np.unique(patients)), **coverage(calibrated, truth, threshold)}
    for name, p in (("before", probabilities), ("after", calibrated)):
        summary[f"ece_{name}"] = round(expected_calibration_error(p, truth), 3)
        summary[f"ece_{name}_95ci"] = bootstrap_interval(lambda r, p=p: expected_calibration_error(p[r], truth[r]),
                                                         patients)
        summary[f"log_loss_{name}"] = round(log_loss(p, truth), 3)
        summary[f"median_top_probability_{name}"] = round(float(np.median(p.max(axis=1))), 3)
    return summary


def write_calibration(folder: Path, summary: dict, method: str) -> dict:
    """Put ``summary`` (with ``method``: how it was found) into ``folder/config.json``'s calibration block."""
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config[CALIBRATION_KEY] = {**summary, "method": method}
    path.write_text(json.dumps(config, indent=2) + "\n")
    return config[CALIBRATION_KEY]


METHOD = ("temperature scaling (softmax of log p / T) fitted by out-of-fold log loss; 5-fold patient-grouped "
          "cross-validation over all graded SPIDER T2 patients, heads refitted as model.json chose them on the "
          "ground-truth masks, central slice scored; abstain threshold: least top probability at which the "
          "graded discs' top grade is right >= 50 % of the time (>= 10 discs graded); "
          "ECE: 10 equal-width bins, 1000 patient bootstraps")


def out_of_fold(data: Path, work: Path, model_folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(probabilities (N, 5), grade 0..4, patient)`` out of fold on the central slice of every patient."""
    from .grading import FEATURE_SETS, GRADINGS_FILE, cross_validated, disc_samples, patient_number, read_gradings
    from .workspace import open_workspace

    model = json.loads((model_folder / "model.json").read_text())
    choice = {head: (model[head].get("kind", "binary") if head == "pfirrmann" else "binary",
                     next(n for n, names in FEATURE_SETS.items() if list(names) == model[head]["features"]),
                     model[head]["l2"]) for head in ("pfirrmann", "narrowing", "modic")}
    workspace = open_workspace(work, 2)
    cases, _, files = workspace.prepare(data)
    ids = sorted(c.case_id for c in cases)
    samples = disc_samples(files, ids, read_gradings(data / GRADINGS_FILE))
    patients = sorted({patient_number(c) for c in ids})
    folds = [patients[i::5] for i in range(5)]
    predicted, truth = cross_validated(samples, folds, choice)
    return predicted["pfirrmann"], truth["grade"].astype(int), truth["patient"]


def main(argv: list[str]) -> None:
    """``DATA WORK MODEL_FOLDER``: calibrate and write into the model folder's config.json; prints the summary."""
    data, work, folder = map(Path, argv)
    summary = calibration_summary(*out_of_fold(data, work, folder))
    print(json.dumps(write_calibration(folder, summary, METHOD), indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
