"""Volumetric evaluation on the held-out test series: Dice per structure over the whole volume (input
grid) for the nnU-Net presegmentation alone, the 2D model on every slice and the 3D Diff-UNet, with
the heatmap AUROC over all voxels and the seconds per volume. Writes ``evaluation/volumes.{json,md}``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from SpineSegDiffLib.inference.pipeline import Segmenter
from SpineSegDiffLib.options import SegmentOptions

from .datasets import load_dataset
from .evaluate import method_table
from .metrics import label_scores
from .splits import Splits
from .workspace import Workspace


def volume_settings(device: str, preset: str = "standard") -> dict[str, SegmentOptions]:
    return {
        "nnU-Net (every slice)": SegmentOptions(mode="slices", refine=False, device=device),
        "+SpineSegDiff 2D, every slice": SegmentOptions(mode="slices", preset=preset, device=device),
        "+Diff-UNet 3D": SegmentOptions(mode="volume", preset=preset, device=device),
    }


def volume_scores(result, truth: sitk.Image) -> dict:
    """Dice per structure, heatmap AUROC and mean uncertainty over the whole volume."""
    prediction = sitk.GetArrayViewFromImage(result.labels)
    expected = sitk.GetArrayViewFromImage(truth)
    heat = sitk.GetArrayViewFromImage(result.uncertainty)
    return {**label_scores(prediction, expected, heat), "seconds": result.timings["total"],
            "slices": len(result.slice_indices)}


def evaluate_volumes(workspace: Workspace, splits: Splits, models_dir: Path, data: Path, device: str = "cpu") -> dict:
    """Every volumetric setting on every test volume; returns ``{setting: {case: scores}}``."""
    cases = {c.case_id: c for c in load_dataset(data)}
    segmenter = Segmenter(models_dir, device)
    settings = volume_settings(device)
    results: dict[str, dict[str, dict]] = {name: {} for name in settings}
    for case_id in tqdm(splits.test, desc="evaluate volumes", unit="case"):
        image, truth = cases[case_id].read()
        for name, options in settings.items():
            results[name][case_id] = volume_scores(segmenter.segment(image, options), truth)
    workspace.evaluation.mkdir(parents=True, exist_ok=True)
    (workspace.evaluation / "volumes.json").write_text(json.dumps(results, indent=2))
    (workspace.evaluation / "volumes.md").write_text(volume_table(results))
    return results


def volume_table(results: dict[str, dict[str, dict]]) -> str:
    n = len(next(iter(results.values())))
    slices = np.mean([c["slices"] for c in next(iter(results.values())).values()])
    caption = (f"Held-out test volumes: {n} ({slices:.0f} sagittal slices on average); Dice over the whole volume, "
               "mean over cases; presets `standard` (S = 5, 2 steps).")
    return method_table(results, caption, "s/volume")
