"""``spinesegdiff-train grading``: select, train, evaluate and bundle the disc grader.

Samples: on the central model-space slice of every case and the slices around it (:data:`OFFSETS`),
the ground-truth discs are split and counted from the bottom with :func:`SpineSegDiffLib.levels.find_levels`,
described by :func:`SpineSegDiffLib.grading.slice_features` and matched to ``radiological_gradings.csv``
by (patient, ``IVD label`` = ``from_bottom``).

Model selection uses only the training/validation patients: every candidate (model kind, feature set,
penalty; :data:`GRADE_CANDIDATES`, :data:`FLAG_CANDIDATES`) is cross-validated over the patient-wise
folds of ``splits.json`` (trained on all slices of four folds, scored on the central slice of the
fifth), and the best pooled kappa (grade) or AUROC (flags) wins. The winner is refitted on all
training/validation patients and evaluated once on the test patients (central slice). The
cross-validation table goes to ``WORK/grading/selection.json`` and the test metrics to
``WORK/grading/metrics.json``. The stage takes well under a minute on a CPU and every fit is
deterministic, so a rerun (nothing to resume) rebuilds the same model.
"""

from __future__ import annotations

import csv
import json
import re
from itertools import product
from pathlib import Path

import numpy as np

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.grading import FEATURE_NAMES, predict_heads, slice_features, standardise
from SpineSegDiffLib.levels import find_levels

from .grading_fit import fit_binary, fit_multinomial, fit_ordinal, standardiser
from .grading_report import evaluation_metrics, grade_scores, write_bundle
from .metrics import auroc
from .prepare import load_case

GRADINGS_FILE = "radiological_gradings.csv"
OFFSETS = (-2, -1, 0, 1, 2)
FEATURE_SETS = {
    "all": FEATURE_NAMES,
    "compact": ("level", "core_csf", "core_to_bodies", "disc_to_bodies", "core_minus_rim_csf", "spread_csf",
                "bright_fraction", "dark_fraction", "middle_height_mm", "posterior_height_mm", "height_index",
                "wedge", "depth_mm", "median_relative_mean", "relative_core"),
}
"""Named feature subsets the selection tries (``compact``: one or two features per Pfirrmann criterion)."""
GRADE_CANDIDATES = tuple(product(("ordinal", "multinomial"), FEATURE_SETS, (0.03, 0.1, 0.3)))
"""``(kind, feature set, l2)`` of every Pfirrmann model tried."""
FLAG_CANDIDATES = tuple(product(FEATURE_SETS, (0.01, 0.03, 0.1, 0.3)))
"""``(feature set, l2)`` of every flag model tried."""
GRADE_FITS = {"ordinal": fit_ordinal, "multinomial": fit_multinomial}


def patient_number(case_id: str) -> int:
    """``spider_005`` or ``5_t2`` -> 5."""
    match = re.search(r"\d+", case_id)
    if not match:
        raise SpineSegDiffError(f"case {case_id} has no patient number to match the gradings")
    return int(match.group())


def read_gradings(path: Path) -> dict[tuple[int, int], tuple[int, int, int]]:
    """``(patient, IVD label) -> (Pfirrmann grade, narrowing 0/1, Modic change 0/1)``."""
    if not path.is_file():
        raise SpineSegDiffError(f"no {GRADINGS_FILE} at {path}", "pass --gradings or put it into the data folder")
    with open(path, newline="") as stream:
        return {(int(r["Patient"]), int(r["IVD label"])):
                (int(r["Pfirrman grade"]), int(r["Disc narrowing"]), int(int(r["Modic"]) > 0))
                for r in csv.DictReader(stream)}


def case_samples(path: Path, patient: int, table: dict, offsets=OFFSETS) -> list[tuple]:
    """``(features (F,), grade 0..4, narrowing, modic, patient, offset)`` of every graded disc of one case."""
    image, labels = load_case(path)
    samples = []
    for offset in offsets:
        k = len(image) // 2 + offset
        if not 0 <= k < len(image):
            continue
        numbers, features = slice_features(image[k], labels[k], find_levels(labels[k], image[k]))
        for number, row in zip(numbers, features):
            if (patient, number) in table:
                grade, narrowing, modic = table[(patient, number)]
                samples.append((row, grade - 1, narrowing, modic, patient, offset))
    return samples


def disc_samples(files: dict[str, Path], case_ids: list[str], table: dict, offsets=OFFSETS) -> dict[str, np.ndarray]:
    """``features`` ``(N, len(FEATURE_NAMES))``, ``grade`` (0..4), ``narrowing``, ``modic``, ``patient`` and
    ``offset`` ``(N,)`` of every graded disc on the chosen slices of ``case_ids``."""
    rows = [s for case_id in case_ids for s in case_samples(files[case_id], patient_number(case_id), table, offsets)]
    keys = ("features", "grade", "narrowing", "modic", "patient", "offset")
    columns = list(zip(*rows)) if rows else [[] for _ in keys]
    samples = {key: np.array(values, float) for key, values in zip(keys, columns)}
    samples["features"] = samples["features"].reshape(len(rows), len(FEATURE_NAMES))
    samples["height_index"] = samples["features"][:, FEATURE_NAMES.index("height_index")]
    return samples


def subset(samples: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {key: value[keep] for key, value in samples.items()}


def fit_head(samples: dict[str, np.ndarray], target: str, kind: str, feature_set: str, l2: float) -> dict:
    """One head fitted on ``samples``: a grade model (``kind`` ordinal/multinomial) or a flag (``kind`` binary)."""
    names = FEATURE_SETS[feature_set]
    columns = samples["features"][:, [FEATURE_NAMES.index(n) for n in names]]
    scaling = standardiser(columns)
    x = standardise(columns, scaling)
    fit = GRADE_FITS[kind](x, samples["grade"], l2) if kind in GRADE_FITS else fit_binary(x, samples[target], l2)
    return {**fit, "features": list(names), "scaling": scaling, "l2": l2}


def fit_model(samples: dict[str, np.ndarray], choice: dict) -> dict:
    """All three heads (``choice``: ``{head: (kind, feature set, l2)}``) fitted on ``samples``."""
    return {head: fit_head(samples, head, *choice[head]) for head in ("pfirrmann", "narrowing", "modic")}


def cross_validated(samples: dict[str, np.ndarray], folds: list[list[int]], choice: dict) -> tuple[dict, dict]:
    """Out-of-fold ``(predictions, truths)`` on the central slice of each fold's patients, pooled in fold
    order: predictions as :func:`~SpineSegDiffLib.grading.predict_heads`, truths as :func:`disc_samples`."""
    predicted, truths = [], []
    for fold in folds:
        held_out = np.isin(samples["patient"], fold)
        model = fit_model(subset(samples, ~held_out), choice)
        truths.append(subset(samples, held_out & (samples["offset"] == 0)))
        predicted.append(predict_heads(model, truths[-1]["features"]))
    return ({key: np.concatenate([p[key] for p in predicted]) for key in predicted[0]},
            {key: np.concatenate([t[key] for t in truths]) for key in truths[0]})


def select(samples: dict[str, np.ndarray], folds: list[list[int]]) -> tuple[dict, list[dict]]:
    """The best ``{head: (kind, feature set, l2)}`` by cross-validation, and the table of every candidate:
    grade models by pooled quadratic kappa (then log loss), flags by pooled AUROC."""
    default_flag = ("binary", "compact", 0.1)
    grade_rows = []
    for kind, feature_set, l2 in GRADE_CANDIDATES:
        choice = {"pfirrmann": (kind, feature_set, l2), "narrowing": default_flag, "modic": default_flag}
        predicted, truth = cross_validated(samples, folds, choice)
        grade_rows.append({"head": "pfirrmann", "kind": kind, "features": feature_set, "l2": l2,
                           **grade_scores(predicted["pfirrmann"], truth["grade"])})
    winner = max(grade_rows, key=lambda row: (row["quadratic_kappa"], -row["log_loss"]))
    best = {"pfirrmann": (winner["kind"], winner["features"], winner["l2"])}
    flag_rows = []
    for feature_set, l2 in FLAG_CANDIDATES:
        flag = ("binary", feature_set, l2)
        predicted, truth = cross_validated(samples, folds, {"pfirrmann": best["pfirrmann"], "narrowing": flag,
                                                            "modic": flag})
        flag_rows += [{"head": head, "kind": "binary", "features": feature_set, "l2": l2,
                       "auroc": round(auroc(predicted[head], truth[head].astype(bool)), 3)}
                      for head in ("narrowing", "modic")]
    for head in ("narrowing", "modic"):
        winner = max((row for row in flag_rows if row["head"] == head), key=lambda row: row["auroc"])
        best[head] = ("binary", winner["features"], winner["l2"])
    return best, grade_rows + flag_rows


def run_grading(workspace, args) -> dict:
    """Prepare, select by cross-validation, fit, evaluate on the test patients, bundle into
    ``args.out/disc-grading-t2``."""
    _, splits, files = workspace.prepare(args.data, args.folds)
    table = read_gradings(Path(args.data) / GRADINGS_FILE)
    run_dir = workspace.root / "grading"
    training = disc_samples(files, splits.train_val, table)
    folds = [[patient_number(c) for c in fold] for fold in splits.folds]
    choice, candidates = select(training, folds)
    cv_predicted, cv_truth = cross_validated(training, folds, choice)
    model = fit_model(training, choice)
    test = disc_samples(files, splits.test, table, offsets=(0,))
    metrics = evaluation_metrics(predict_heads(model, test["features"]), test)
    metrics |= {"cross_validation": evaluation_metrics(cv_predicted, cv_truth),
                "training_samples": len(training["grade"]), "cross_validation_discs": len(cv_truth["grade"]),
                "test_discs": len(test["grade"]), "test_cases": splits.test}
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "selection.json").write_text(json.dumps({"choice": choice, "candidates": candidates}, indent=2) + "\n")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_bundle(model, Path(args.out) / "disc-grading-t2", metrics, candidates)
    return metrics
