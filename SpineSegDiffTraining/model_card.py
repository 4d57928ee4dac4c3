"""Model cards: what the bundled models were trained on, how, what they measured, where they fail."""

from __future__ import annotations

import json
from pathlib import Path

from .evaluate import summarise

LIMITATIONS = """\
- Trained on 26 SPIDER T2 (SPACE) sagittal series from 1.5 T / 3 T Siemens scanners, 13-30 central
  slices each, 2x2-binned (0.94 mm pixels). T2 only: T1 or other contrasts need retraining
  (`spinesegdiff-train`).
- Lumbar spine only; thoracic levels in a longer field of view are outside the training distribution.
- Trained on 2 CPU cores within a short budget (see the training section): far less than the paper's
  ~200 series on a GPU, and it shows in the Dice scores below. Retrain on more data for research use.
- Not a medical device. Every result must be checked by a qualified reader; the uncertainty heatmap
  shows where to look first but is not a guarantee that low-uncertainty regions are right.
"""


def write_model_cards(models_dir: Path, evaluation_dir: Path, training_log: dict) -> None:
    """Write ``MODEL_CARD.md`` into both bundled folders and the summary metrics into their configs."""
    results = json.loads((evaluation_dir / "results.json").read_text())
    table = (evaluation_dir / "results.md").read_text()
    summaries = {name: summarise(per_case) for name, per_case in results.items()}
    for folder in (models_dir / "nnunet-2d-t2", models_dir / "spinesegdiff-2d-t2"):
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text())
        config["metrics"] = {"test_cases": sorted(next(iter(results.values()))), "summary_by_method": summaries}
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        (folder / "MODEL_CARD.md").write_text(_card(folder.name, config, table, training_log))


def _card(name: str, config: dict, table: str, training_log: dict) -> str:
    splits = config.get("training", {}).get("splits", {})
    return f"""# Model card: {name}

## What it is
{"nnU-Net v2 2D presegmentation network (PlainConvUNet from nnU-Net's plans, widths capped for CPU)."
 if config["kind"] == "nnunet" else
 "SpineSegDiff dual-encoder diffusion network (image encoder + time-conditioned denoising UNet, MONAI "
 "basic_unet blocks), predicting x0; cosine DDIM schedule."}
Labels: 0 background, 1 spinal canal (SC), 2 vertebrae (VB, posterior elements included), 3
intervertebral discs (IVD).

## Data
SPIDER (van der Graaf et al., Scientific Data 11:264, 2024; CC BY 4.0), T2-SPACE sagittal series,
central slices. Patient-wise split, fixed once (`splits.json` of the training work folder):
- test (never trained on, reported below): {", ".join(splits.get("test", []))}
- training/validation folds: {json.dumps(splits.get("folds", []))}

## Preprocessing
Reorient (axis permutation, no interpolation) to sagittal with superior up and anterior left;
resample in-plane to 1 mm; centre in 320 x 320; scale intensities so the volume's 98th percentile is
255. The nnU-Net network then applies its own z-score normalisation.

## Training
{json.dumps(training_log, indent=2)}

## Measured on the held-out test series (central sagittal slice, input grid)
{table}
## Limitations
{LIMITATIONS}"""
