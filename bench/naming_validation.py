"""Level naming on all 33 labelled SPIDER T2 series: :func:`~SpineSegDiffLib.anatomy.levels.find_levels` on the
central sagittal slice of each ground-truth labelmap (model space), checked against SPIDER's gradings.

The masks carry no level numbers; the gradings CSV does (``IVD label`` 1 = L5/S1, counting upward; 0 is a disc
below L5/S1 in a transitional anatomy). As the data README says, the disc components are ordered from the
bottom to match them: the 3D disc components of the model-space stack (pieces under 20% of the median size left
out) take the series' lowest graded label and count upward. Each disc that find_levels names on the central
slice is then compared with the label of the ground-truth component it overlaps most.

Usage: ``python bench/naming_validation.py [DATA_DIR] [--segmentations DIR]``; writes
``bench/results/naming_validation.md``. ``--segmentations`` names a folder of ``spinesegdiff segment`` outputs of the
33 volumes: their labelmaps are named too, against the same ground truth.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from SpineSegDiffLib.anatomy.levels import disc_name, find_levels
from SpineSegDiffLib.inference.preprocess import labels_to_model_space, sagittal_axis_of, to_model_space

DATA = Path("/work/shared/data/spider-t2space")
RESULTS = Path(__file__).resolve().parent / "results" / "naming_validation.md"
IVD = 3
MIN_DISC_PIXELS = 30
"""A true disc with fewer pixels on the central slice (a disc grazed by the slice) is not counted."""


def graded_labels(data: Path) -> dict[int, list[int]]:
    """``{patient: sorted IVD labels}`` from ``radiological_gradings.csv``."""
    labels: dict[int, set[int]] = {}
    with open(data / "radiological_gradings.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            labels.setdefault(int(row["Patient"]), set()).add(int(row["IVD label"]))
    return {patient: sorted(values) for patient, values in labels.items()}


def level_map(labels: np.ndarray, lowest: int) -> np.ndarray:
    """int ``(N, H, W)``: each 3D disc component's SPIDER label + 1 (0 background), counted from the bottom."""
    components, count = ndimage.label(labels == IVD)
    index = np.arange(1, count + 1)
    sizes = ndimage.sum(np.ones(components.shape), components, index)
    rows = ndimage.mean(np.indices(components.shape)[1], components, index)
    kept = [i for i in index if sizes[i - 1] >= 0.2 * np.median(sizes)]
    out = np.zeros(components.shape, np.int32)
    for rank, i in enumerate(sorted(kept, key=lambda i: -rows[i - 1])):
        out[components == i] = lowest + rank + 1
    return out


def central_index(image: sitk.Image, slice_indices: tuple[int, ...]) -> int:
    """The model slice of the input's central sagittal slice."""
    centre = image.GetSize()[sagittal_axis_of(image)] // 2
    return int(np.argmin([abs(k - centre) for k in slice_indices]))


def check_series(folder: Path, graded: list[int], labels_file: Path | None = None) -> dict:
    """Name the central slice of one series' ground truth (or of ``labels_file``, e.g. the pipeline's labelmap) and
    compare with the graded labels; also count the lumbar discs of the ground truth's central slice found and named
    right (a named disc covering most of the true disc carries its name)."""
    image = sitk.ReadImage(str(folder / "image.nii.gz"))
    images, geometry = to_model_space(image, "all")
    truth_stack = labels_to_model_space(sitk.ReadImage(str(folder / "mask.nii.gz")), geometry)
    labels = labels_to_model_space(sitk.ReadImage(str(labels_file or folder / "mask.nii.gz")), geometry)
    k = central_index(image, geometry.slice_indices)
    truth = level_map(truth_stack, min(graded))[k]
    levels = find_levels(labels[k], images[k])
    named = np.zeros(truth.shape, np.int32)
    for disc in (d for d in levels.discs if not d.missing):
        named[levels.mask(disc)] = disc.from_bottom + 1
    lumbar = [label for label in range(1, 6) if (truth == label + 1).sum() >= MIN_DISC_PIXELS]
    right = [label for label in lumbar if np.mean(named[truth == label + 1] == label + 1) >= 0.5]
    compared = []
    for disc in (d for d in levels.discs if not d.missing):
        values, counts = np.unique(truth[levels.mask(disc)], return_counts=True)
        counts[values == 0] = 0
        expected = int(values[np.argmax(counts)]) - 1 if counts.max() > 0 else None
        compared.append((disc.name, disc.from_bottom, expected))
    named_l5s1 = next((e for name, _, e in compared if name == "L5/S1"), None)
    return {"series": folder.name, "found": [c[0] for c in compared], "lowest_graded": min(graded),
            "all_correct": bool(compared) and all(f == e for _, f, e in compared),
            "l5s1_correct": named_l5s1 == 1, "reasons": levels.reasons, "rules": levels.rules,
            "lumbar_discs": len(lumbar), "lumbar_named_right": len(right),
            "wrong": [(n, disc_name(e) if e else ("S1/S2" if e == 0 else "none")) for n, f, e in compared if f != e]}


def transitional(result: dict) -> bool:
    """A transitional case: graded so (a disc labelled 0) or flagged by a transitional vertebra rule."""
    return result["lowest_graded"] == 0 or any("transitional vertebra rule" in r and r.endswith("flagged")
                                               for r in result["rules"])


def markdown(results: list[dict], source: str) -> str:
    """The results table and the transitional cases of one labelmap source."""
    correct = sum(r["all_correct"] for r in results)
    found = sum(r["lumbar_named_right"] for r in results)
    total = sum(r["lumbar_discs"] for r in results)
    lines = [f"## Named on the {source} (central sagittal slice)", "",
             f"**All named discs correct: {correct} of {len(results)}**; L5/S1 correct: "
             f"{sum(r['l5s1_correct'] for r in results)} of {len(results)}; lumbar discs of the ground truth found "
             f"and named right: **{found} of {total} ({found / max(total, 1):.1%})**.", "",
             "| series | discs named (bottom-up) | all correct | L5/S1 correct | wrong (named -> truth) | flags |",
             "|---|---|---|---|---|---|"]
    for r in results:
        wrong = ", ".join(f"{n} -> {t}" for n, t in r["wrong"]) or "-"
        lines.append(f"| {r['series']} | {' '.join(r['found'])} | {'yes' if r['all_correct'] else 'NO'} | "
                     f"{'yes' if r['l5s1_correct'] else 'NO'} | {wrong} | {'; '.join(r['reasons']) or '-'} |")
    lines += ["", "### Transitional cases", "",
              "Series graded with a disc below L5/S1 (`IVD label` 0), or flagged by a transitional vertebra rule:", ""]
    for r in (r for r in results if transitional(r)):
        rules = "; ".join(x for x in r["rules"] if "transitional" in x)
        lines.append(f"- {r['series']}: lowest graded label {r['lowest_graded']}; "
                     f"{'named correctly' if r['all_correct'] else 'named WRONG'}; rules: {rules}")
    return "\n".join(lines) + "\n"


HEADER = f"""# Level naming on the 33 labelled SPIDER T2 series

Produced by `bench/naming_validation.py`. Ground truth: the gradings CSV's `IVD label` (1 = L5/S1) matched to the
3D disc components counted from the bottom. "Lumbar discs found and named right": each true L1/L2-L5/S1 disc on
the central slice ({MIN_DISC_PIXELS}+ pixels) whose pixels are mostly covered by a disc carrying its name. The pipeline
rows are `spinesegdiff segment` (default preset) on the 33 volumes; 26 of them were in the bundled models'
training folds, so only the 7 test series are unseen.
"""


def pipeline_labels(folder: Path, segmentations: Path) -> Path | None:
    """The ``spinesegdiff segment`` labelmap of one series in ``segmentations`` (stem ``<series>_image``, or
    ``image`` for the first of a batch), or None."""
    for stem in (f"{folder.name}_image", "image"):
        report = segmentations / f"{stem}_report.json"
        if report.is_file() and folder.name in json.loads(report.read_text(encoding="utf-8"))["input"]:
            return segmentations / f"{stem}_labels.nii.gz"
    return None


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    """Check every series on the ground truth (and the pipeline's labelmaps) and write :data:`RESULTS`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DATA)
    parser.add_argument("--segmentations", type=Path, help="folder of `spinesegdiff segment` outputs of the series")
    args = parser.parse_args(argv)
    graded = graded_labels(args.data)
    folders = sorted(args.data.glob("spider_*"))
    sources = {"ground truth": lambda folder: None}
    if args.segmentations:
        sources["pipeline's own segmentation"] = lambda folder: pipeline_labels(folder, args.segmentations)
    results = {name: [check_series(folder, graded[int(folder.name.split("_")[1])], labels_of(folder))
                      for folder in folders if name == "ground truth" or labels_of(folder)]
               for name, labels_of in sources.items()}
    RESULTS.write_text("\n".join([HEADER, *(markdown(r, name) for name, r in results.items())]), encoding="utf-8")
    for name, r in results.items():
        found, total = sum(x["lumbar_named_right"] for x in r), sum(x["lumbar_discs"] for x in r)
        print(f"{name}: {sum(x['all_correct'] for x in r)} of {len(r)} series named correctly; lumbar discs found "
              f"and named right {found} of {total} -> {RESULTS}")
    return results


if __name__ == "__main__":
    main()
