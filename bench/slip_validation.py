"""Slip (Meyerding) against SPIDER's spondylolisthesis grading, on all 33 labelled SPIDER T2 series.

For every series the central sagittal slice is named and measured exactly as the report does
(:func:`~SpineSegDiffLib.anatomy.levels.find_levels`, :func:`~SpineSegDiffLib.anatomy.measurements.measure_levels`),
on the ground-truth labelmap and, when ``--segmentations`` names a folder of ``spinesegdiff segment`` outputs, on the
pipeline's own labelmap. Each measured disc is matched to SPIDER's graded disc it overlaps most (the 3D ground-truth
disc components counted from the bottom, as in ``bench/naming_validation.py``), and its slip compared with SPIDER's
binary ``Spondylolisthesis`` column: AUROC of the signed slip, and sensitivity and specificity of "Meyerding grade
1 or more", with 95 % patient-bootstrap intervals, over the lumbar discs (L1/L2 to L5/S1) and at L5/S1 alone.

The grade's threshold (:data:`~SpineSegDiffLib.anatomy.conventions.LISTHESIS_PERCENT`) and the wall rows were fixed
before this comparison and are not fitted to it; with 10 positive lumbar discs the intervals are wide.

Usage: ``python bench/slip_validation.py [--data DIR] [--segmentations DIR]``; writes ``bench/results/slip.md``
and ``bench/results/slip.json``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parent))
from naming_validation import DATA, central_index, graded_labels, level_map, pipeline_labels  # noqa: E402

from SpineSegDiffLib.anatomy.conventions import LISTHESIS_PERCENT  # noqa: E402
from SpineSegDiffLib.anatomy.levels import find_levels  # noqa: E402
from SpineSegDiffLib.anatomy.measurements import measure_levels  # noqa: E402
from SpineSegDiffLib.inference.preprocess import labels_to_model_space, to_model_space  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
REFUSED = ("implausible", "the endplate below")
"""How the reasons of a refused slip begin (:func:`~SpineSegDiffLib.anatomy.conventions.slip_refused`)."""
LUMBAR = range(1, 6)
"""SPIDER's ``IVD label`` of the lumbar discs: 1 = L5/S1 ... 5 = L1/L2."""


def listhesis_table(data: Path) -> dict[tuple[int, int], int]:
    """``{(patient, IVD label): 0 or 1}`` from SPIDER's ``Spondylolisthesis`` column."""
    with open(data / "radiological_gradings.csv", newline="", encoding="utf-8") as handle:
        return {(int(r["Patient"]), int(r["IVD label"])): int(r["Spondylolisthesis"]) for r in csv.DictReader(handle)}


def series_discs(folder: Path, labels_file: Path, graded: list[int], table: dict) -> list[dict]:
    """Every disc measured on the central slice of ``labels_file`` that matches a graded SPIDER disc."""
    patient = int(folder.name.split("_")[1])
    image = sitk.ReadImage(str(folder / "image.nii.gz"))
    images, geometry = to_model_space(image, "all")
    truth_stack = labels_to_model_space(sitk.ReadImage(str(folder / "mask.nii.gz")), geometry)
    labels = labels_to_model_space(sitk.ReadImage(str(labels_file)), geometry)
    k = central_index(image, geometry.slice_indices)
    truth = level_map(truth_stack, min(graded))[k]
    levels = find_levels(labels[k], images[k])
    measured = measure_levels(levels, labels[k])["discs"]
    rows = []
    for disc, entry in zip(levels.discs, measured, strict=True):
        if disc.missing:
            continue
        values, counts = np.unique(truth[levels.mask(disc)], return_counts=True)
        counts[values == 0] = 0
        label = int(values[np.argmax(counts)]) - 1 if counts.max() > 0 else None
        if (patient, label) in table:
            rows.append({"patient": patient, "ivd_label": label, "name": entry["name"],
                         "listhesis": table[(patient, label)], "slip_mm": entry["slip_mm"],
                         "slip_percent": entry["slip_percent"], "meyerding_grade": entry["meyerding_grade"],
                         "reference": entry["slip_reference"],
                         "not_measured": entry["not_measured"].get("slip_percent")})
    return rows


def auroc(truth: np.ndarray, score: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half); NaN without both classes."""
    positive, negative = score[truth == 1], score[truth == 0]
    if not len(positive) or not len(negative):
        return float("nan")
    return float(np.mean((positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])))


def metrics(rows: list[dict]) -> dict[str, float]:
    """AUROC of the signed slip, sensitivity and specificity of grade >= 1, over the measured discs of ``rows``."""
    measured = [r for r in rows if r["slip_percent"] is not None]
    truth = np.array([r["listhesis"] for r in measured])
    score = np.array([r["slip_percent"] for r in measured], float)
    called = np.array([r["meyerding_grade"] >= 1 for r in measured])
    with np.errstate(invalid="ignore"):
        return {"auroc": auroc(truth, score),
                "sensitivity": float(called[truth == 1].mean()) if (truth == 1).any() else float("nan"),
                "specificity": float((~called[truth == 0]).mean()) if (truth == 0).any() else float("nan")}


def bootstrap(rows: list[dict], draws: int = 2000, seed: int = 0) -> dict[str, list[float]]:
    """95 % intervals of :func:`metrics`, resampling patients with replacement."""
    patients = sorted({r["patient"] for r in rows})
    by_patient = {p: [r for r in rows if r["patient"] == p] for p in patients}
    generator = np.random.default_rng(seed)
    samples = {key: [] for key in ("auroc", "sensitivity", "specificity")}
    for _ in range(draws):
        drawn = [r for p in generator.choice(patients, len(patients)) for r in by_patient[p]]
        for key, value in metrics(drawn).items():
            samples[key].append(value)
    return {key: [round(float(np.nanpercentile(v, q)), 3) for q in (2.5, 97.5)] for key, v in samples.items()}


def summary(rows: list[dict]) -> dict:
    """Counts, metrics and intervals of one group of discs."""
    measured = [r for r in rows if r["slip_percent"] is not None]
    return {"discs": len(rows), "positive": sum(r["listhesis"] for r in rows), "measured": len(measured),
            "positive_measured": sum(r["listhesis"] for r in measured),
            "refused": sum(str(r["not_measured"]).startswith(REFUSED) for r in rows),
            **{k: round(v, 3) for k, v in metrics(rows).items()}, "ci95": bootstrap(rows)}


def evaluate(data: Path, source: str, labels_of) -> dict:
    """All discs of the 33 series measured on ``labels_of(folder)``, and their summaries."""
    graded, table = graded_labels(data), listhesis_table(data)
    rows = []
    for folder in sorted(data.glob("spider_*")):
        labels_file = labels_of(folder)
        if labels_file is not None:
            rows += series_discs(folder, labels_file, graded[int(folder.name.split("_")[1])], table)
    lumbar = [r for r in rows if r["ivd_label"] in LUMBAR]
    return {"source": source, "series": len({r["patient"] for r in rows}),
            "lumbar": summary(lumbar), "l5_s1": summary([r for r in rows if r["ivd_label"] == 1]),
            "above_l5_s1": summary([r for r in lumbar if r["ivd_label"] != 1]),
            "positives": [r for r in rows if r["listhesis"]],
            "negatives_percent": [round(float(q), 1) for q in np.percentile(
                [r["slip_percent"] for r in lumbar if not r["listhesis"] and r["slip_percent"] is not None],
                [5, 50, 95])]}


def fmt(value: float, interval: list[float]) -> str:
    return f"{value:.2f} ({interval[0]:.2f}-{interval[1]:.2f})"


def markdown(results: list[dict]) -> str:
    """Tables of every source, then the positive discs."""
    lines = ["# Slip (Meyerding) against SPIDER's spondylolisthesis grading", "",
             "Produced by `bench/slip_validation.py`: central sagittal slice of each of the 33 labelled SPIDER T2",
             "series, measured as the report does; listhesis called at Meyerding grade >= 1 (anterior slip >=",
             f"{LISTHESIS_PERCENT:.0f} % of the endplate below). 95 % patient-bootstrap intervals in brackets. The",
             "threshold and the wall rows were fixed before this comparison, not fitted to it. The pipeline rows",
             "use `spinesegdiff segment` (default preset) on the 33 volumes: 26 of them were in the bundled models'",
             "training folds, so only the 7 test series are unseen.", "",
             "| labelmap | discs | listhesis (measured) | refused | AUROC (signed slip) | sensitivity | specificity |",
             "|---|---|---|---|---|---|---|"]
    for result in results:
        for group, title in (("lumbar", "L1/L2-L5/S1"), ("l5_s1", "L5/S1 only"), ("above_l5_s1", "L1/L2-L4/L5")):
            s = result[group]
            lines.append(f"| {result['source']}, {title} | {s['measured']} of {s['discs']} | {s['positive_measured']} "
                         f"of {s['positive']} | {s['refused']} | {fmt(s['auroc'], s['ci95']['auroc'])} | "
                         f"{fmt(s['sensitivity'], s['ci95']['sensitivity'])} | "
                         f"{fmt(s['specificity'], s['ci95']['specificity'])} |")
    for result in results:
        lines += ["", f"## Discs graded with listhesis ({result['source']})", "",
                  f"Lumbar discs without listhesis: slip 5th / 50th / 95th percentile "
                  f"{' / '.join(map(str, result['negatives_percent']))} %.", "",
                  "| series | disc | slip (mm) | slip (%) | Meyerding | reference / why not measured |",
                  "|---|---|---|---|---|---|"]
        for r in result["positives"]:
            lines.append(f"| spider_{r['patient']:03d} | {r['name']} | {r['slip_mm']} | {r['slip_percent']} | "
                         f"{r['meyerding_grade']} | {r['reference'] or r['not_measured']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--segmentations", type=Path, help="folder of `spinesegdiff segment` outputs of the series")
    args = parser.parse_args(argv)
    results = [evaluate(args.data, "ground truth", lambda folder: folder / "mask.nii.gz")]
    if args.segmentations:
        results.append(evaluate(args.data, "pipeline", lambda folder: pipeline_labels(folder, args.segmentations)))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "slip.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (RESULTS / "slip.md").write_text(markdown(results), encoding="utf-8")
    for result in results:
        s = result["lumbar"]
        print(f"{result['source']}: AUROC {s['auroc']:.3f}, sensitivity {s['sensitivity']:.2f}, "
              f"specificity {s['specificity']:.2f} over {s['measured']} lumbar discs")
    return results


if __name__ == "__main__":
    main()
