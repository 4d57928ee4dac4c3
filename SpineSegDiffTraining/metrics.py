"""Segmentation and uncertainty metrics (NumPy only)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from SpineSegDiffLib.labels import STRUCTURES

NEAR_SPINE_PIXELS = 10
"""Pixels within this distance of a predicted or true structure make the "near the spine" region."""


def dice(prediction: np.ndarray, truth: np.ndarray, value: int) -> float:
    """Dice of one label value; 1.0 when both are empty."""
    p, t = prediction == value, truth == value
    total = p.sum() + t.sum()
    return 1.0 if total == 0 else float(2 * (p & t).sum() / total)


def dice_per_structure(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {s.key: dice(prediction, truth, s.value) for s in STRUCTURES}


def label_scores(prediction: np.ndarray, expected: np.ndarray, heat: np.ndarray) -> dict:
    """Dice per structure and their mean, heatmap AUROC (uncertainty vs error) over all pixels and over
    the pixels near the spine (:func:`near_spine`), and the mean uncertainty inside the predicted
    structures; arrays of any equal shape."""
    scores = dice_per_structure(prediction, expected)
    errors, near = prediction != expected, near_spine(prediction, expected)
    return {"dice": scores, "mean_dice": float(np.mean(list(scores.values()))),
            "auroc": auroc(heat, errors), "auroc_near_spine": auroc(heat[near], errors[near]),
            "mean_uncertainty": float(heat[prediction > 0].mean())}


def near_spine(prediction: np.ndarray, expected: np.ndarray, distance: float = NEAR_SPINE_PIXELS) -> np.ndarray:
    """Boolean mask of the pixels within ``distance`` (Euclidean, pixels) of any labelled pixel of either
    map: the region where a reader looks, so the AUROC is not inflated by easy background far away."""
    spine = (prediction > 0) | (expected > 0)
    if not spine.any():
        return np.zeros(spine.shape, bool)
    return ndimage.distance_transform_edt(~spine) <= distance


def auroc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``positives`` (rank formula, ties averaged)."""
    scores, positives = scores.ravel(), positives.ravel().astype(bool)
    n_pos, n_neg = positives.sum(), (~positives).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), float)
    sorted_scores = scores[order]
    ranks[order] = np.arange(1, len(scores) + 1)
    unique, inverse, counts = np.unique(sorted_scores, return_inverse=True, return_counts=True)
    if len(unique) < len(scores):  # average the ranks of ties
        sums = np.bincount(inverse, weights=np.arange(1, len(scores) + 1))
        ranks[order] = (sums / counts)[inverse]
    return float((ranks[positives].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pearson(x: list[float], y: list[float]) -> float:
    if len(x) < 3 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])
