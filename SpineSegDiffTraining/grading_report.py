"""Metrics and the bundled model folder (weights, config.json, MODEL_CARD.md) of the disc grader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from SpineSegDiffLib.grading import CROP, GRADES, GradingNet
from SpineSegDiffLib.models import write_config

from .metrics import auroc

LITERATURE = (
    "Pfirrmann et al. (Spine 26(17):1873-1878, 2001), who defined the grades, report inter-observer "
    "kappa 0.69-0.81 between three readers (intra-observer 0.84-0.90)."
)


def quadratic_kappa(truth: np.ndarray, prediction: np.ndarray, classes: int = len(GRADES)) -> float:
    """Cohen's kappa with quadratic weights; ``truth``/``prediction`` ``(N,)`` class indices 0..classes-1."""
    observed = np.zeros((classes, classes))
    np.add.at(observed, (truth.astype(int), prediction.astype(int)), 1)
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / max(observed.sum(), 1)
    i, j = np.indices((classes, classes))
    weights = (i - j) ** 2 / (classes - 1) ** 2
    denominator = (weights * expected).sum()
    return float(1 - (weights * observed).sum() / denominator) if denominator else float("nan")


def evaluation_metrics(predicted: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict:
    """Kappa, accuracy and flag AUROCs of the model, and the narrowing AUROC of the measured height index."""
    grades = predicted["pfirrmann"].argmax(axis=1)
    measured = ~np.isnan(test["height_index"])
    narrowed = test["narrowing"].astype(bool)
    return {
        "pfirrmann_quadratic_kappa": round(quadratic_kappa(test["grade"], grades), 3),
        "pfirrmann_accuracy": round(float((grades == test["grade"]).mean()), 3),
        "pfirrmann_within_one_grade": round(float((np.abs(grades - test["grade"]) <= 1).mean()), 3),
        "narrowing_auroc_model": round(auroc(predicted["narrowing"], narrowed), 3),
        "narrowing_auroc_height_index": round(auroc(-test["height_index"][measured], narrowed[measured]), 3),
        "modic_auroc_model": round(auroc(predicted["modic"], test["modic"].astype(bool)), 3),
        "test_narrowing_positives": int(narrowed.sum()),
        "test_modic_positives": int(test["modic"].sum()),
    }


def write_bundle(network: GradingNet, folder: Path, metrics: dict, epochs: int) -> None:
    """``weights.pt`` (state dict), ``config.json`` and ``MODEL_CARD.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(network.state_dict(), folder / "weights.pt")
    widths = [m.out_channels for m in network.features if isinstance(m, torch.nn.Conv2d)][::2]
    config = {"kind": "grading", "id": folder.name, "architecture": {"name": "GradingNet", "widths": widths},
              "preprocessing": {"crop": list(CROP), "channels": ["image / 255", "this disc", "vertebrae"],
                                "space": "model space, 1 mm, superior up, anterior left"},
              "outputs": {"pfirrmann_grades": list(GRADES), "flags": ["narrowing", "modic"]},
              "training": {"epochs": epochs, "data": "SPIDER T2 (spider-t2space), patient-wise split"},
              "metrics": metrics}
    write_config(folder, config, ["weights.pt"])
    (folder / "MODEL_CARD.md").write_text(model_card(metrics, epochs))


def model_card(metrics: dict, epochs: int) -> str:
    m = metrics
    return f"""# disc-grading-t2

Per-disc Pfirrmann grade (1-5, class probabilities) and probabilities of disc narrowing and of a Modic
change, from a sagittal T2 slice and its segmentation.

## Data
SPIDER (van der Graaf et al., Scientific Data 11:264, 2024, CC BY 4.0), the T2-SPACE series of
`spider-t2space` with the radiologists' per-disc gradings (`radiological_gradings.csv`). Patient-wise
split (`make_splits(..., 5, seed=0)`): {m['training_discs']} training samples (graded discs on the central
slice and the 2 slices either side, training/validation patients) and {m['test_discs']} test discs
(central slice of the held-out patients {', '.join(m['test_cases'])}), never trained on.

## Preprocessing and model
Model space (1 mm, 320 x 320, superior up, anterior left). Discs are split and numbered from the bottom
with `SpineSegDiffLib.levels` (ground-truth masks in training, the pipeline's segmentation at inference);
a {CROP[0]} x {CROP[1]} crop centred on each disc with 3 channels: image / 255, this disc's mask, the
vertebra mask. A 6-convolution CNN (widths 16, 32, 64, batch norm, global average pooling), 7 outputs:
softmax over the 5 grades, sigmoids for narrowing and Modic change (Modic type 1-3 vs none). Cross-
entropy (label smoothing 0.05) + 2 binary cross-entropies, AdamW lr 2e-3, {epochs} epochs of batch 32,
random shifts and intensity scaling; 2 CPU cores, minutes.

## Metrics (held-out test patients, central slice, ground-truth disc masks)
| metric | value |
|---|---|
| Pfirrmann quadratic-weighted kappa | {m['pfirrmann_quadratic_kappa']} |
| Pfirrmann exact accuracy | {m['pfirrmann_accuracy']} |
| Pfirrmann within one grade | {m['pfirrmann_within_one_grade']} |
| narrowing AUROC, model | {m['narrowing_auroc_model']} |
| narrowing AUROC, measured disc height index | {m['narrowing_auroc_height_index']} |
| Modic change AUROC, model | {m['modic_auroc_model']} |

Test positives: narrowing {m['test_narrowing_positives']}, Modic {m['test_modic_positives']}.
For comparison: {LITERATURE} Their kappa is unweighted, which is stricter than the quadratic-weighted
kappa here.

## Limitations
- Trained on {m['training_discs']} samples from about 26 patients of one dataset (Siemens, mostly 1.5 T,
  T2-SPACE): the test set has about 50 discs, so every metric carries a wide confidence interval.
- T2 only: Modic changes are defined on T1 and T2 together; the Modic flag from T2 alone is weak.
- One sagittal slice per disc; lateral pathology is not seen. Grades on discs whose segmentation is
  wrong (see `mean_uncertainty`) are unreliable.
- Research use only; not a medical device.
"""
