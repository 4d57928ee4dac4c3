"""Evaluation on the held-out test series: the paper's Table 1 (Dice per structure, nnU-Net alone vs
nnU-Net + SpineSegDiff), Table 2 (number of denoising steps) and how well the heatmap flags errors
(pixel AUROC of uncertainty vs error; per-case mean uncertainty vs Dice). Dice is computed on the
processed central sagittal slice, on the input grid, as in the paper.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from SpineSegDiffLib.inference.pipeline import Segmenter
from SpineSegDiffLib.labels import STRUCTURES
from SpineSegDiffLib.options import SegmentOptions

from .configs import EVAL_STEPS
from .datasets import load_dataset
from .metrics import label_scores, pearson
from .splits import Splits
from .workspace import Workspace

STEP_GRID = EVAL_STEPS


def processed_slice(image: sitk.Image, axis: int, index: int) -> np.ndarray:
    """The 2D slice ``index`` along SimpleITK ``axis`` as a NumPy array."""
    array = sitk.GetArrayViewFromImage(image)
    return np.take(array, index, axis=2 - axis)


def slice_scores(result, truth: sitk.Image) -> dict:
    """Dice per structure, heatmap AUROC and mean uncertainty on the processed slice of ``result``."""
    axis, index = result.geometry.sagittal_axis, result.slice_indices[0]
    prediction = processed_slice(result.labels, axis, index)
    expected = processed_slice(truth, axis, index)
    heat = processed_slice(result.uncertainty, axis, index)
    return label_scores(prediction, expected, heat)


def evaluate_case(segmenter: Segmenter, image: sitk.Image, truth: sitk.Image, options: SegmentOptions) -> dict:
    result = segmenter.segment(image, options)
    return {**slice_scores(result, truth), "seconds": result.timings["total"]}


def evaluate_models(workspace: Workspace, splits: Splits, models_dir: Path, data: Path, device: str = "cpu",
                    step_grid: tuple[int, ...] = STEP_GRID) -> dict:
    """Run every setting on every test case; write ``evaluation/results.json``, ``.md`` and ``.png``."""
    cases = {c.case_id: c for c in load_dataset(data)}
    segmenter = Segmenter(models_dir, device)
    settings = {"nnU-Net": SegmentOptions(refine=False, device=device)}
    settings.update({f"+SpineSegDiff {n} steps": SegmentOptions(steps=n, fused_steps=n, device=device)
                     for n in step_grid})
    results: dict[str, dict[str, dict]] = {name: {} for name in settings}
    for case_id in tqdm(splits.test, desc="evaluate", unit="case"):
        image, truth = cases[case_id].read()
        for name, options in settings.items():
            results[name][case_id] = evaluate_case(segmenter, image, truth, options)
    workspace.evaluation.mkdir(parents=True, exist_ok=True)
    (workspace.evaluation / "results.json").write_text(json.dumps(results, indent=2))
    (workspace.evaluation / "results.md").write_text(markdown_tables(results))
    plot(results, workspace.evaluation / "results.png")
    return results


def summarise(per_case: dict[str, dict]) -> dict:
    dice = {s.key: float(np.mean([c["dice"][s.key] for c in per_case.values()])) for s in STRUCTURES}
    return {"dice": dice, "mean_dice": float(np.mean(list(dice.values()))),
            "auroc": _mean_defined(per_case, "auroc"), "auroc_near_spine": _mean_defined(per_case, "auroc_near_spine"),
            "uncertainty_vs_dice_r": pearson([c["mean_uncertainty"] for c in per_case.values()],
                                             [c["mean_dice"] for c in per_case.values()]),
            "seconds": float(np.mean([c["seconds"] for c in per_case.values()]))}


def _mean_defined(per_case: dict[str, dict], key: str) -> float:
    values = [c[key] for c in per_case.values() if key in c and not np.isnan(c[key])]
    return float(np.mean(values)) if values else float("nan")


def markdown_tables(results: dict[str, dict[str, dict]]) -> str:
    n = len(next(iter(results.values())))
    return method_table(results, f"Held-out test series: {n}; Dice on the central sagittal slice (mean over cases).",
                        "s/case")


def method_table(results: dict[str, dict[str, dict]], caption: str, seconds_unit: str) -> str:
    """One row per method (mean over cases); the nnU-Net rows have no heatmap, so no AUROC or r."""
    lines = [caption, "", "| method | SC | VB | IVD | mean | heatmap AUROC | AUROC near spine | r(uncertainty, Dice) "
             f"| {seconds_unit} |", "|---|---|---|---|---|---|---|---|---|"]
    for name, per_case in results.items():
        s = summarise(per_case)
        refined = not name.startswith("nnU-Net")
        auroc_text = f"{s['auroc']:.3f} | {s['auroc_near_spine']:.3f}" if refined else "- | -"
        r_text = f"{s['uncertainty_vs_dice_r']:.2f}" if refined else "-"
        lines.append(f"| {name} | {s['dice']['SC']:.3f} | {s['dice']['VB']:.3f} | {s['dice']['IVD']:.3f} | "
                     f"{s['mean_dice']:.3f} | {auroc_text} | {r_text} | {s['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict[str, dict[str, dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    summaries = [summarise(results[n]) for n in names]
    figure, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / len(STRUCTURES)
    for i, s in enumerate(STRUCTURES):
        ax.bar(np.arange(len(names)) + i * width, [m["dice"][s.key] for m in summaries], width, label=s.key,
               color=s.color, edgecolor="black")
    ax.set_xticks(np.arange(len(names)) + width, names, rotation=20, fontsize=8)
    ax.set_ylabel("Dice (central slice)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
