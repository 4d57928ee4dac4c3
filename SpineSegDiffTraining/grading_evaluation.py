"""The disc grader evaluated out of fold over every graded SPIDER T2 patient, beside two baselines.

``python -m SpineSegDiffTraining.grading_evaluation DATA WORK MODEL_FOLDER [--repeats 10] [--out bench/results]``

The heads are those ``model.json`` chose (kind, features, penalty); they are refitted in repeated patient-grouped
5-fold cross-validation (each repeat shuffles the patients into new folds, trains on every slice of four folds and
predicts the central slice of the fifth). The out-of-fold predictions of every repeat are pooled (each disc
counted once per repeat); the Pfirrmann probabilities are then tempered with the grader's calibration
(:mod:`~SpineSegDiffLib.anatomy.calibration`; its temperature was fitted on the same patients' out-of-fold
predictions, so the calibration error is slightly optimistic). Every metric comes with a 95 % patient-bootstrap
interval (discs of one patient are not independent) and its spread over the repeats.

Baselines, fitted in the same folds: **always grade 3** (the most common grade), and **level only** (each level's
grade distribution, narrowing and Modic rates in the training folds: what the disc's position alone predicts).
Writes ``grading_evaluation.json`` and ``.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from SpineSegDiffLib.anatomy.calibration import Calibration, tempered

from .grading_calibration import bootstrap_interval, expected_calibration_error, log_loss
from .grading_report import quadratic_kappa
from .metrics import auroc

GRADES = 5
COMMON_GRADE = 2
"""Index of Pfirrmann grade 3, the most common grade in SPIDER's gradings."""
HEADS = ("pfirrmann", "narrowing", "modic")


def model_choice(model: dict) -> dict:
    """``{head: (kind, feature set, l2)}`` as ``model.json`` chose them."""
    from .grading import FEATURE_SETS

    return {head: (model[head].get("kind", "binary") if head == "pfirrmann" else "binary",
                   next(n for n, names in FEATURE_SETS.items() if list(names) == model[head]["features"]),
                   model[head]["l2"]) for head in HEADS}


def disc_order(truth: dict[str, np.ndarray]) -> np.ndarray:
    """Indices sorting discs by (patient, level), so that every repeat lists them in one order."""
    return np.lexsort((truth["level"], truth["patient"]))


def level_only(train: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per test disc, its level's grade distribution (add-one smoothed) and flag rates in ``train``."""
    probabilities, rates = [], {flag: [] for flag in ("narrowing", "modic")}
    for level in test["level"]:
        same = train["level"] == level
        counts = np.bincount(train["grade"][same].astype(int), minlength=GRADES) + 1.0
        probabilities.append(counts / counts.sum())
        for flag in rates:
            rates[flag].append((train[flag][same].sum() + 0.5) / (same.sum() + 1.0))
    return {"pfirrmann": np.array(probabilities), **{flag: np.array(v) for flag, v in rates.items()}}


def one_repeat(samples: dict[str, np.ndarray], choice: dict, seed: int) -> tuple[dict, dict, dict]:
    """Out-of-fold ``(model predictions, level-only predictions, truths)`` of one shuffled 5-fold split, every array
    in :func:`disc_order`."""
    from .grading import cross_validated, subset

    patients = np.random.default_rng(seed).permutation(np.unique(samples["patient"]))
    folds = [list(patients[i::5]) for i in range(5)]
    predicted, truth = cross_validated(samples, folds, choice)
    baseline = []
    for fold in folds:
        held_out = np.isin(samples["patient"], fold)
        baseline.append(level_only(subset(samples, ~held_out), subset(samples, held_out & (samples["offset"] == 0))))
    baseline = {key: np.concatenate([b[key] for b in baseline]) for key in baseline[0]}
    order = disc_order(truth)
    return ({k: v[order] for k, v in predicted.items()}, {k: v[order] for k, v in baseline.items()},
            {k: v[order] for k, v in truth.items()})


def scores(predicted: dict[str, np.ndarray], truth: dict[str, np.ndarray], rows: np.ndarray | None = None) -> dict:
    """Every metric of one set of predictions (``rows``: a subset, e.g. a bootstrap draw)."""
    rows = np.arange(len(truth["grade"])) if rows is None else rows
    probabilities, grade = predicted["pfirrmann"][rows], truth["grade"][rows].astype(int)
    top = probabilities.argmax(axis=1)
    result = {"quadratic_kappa": quadratic_kappa(grade, top), "exact": float(np.mean(top == grade)),
              "within_one": float(np.mean(np.abs(top - grade) <= 1))}
    if "narrowing" in predicted:
        result |= {"ece": expected_calibration_error(probabilities, grade), "log_loss": log_loss(probabilities, grade),
                   "narrowing_auroc": auroc(predicted["narrowing"][rows], truth["narrowing"][rows].astype(bool)),
                   "modic_auroc": auroc(predicted["modic"][rows], truth["modic"][rows].astype(bool))}
    return result


def with_intervals(predicted: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict[str, dict]:
    """``{metric: {"value", "ci95"}}`` of :func:`scores`, the intervals over patient-bootstrap resamples."""
    result = {}
    for key, value in scores(predicted, truth).items():
        interval = bootstrap_interval(lambda rows, key=key: scores(predicted, truth, rows)[key], truth["patient"])
        result[key] = {"value": round(float(value), 3), "ci95": interval}
    return result


def always_grade_3(count: int) -> dict[str, np.ndarray]:
    """Grade 3 for every disc, with certainty."""
    return {"pfirrmann": np.eye(GRADES)[np.full(count, COMMON_GRADE)]}


def evaluate(samples: dict[str, np.ndarray], model: dict, calibration: Calibration, repeats: int) -> dict:
    """Pooled out-of-fold metrics of the grader and both baselines, with intervals and spread over repeats."""
    runs = [one_repeat(samples, model_choice(model), seed) for seed in range(repeats)]
    truth = {key: np.concatenate([run[2][key] for run in runs]) for key in runs[0][2]}

    def pooled(index: int) -> dict[str, np.ndarray]:
        stacked = {key: np.concatenate([run[index][key] for run in runs]) for key in runs[0][index]}
        return stacked | ({"pfirrmann": tempered(stacked["pfirrmann"], calibration.temperature)} if index == 0 else {})

    methods = {"grader": pooled(0), "level only": pooled(1), "always grade 3": always_grade_3(len(truth["grade"]))}
    spread = {key: [scores({**run[0], "pfirrmann": tempered(run[0]["pfirrmann"], calibration.temperature)},
                           run[2])[key] for run in runs] for key in scores(methods["grader"], truth)}
    patients = truth["patient"]
    result = {"discs": len(patients) // repeats, "patients": len(np.unique(patients)), "repeats": repeats,
              "temperature": calibration.temperature, "methods": {}}
    for name, predicted in methods.items():
        result["methods"][name] = with_intervals(predicted, truth)
    result["methods"]["grader"] = {key: {**value, "repeat_sd": round(float(np.std(spread[key])), 3)}
                                   for key, value in result["methods"]["grader"].items()}
    return result


TITLES = {"quadratic_kappa": "Pfirrmann weighted kappa", "exact": "Pfirrmann exact", "within_one": "within one grade",
          "ece": "expected calibration error", "log_loss": "log loss", "narrowing_auroc": "narrowing AUROC",
          "modic_auroc": "Modic AUROC (experimental)"}


def markdown(result: dict) -> str:
    """The evaluation as a Markdown table, metrics as rows and methods as columns."""
    methods = list(result["methods"])
    lines = ["# Disc grader, out of fold over all graded SPIDER T2 patients", "",
             f"Produced by `python -m SpineSegDiffTraining.grading_evaluation`: {result['discs']} discs of "
             f"{result['patients']} patients, central slice of the ground-truth masks, {result['repeats']} repeats of "
             "patient-grouped 5-fold cross-validation (out-of-fold predictions of every repeat pooled), Pfirrmann "
             f"probabilities tempered with the grader's calibration (T = {result['temperature']}). 95 % "
             "patient-bootstrap intervals in brackets; for the grader, the standard deviation over the repeats after "
             "the +-.", "",
             "| metric | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for key, title in TITLES.items():
        cells = []
        for name in methods:
            entry = result["methods"][name].get(key)
            if entry is None:
                cells.append("-")
                continue
            sd = f" +-{entry['repeat_sd']:.3f}" if "repeat_sd" in entry else ""
            cells.append(f"{entry['value']:.3f}{sd} ({entry['ci95'][0]:.2f}-{entry['ci95'][1]:.2f})")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    from .grading import GRADINGS_FILE, disc_samples, read_gradings
    from .workspace import open_workspace

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("work", type=Path)
    parser.add_argument("model_folder", type=Path)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    args = parser.parse_args(argv)
    model = json.loads((args.model_folder / "model.json").read_text(encoding="utf-8"))
    calibration = Calibration.from_config(json.loads((args.model_folder / "config.json").read_text(encoding="utf-8")))
    cases, _, files = open_workspace(args.work, 2).prepare(args.data)
    samples = disc_samples(files, sorted(c.case_id for c in cases), read_gradings(args.data / GRADINGS_FILE))
    result = evaluate(samples, model, calibration, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "grading_evaluation.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    (args.out / "grading_evaluation.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
