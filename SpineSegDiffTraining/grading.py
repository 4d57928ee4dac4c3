"""``spinesegdiff-train grading``: select, train, evaluate and bundle the disc grader.

Samples: on the central model-space slice of every case and the slices around it (:data:`OFFSETS`),
the ground-truth discs are split and counted from the bottom with :func:`SpineSegDiffLib.anatomy.levels.find_levels`,
described by :func:`SpineSegDiffLib.anatomy.grading.slice_features` and matched to ``radiological_gradings.csv``
by (patient, ``IVD label`` = ``from_bottom``).

Model selection uses only the training/validation patients: every candidate (model kind, feature set,
penalty; :data:`GRADE_CANDIDATES`, :data:`FLAG_CANDIDATES`) is cross-validated over the patient-wise
folds of ``splits.json`` (trained on all slices of four folds, scored on the central slice of the
fifth), and the best pooled kappa (grade) or AUROC (flags) wins. The winner is refitted on all
training/validation patients and evaluated once on the test patients (central slice). The
cross-validation table goes to ``WORK/grading/selection.json`` and the test metrics to
``WORK/grading/metrics.json``.

The same model is then evaluated on the pipeline's own segmentation of the test patients
(:func:`pipeline_samples`): ``Segmenter.segment`` with the default options (``standard`` preset,
central slice) labels the central model-space slice, its levels are named and graded as at inference
and matched to the gradings by (patient, ``from_bottom``) as above. A pipeline disc counts as found
only when it also overlaps the ground-truth disc of the same number (:func:`same_disc`), so misnamed
discs count as missing. The segmented slices are cached in ``WORK/grading/pipeline/`` (delete the
folder after changing the segmentation models). The stage takes about a minute on a CPU and every fit
is deterministic, so a rerun rebuilds the same model and reuses the cached segmentations.
"""

from __future__ import annotations

import csv
import json
import re
from itertools import product
from pathlib import Path

import numpy as np

from SpineSegDiffLib.anatomy.grading import FEATURE_NAMES, predict_heads, slice_features, standardise
from SpineSegDiffLib.anatomy.levels import Levels, find_levels
from SpineSegDiffLib.errors import SpineSegDiffError

from .configs import GradingConfig
from .grading_fit import fit_binary, fit_multinomial, fit_ordinal, standardiser
from .grading_report import evaluation_metrics, grade_scores, source_comparison, write_bundle
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
        raise SpineSegDiffError(f"no {GRADINGS_FILE} at {path}",
                                "put it into the data folder or pass its path (grading --gradings FILE)")
    with open(path, newline="") as stream:
        return {(int(r["Patient"]), int(r["IVD label"])):
                (int(r["Pfirrman grade"]), int(r["Disc narrowing"]), int(int(r["Modic"]) > 0))
                for r in csv.DictReader(stream)}


def graded_rows(numbers: list[int], features: np.ndarray, patient: int, table: dict, offset: int = 0) -> list[tuple]:
    """``(features (F,), grade 0..4, narrowing, modic, patient, offset, level)`` of the discs of one slice
    (``numbers``: their ``from_bottom``) that ``table`` grades, matched by ``(patient, from_bottom)``."""
    rows = []
    for number, row in zip(numbers, features):
        if (patient, number) in table:
            grade, narrowing, modic = table[(patient, number)]
            rows.append((row, grade - 1, narrowing, modic, patient, offset, number))
    return rows


def case_samples(path: Path, patient: int, table: dict, offsets=OFFSETS) -> list[tuple]:
    """:func:`graded_rows` of every chosen slice of one case (ground-truth masks)."""
    image, labels = load_case(path)
    samples = []
    for offset in offsets:
        k = len(image) // 2 + offset
        if 0 <= k < len(image):
            numbers, features = slice_features(image[k], labels[k], find_levels(labels[k], image[k]))
            samples += graded_rows(numbers, features, patient, table, offset)
    return samples


SAMPLE_KEYS = ("features", "grade", "narrowing", "modic", "patient", "offset", "level")


def to_samples(rows: list[tuple]) -> dict[str, np.ndarray]:
    """Rows of :func:`graded_rows` -> one array per :data:`SAMPLE_KEYS` (``features`` ``(N, F)``), plus the
    ``height_index`` column."""
    columns = list(zip(*rows)) if rows else [[] for _ in SAMPLE_KEYS]
    samples = {key: np.array(values, float) for key, values in zip(SAMPLE_KEYS, columns)}
    samples["features"] = samples["features"].reshape(len(rows), len(FEATURE_NAMES))
    samples["height_index"] = samples["features"][:, FEATURE_NAMES.index("height_index")]
    return samples


def disc_samples(files: dict[str, Path], case_ids: list[str], table: dict, offsets=OFFSETS) -> dict[str, np.ndarray]:
    """``features`` ``(N, len(FEATURE_NAMES))``, ``grade`` (0..4), ``narrowing``, ``modic``, ``patient``,
    ``offset`` and ``level`` ``(N,)`` of every graded disc on the chosen slices of ``case_ids``."""
    return to_samples([s for case_id in case_ids
                       for s in case_samples(files[case_id], patient_number(case_id), table, offsets)])


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
    order: predictions as :func:`~SpineSegDiffLib.anatomy.grading.predict_heads`, truths as :func:`disc_samples`."""
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


PIPELINE_FOLDER = "pipeline"
"""Sub-folder of ``WORK/grading`` caching the pipeline's central slice of every test case."""
SAME_DISC_OVERLAP = 0.5
"""Least fraction of a pipeline disc's pixels inside the ground-truth disc of the same number."""


def same_disc(predicted: np.ndarray, truth: np.ndarray | None) -> bool:
    """Whether boolean ``(H, W)`` ``predicted`` lies mostly (:data:`SAME_DISC_OVERLAP`) in ``truth``
    (None: the ground truth has no disc of that number)."""
    if truth is None or not predicted.any():
        return False
    return bool((predicted & truth).sum() >= SAME_DISC_OVERLAP * predicted.sum())


def disc_masks(levels: Levels) -> dict[int, np.ndarray]:
    """``from_bottom -> boolean (H, W) mask`` of the segmented discs of one slice."""
    return {disc.from_bottom: levels.mask(disc) for disc in levels.discs if not disc.missing}


def pipeline_rows(image: np.ndarray, labels: np.ndarray, truth_labels: np.ndarray, patient: int,
                  table: dict) -> list[tuple]:
    """:func:`graded_rows` of the pipeline's discs on one slice (``labels``) that overlap the ground-truth
    disc (``truth_labels``) of the same number; the others are misnamed and left out."""
    levels = find_levels(labels, image)
    truth = disc_masks(find_levels(truth_labels, image))
    predicted = disc_masks(levels)
    numbers, features = slice_features(image, labels, levels)
    named = [same_disc(predicted[n], truth.get(n)) for n in numbers]
    return graded_rows([n for n, ok in zip(numbers, named) if ok], features[np.array(named, bool)], patient, table)


def segmented_slice(case, cache: Path, segmenter) -> tuple[np.ndarray, np.ndarray]:
    """``(image, labels)`` ``(H, W)`` of the pipeline's central model-space slice of ``case`` (default
    :class:`~SpineSegDiffLib.options.SegmentOptions`), from ``cache`` when segmented before;
    ``segmenter()`` returns the :class:`~SpineSegDiffLib.inference.pipeline.Segmenter`, built on first need."""
    path = cache / f"{case.case_id}.npz"
    if not path.is_file():
        from SpineSegDiffLib.options import SegmentOptions

        image, _ = case.read()
        result = segmenter().segment(image, SegmentOptions())
        k = len(result.model_image) // 2
        cache.mkdir(parents=True, exist_ok=True)
        temporary = cache / f".{case.case_id}.tmp.npz"
        np.savez_compressed(temporary, image=result.model_image[k], labels=result.model_labels[k])
        temporary.replace(path)
    with np.load(path) as data:
        return data["image"].astype(np.float32), data["labels"]


def pipeline_samples(cases: dict, files: dict[str, Path], case_ids: list[str], table: dict, cache: Path,
                     models_dir: Path, device: str = "cpu") -> dict[str, np.ndarray]:
    """Samples as :func:`disc_samples` (central slice) from the pipeline's segmentation of ``case_ids``
    (``cases``: id -> :class:`~.datasets.Case`; ``files``: the prepared ground truth, for the naming check)."""
    loaded = []

    def segmenter():
        if not loaded:
            from SpineSegDiffLib.inference.pipeline import Segmenter

            loaded.append(Segmenter(models_dir, device))
        return loaded[0]

    rows = []
    for case_id in case_ids:
        image, labels = segmented_slice(cases[case_id], cache, segmenter)
        truth_image, truth_labels = load_case(files[case_id])
        rows += pipeline_rows(image, labels, truth_labels[len(truth_image) // 2], patient_number(case_id), table)
    return to_samples(rows)


def run_grading(config: GradingConfig) -> dict:
    """``grading``: prepare, select by cross-validation, fit, evaluate on the test patients (ground-truth masks,
    then the pipeline's segmentation with the segmentation models of ``config.out``), bundle into
    ``config.out/disc-grading-t2``."""
    from .workspace import open_workspace

    workspace = open_workspace(config.work, config.threads)
    cases, splits, files = workspace.prepare(config.data, config.folds)
    table = read_gradings(config.gradings or Path(config.data) / GRADINGS_FILE)
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
    segmented = pipeline_samples({c.case_id: c for c in cases}, files, splits.test, table,
                                 run_dir / PIPELINE_FOLDER, Path(config.out), config.device)
    metrics["pipeline_segmentation"] = source_comparison(lambda f: predict_heads(model, f), test, segmented)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "selection.json").write_text(json.dumps({"choice": choice, "candidates": candidates}, indent=2) + "\n")
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_bundle(model, Path(config.out) / "disc-grading-t2", metrics, candidates)
    return metrics
