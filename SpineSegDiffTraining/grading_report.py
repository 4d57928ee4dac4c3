"""Metrics and the bundled model folder (``model.json``, ``config.json``, ``MODEL_CARD.md``) of the disc grader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from SpineSegDiffLib.anatomy.grading import FEATURE_NAMES, GRADES, MODEL_FILE
from SpineSegDiffLib.modelset.folder import write_config

from .metrics import auroc

LITERATURE = (
    "Pfirrmann et al. (Spine 26(17):1873-1878, 2001), who defined the grades, report inter-observer "
    "kappa 0.69-0.81 between three readers (intra-observer 0.84-0.90)."
)
PREVIOUS_CNN = {"pfirrmann_quadratic_kappa": 0.166, "pfirrmann_accuracy": 0.314, "pfirrmann_within_one_grade": 0.745,
                "narrowing_auroc_model": 0.841, "narrowing_auroc_height_index": 0.715, "modic_auroc_model": 0.571}
"""Test metrics of the earlier crop CNN (3-channel 48 x 64 crops, 40 epochs) on the same 51 test discs."""
BOOTSTRAP_DRAWS = 2000


def quadratic_kappa(truth: np.ndarray, prediction: np.ndarray, classes: int = len(GRADES)) -> float:
    """Cohen's kappa with quadratic weights; ``truth``/``prediction`` ``(N,)`` class indices 0..classes-1."""
    observed = np.zeros((classes, classes))
    np.add.at(observed, (truth.astype(int), prediction.astype(int)), 1)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / max(observed.sum(), 1)
    i, j = np.indices((classes, classes))
    weights = (i - j) ** 2 / (classes - 1) ** 2
    denominator = (weights * expected).sum()
    return float(1 - (weights * observed).sum() / denominator) if denominator else float("nan")


def grade_scores(probabilities: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Kappa, exact and within-one accuracy of the most probable grade, and the log loss.

    Args:
        probabilities: ``(N, 5)`` predicted grade distributions.
        truth: ``(N,)`` grade indices 0..4.
    """
    grades, truth = probabilities.argmax(axis=1), truth.astype(int)
    return {"quadratic_kappa": round(quadratic_kappa(truth, grades), 3),
            "accuracy": round(float((grades == truth).mean()), 3),
            "within_one": round(float((np.abs(grades - truth) <= 1).mean()), 3),
            "log_loss": round(float(-np.log(probabilities[np.arange(len(truth)), truth] + 1e-12).mean()), 3)}


def kappa_interval(probabilities: np.ndarray, truth: np.ndarray, patients: np.ndarray, seed: int = 0) -> list[float]:
    """95 % percentile interval of the quadratic kappa over :data:`BOOTSTRAP_DRAWS` resamples of whole
    patients (discs of one patient are not independent); inputs as :func:`grade_scores`, ``patients`` ``(N,)``."""
    grades, unique = probabilities.argmax(axis=1), np.unique(patients)
    generator = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP_DRAWS):
        chosen = np.concatenate([np.flatnonzero(patients == p) for p in generator.choice(unique, len(unique))])
        draws.append(quadratic_kappa(truth[chosen], grades[chosen]))
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return [round(float(low), 3), round(float(high), 3)]


def evaluation_metrics(predicted: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> dict:
    """Kappa (with a patient-bootstrap interval), accuracies and flag AUROCs of the model, and the
    narrowing AUROC of the measured height index; ``truth`` as :func:`~.grading.disc_samples`."""
    scores = grade_scores(predicted["pfirrmann"], truth["grade"])
    measured = ~np.isnan(truth["height_index"])
    narrowed = truth["narrowing"].astype(bool)
    return {
        "pfirrmann_quadratic_kappa": scores["quadratic_kappa"],
        "pfirrmann_kappa_95ci": kappa_interval(predicted["pfirrmann"], truth["grade"], truth["patient"]),
        "pfirrmann_accuracy": scores["accuracy"],
        "pfirrmann_within_one_grade": scores["within_one"],
        "pfirrmann_log_loss": scores["log_loss"],
        "narrowing_auroc_model": round(auroc(predicted["narrowing"], narrowed), 3),
        "narrowing_auroc_height_index": round(auroc(-truth["height_index"][measured], narrowed[measured]), 3),
        "modic_auroc_model": round(auroc(predicted["modic"], truth["modic"].astype(bool)), 3),
        "narrowing_positives": int(narrowed.sum()),
        "modic_positives": int(truth["modic"].sum()),
        "grade_counts": np.bincount(truth["grade"].astype(int), minlength=len(GRADES)).tolist(),
    }


def sample_keys(samples: dict[str, np.ndarray]) -> list[tuple[int, int]]:
    """``(patient, from_bottom)`` of every disc of ``samples`` (as :func:`~.grading.disc_samples`)."""
    return list(zip(samples["patient"].astype(int).tolist(), samples["level"].astype(int).tolist()))


def kept_rows(samples: dict[str, np.ndarray], keys: set) -> dict[str, np.ndarray]:
    """The discs of ``samples`` whose ``(patient, from_bottom)`` is in ``keys``."""
    keep = np.array([key in keys for key in sample_keys(samples)], bool)
    return {name: values[keep] for name, values in samples.items()}


def source_comparison(predict, reference: dict[str, np.ndarray], segmented: dict[str, np.ndarray]) -> dict:
    """The test metrics on the pipeline's segmentation next to those on the ground truth of the same discs.

    Args:
        predict: ``features (N, F) -> heads`` (:func:`~SpineSegDiffLib.anatomy.grading.predict_heads` of the model).
        reference: the graded test discs on the ground-truth masks (:func:`~.grading.disc_samples`).
        segmented: the graded discs the pipeline found and named as the ground truth does.

    Returns:
        ``graded_discs`` (reference), ``found_discs`` and the ``missed`` ``[patient, from_bottom]`` pairs;
        ``pipeline`` and ``ground_truth_same_discs``: :func:`evaluation_metrics` on the found discs with
        the pipeline's and the ground-truth masks (empty when nothing was found).
    """
    found = set(sample_keys(reference)) & set(sample_keys(segmented))
    comparison = {"graded_discs": len(reference["grade"]), "found_discs": len(found),
                  "missed": [list(key) for key in sample_keys(reference) if key not in found],
                  "segmentation": "Segmenter.segment, default options (standard preset, central slice)"}
    for name, samples in (("pipeline", segmented), ("ground_truth_same_discs", reference)):
        chosen = kept_rows(samples, found)
        comparison[name] = evaluation_metrics(predict(chosen["features"]), chosen) if found else {}
    return comparison


def write_bundle(model: dict, folder: Path, metrics: dict, candidates: list[dict]) -> None:
    """``model.json`` (every parameter), ``config.json`` and ``MODEL_CARD.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_text(json.dumps(model, indent=1) + "\n")
    choice = {head: {"kind": model[head].get("kind", "binary"), "features": len(model[head]["features"]),
                     "l2": model[head]["l2"]} for head in ("pfirrmann", "narrowing", "modic")}
    config = {"kind": "grading", "id": folder.name,
              "architecture": {"name": "DiscGrader", "heads": choice},
              "preprocessing": {"input": "one model-space slice, its labelmap and named levels",
                                "features": "SpineSegDiffLib.anatomy.grading.slice_features",
                                "space": "model space, 1 mm, superior up, anterior left"},
              "outputs": {"pfirrmann_grades": list(GRADES), "flags": ["narrowing", "modic"]},
              "training": {"data": "SPIDER T2 (spider-t2space), patient-wise split",
                           "selection": "5-fold patient-wise cross-validation on the training patients"},
              "metrics": metrics}
    write_config(folder, config, [MODEL_FILE])
    (folder / "MODEL_CARD.md").write_text(model_card(model, metrics, candidates))


def candidate_table(candidates: list[dict]) -> str:
    """Markdown rows of the cross-validated grade candidates."""
    rows = [f"| {c['kind']} | {c['features']} | {c['l2']} | {c['quadratic_kappa']} | {c['accuracy']} | "
            f"{c['within_one']} | {c['log_loss']} |" for c in candidates if c["head"] == "pfirrmann"]
    return "\n".join(["| model | features | l2 | kappa | exact | within one | log loss |",
                      "|---|---|---|---|---|---|---|", *rows])


def strongest_weights(head: dict, count: int = 6) -> str:
    """The ``count`` standardised weights of largest magnitude of a head, as ``name (+0.12)``."""
    weights = np.asarray(head["weights"])
    if weights.ndim == 2:  # multinomial: the spread between grade 5 and grade 1
        weights = weights[-1] - weights[0]
    order = np.argsort(-np.abs(weights))[:count]
    return ", ".join(f"`{head['features'][i]}` ({weights[i]:+.2f})" for i in order)


KIND_NAMES = {"ordinal": "ordinal logistic regression (cumulative logit, proportional odds)",
              "multinomial": "multinomial logistic regression"}
METRIC_ROWS = (("Pfirrmann quadratic-weighted kappa", "pfirrmann_quadratic_kappa"),
               ("kappa 95 % interval (patient bootstrap)", "pfirrmann_kappa_95ci"),
               ("Pfirrmann exact accuracy", "pfirrmann_accuracy"),
               ("Pfirrmann within one grade", "pfirrmann_within_one_grade"),
               ("narrowing AUROC, model", "narrowing_auroc_model"),
               ("narrowing AUROC, measured height index", "narrowing_auroc_height_index"),
               ("Modic change AUROC, model", "modic_auroc_model"))


def metrics_table(metrics: dict) -> str:
    """Markdown table: cross-validation, held-out test and the earlier CNN on the same test discs."""
    lines = ["| metric | cross-validation (training patients) | held-out test | earlier CNN, same test |",
             "|---|---|---|---|"]
    for label, key in METRIC_ROWS:
        lines.append(f"| {label} | {metrics['cross_validation'][key]} | {metrics[key]} | {PREVIOUS_CNN.get(key, '')} |")
    return "\n".join(lines)


def source_table(metrics: dict) -> str:
    """Markdown table of the held-out test metrics by mask source (see :func:`source_comparison`)."""
    source = metrics["pipeline_segmentation"]
    columns = [(f"ground-truth masks, all {metrics['test_discs']} discs", metrics)]
    if source["found_discs"] < metrics["test_discs"]:
        columns.append((f"ground-truth masks, the {source['found_discs']} found discs",
                        source["ground_truth_same_discs"]))
    columns.append((f"pipeline segmentation, {source['found_discs']} found discs", source["pipeline"]))
    lines = ["| metric | " + " | ".join(name for name, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, key in METRIC_ROWS:
        lines.append(f"| {label} | " + " | ".join(str(values.get(key, "")) for _, values in columns) + " |")
    return "\n".join(lines)


def source_section(metrics: dict) -> str:
    """The card's paragraph and table on the pipeline's segmentation (empty for metrics without it)."""
    source = metrics.get("pipeline_segmentation")
    if not source:
        return ""
    missed = ", ".join(f"patient {p} disc {n}" for p, n in source["missed"]) or "none"
    return f"""
### On the pipeline's segmentation
The same model on the test patients, with the levels found on the pipeline's own segmentation
(`Segmenter.segment` with the default options: `standard` preset, central slice) instead of the
ground-truth masks, matched to the gradings by patient and level number as above. A disc counts as
found when the pipeline names it with the number of the ground-truth disc it overlaps (at least half of
its pixels); missed or misnamed discs are left out. Found: {source['found_discs']} of
{source['graded_discs']} graded test discs (missed: {missed}).

{source_table(metrics)}
"""


def model_card(model: dict, metrics: dict, candidates: list[dict]) -> str:
    m, cv = metrics, metrics["cross_validation"]
    grade = model["pfirrmann"]
    return f"""# disc-grading-t2

Per-disc Pfirrmann grade (1-5, class probabilities) and probabilities of disc narrowing and of a Modic
change, from one sagittal T2 slice and its segmentation: linear models on hand-crafted, explainable
per-disc features ({len(FEATURE_NAMES)} defined, {len(grade['features'])} used by the grade head); every
parameter is plain JSON in `{MODEL_FILE}` (no pickled code, numpy only, a few KB).

## Data
SPIDER (van der Graaf et al., Scientific Data 11:264, 2024, CC BY 4.0), the T2-SPACE series of
`spider-t2space` with the radiologists' per-disc gradings (`radiological_gradings.csv`). Patient-wise
split (`make_splits(..., 5, seed=0)`): {m['training_samples']} training samples (graded discs on the central
slice and the 2 slices either side of the training/validation patients; {m['cross_validation_discs']} on the central
slice) and {m['test_discs']} test discs (central slice of the held-out patients {', '.join(m['test_cases'])}),
used once, after the model was chosen. Grade counts 1-5: cross-validation {cv['grade_counts']}, test
{m['grade_counts']}.

## Features
On the model-space slice (1 mm, 320 x 320, superior up, anterior left), discs are split and numbered
from the bottom with `SpineSegDiffLib.anatomy.levels` (ground-truth masks in training, the pipeline's
segmentation at inference). Per disc (`SpineSegDiffLib.anatomy.grading.slice_features`), following the
Pfirrmann criteria:
- nucleus signal vs CSF: disc mean and 10/50/90th percentiles, core (central half of depth and height)
  and rim means, each divided by the median spinal-canal intensity within 20 mm of the disc;
- nucleus/annulus distinction and homogeneity: core minus rim, fraction of pixels brighter than half
  the CSF, fraction darker than the adjacent vertebral bodies, standard deviation and 10-90 % spread;
- disc vs the adjacent vertebral bodies (disc, core and 90th percentile);
- height: anterior/middle/posterior/mean heights and height index (`SpineSegDiffLib.anatomy.measurements`),
  depth, area, anterior/posterior ratio;
- context on the same slice: signal relative to the brightest and the median disc, height index
  relative to the tallest disc, level number;
- endplate marrow (for Modic changes): the 6 mm of each adjacent body next to the disc vs the whole body.

Undefined values (e.g. no body above for the height index) take the training median; features are
standardised with the training mean and standard deviation.

## Model and selection
Pfirrmann head: {KIND_NAMES[grade['kind']]} on {len(grade['features'])} features,
L2 {grade['l2']}. Narrowing and Modic heads: logistic regression on {len(model['narrowing']['features'])} and
{len(model['modic']['features'])} features (L2 {model['narrowing']['l2']} and {model['modic']['l2']}).
Full-batch L-BFGS, deterministic; the whole stage (features, selection, fit, and the segmentation of
the {len(m['test_cases'])} test series for the evaluation below) takes about a minute on 2 CPU cores.
Strongest standardised weights of the grade head (positive = higher grade):
{strongest_weights(grade)}.

Selection: 5-fold patient-wise cross-validation inside the training patients (fit on all slices of four
folds, score the central slice of the fifth; pooled over {m['cross_validation_discs']} discs), the test patients
untouched. Grade candidates:

{candidate_table(candidates)}

## Metrics
{metrics_table(m)}

Ground-truth disc masks, central slice. Test positives: narrowing {m['narrowing_positives']}, Modic
{m['modic_positives']} of {m['test_discs']}. For comparison: {LITERATURE} Their kappa is unweighted, which is
stricter than the quadratic-weighted kappa here. CNNs trained on thousands of discs (e.g. SpineNet,
Jamaludin et al., Eur Spine J 26:1374-1383, 2017) reach agreement with a radiologist comparable to that
between radiologists; a model from about 26 patients does not.
{source_section(m)}
## Limitations
- About 26 training patients of one dataset (Siemens, mostly 1.5 T, T2-SPACE, intensities min-max
  scaled per slice); the test set has {m['test_discs']} discs from {len(m['test_cases'])} patients (only
  {m['grade_counts'][-1]} of grade 5), so the intervals above are wide.
- Training and the first test table use the ground-truth masks; at inference the grades depend on the
  pipeline's segmentation (see the table on it above: discs it misses or misnames get no grade for
  their level).
- The features are correlated, so single weights are not effect sizes; read them together.
- Intensity features assume T2 weighting with bright CSF and a labelled spinal canal; other contrasts
  or a missing canal label give meaningless grades.
- T2 only: Modic changes are defined on T1 and T2 together; the Modic flag mostly tracks degeneration.
- One sagittal slice per disc; lateral pathology is not seen. Grades on discs whose segmentation is
  wrong (see `mean_uncertainty`) are unreliable.
- Research use only; not a medical device.
"""
