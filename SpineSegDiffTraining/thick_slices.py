"""Generalisation to clinical slice thickness: re-acquire held-out near-isotropic volumes with 3-5 mm
sagittal slices (each new slice is the partial-volume average of the 1 mm slices it covers) and measure
central-slice Dice against slice thickness.

Labels of a thick slice are those of its centre 1 mm slice, which is what a reader outlines on the
blurred image; the central slab is centred on the original central slice, so every thickness is
scored on the same anatomy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from SpineSegDiffLib.inference.pipeline import Segmenter
from SpineSegDiffLib.inference.preprocess import sagittal_axis_of
from SpineSegDiffLib.options import SegmentOptions

from .clinical import slab_weights
from .datasets import load_dataset
from .evaluate import evaluate_case, method_table
from .splits import Splits

THICKNESSES_MM = (1, 3, 4, 5)


def slab_centres(num_slices: int, step: int) -> list[int]:
    """Indices of slab centres, ``step`` apart, symmetric about the central slice ``num_slices // 2``."""
    centre = num_slices // 2
    reach = min(centre, num_slices - 1 - centre) // step
    return [centre + step * j for j in range(-reach, reach + 1)]


def simulate_thick_slices(image: sitk.Image, mask: sitk.Image, thickness_mm: float) -> tuple[sitk.Image, sitk.Image]:
    """``image`` and ``mask`` re-sampled to sagittal slices ``thickness_mm`` thick and apart."""
    axis = sagittal_axis_of(image)
    step = max(1, round(thickness_mm / image.GetSpacing()[axis]))
    if step == 1:
        return image, mask
    array_axis = image.GetDimension() - 1 - axis
    pixels = np.moveaxis(sitk.GetArrayFromImage(image).astype(np.float32), array_axis, 0)
    labels = np.moveaxis(sitk.GetArrayFromImage(mask), array_axis, 0)
    weights = slab_weights(step).numpy()
    half = len(weights) // 2
    centres = slab_centres(len(pixels), step)
    rows = [np.clip(np.arange(c - half, c + half + 1), 0, len(pixels) - 1) for c in centres]
    thick = np.stack([np.tensordot(weights, pixels[r], axes=1) for r in rows])
    thick_labels = labels[centres]
    return (_like(thick, array_axis, image, axis, centres[0], step, image.GetPixelID()),
            _like(thick_labels, array_axis, mask, axis, centres[0], step, mask.GetPixelID()))


def _like(array: np.ndarray, array_axis: int, reference: sitk.Image, axis: int, first: int, step: int,
          pixel_id: int) -> sitk.Image:
    """``array`` (slices first) as an image on ``reference``'s grid with every ``step``-th slice from ``first``."""
    out = sitk.GetImageFromArray(np.moveaxis(array, 0, array_axis))
    spacing = list(reference.GetSpacing())
    spacing[axis] *= step
    index = [0] * reference.GetDimension()
    index[axis] = first
    out.SetSpacing(spacing)
    out.SetDirection(reference.GetDirection())
    out.SetOrigin(reference.TransformIndexToPhysicalPoint(index))
    return sitk.Cast(out, pixel_id)


def evaluate_thick_slices(splits: Splits, models_dir: Path, data: Path, out_dir: Path, device: str = "cpu",
                          thicknesses: tuple[int, ...] = THICKNESSES_MM) -> dict:
    """Central-slice scores per thickness for nnU-Net alone and refined (``standard``); writes
    ``out_dir/thick_slices.json`` and ``.md``."""
    cases = {c.case_id: c for c in load_dataset(data)}
    segmenter = Segmenter(models_dir, device)
    settings = {"nnU-Net": SegmentOptions(refine=False, device=device), "+SpineSegDiff": SegmentOptions(device=device)}
    results = {f"{name}, {mm} mm": {} for mm in thicknesses for name in settings}
    for case_id in tqdm(splits.test, desc="thick slices", unit="case"):
        image, truth = cases[case_id].read()
        for mm in thicknesses:
            thick_image, thick_truth = simulate_thick_slices(image, truth, mm)
            for name, options in settings.items():
                results[f"{name}, {mm} mm"][case_id] = evaluate_case(segmenter, thick_image, thick_truth, options)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "thick_slices.json").write_text(json.dumps(results, indent=2))
    caption = (f"Held-out test series: {len(splits.test)}, re-acquired with thicker sagittal slices; Dice on the "
               "central slice (mean over cases).")
    (out_dir / "thick_slices.md").write_text(method_table(results, caption, "s/case"))
    return results
