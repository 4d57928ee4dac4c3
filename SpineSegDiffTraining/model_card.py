"""Model cards: what the bundled models were trained on, how, what they measured, where they fail."""

from __future__ import annotations

import json
from pathlib import Path

from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION, DEFAULT_DIFFUSION_3D, DEFAULT_PRESEGMENTER

from .evaluate import summarise

LIMITATIONS = """\
- Trained on 26 SPIDER T2 (SPACE) sagittal series from 1.5 T / 3 T Siemens scanners, 13-30 central
  slices each, 2x2-binned (0.94 mm pixels). T2 only: T1 or other contrasts need retraining
  (`spinesegdiff-train`).
- Lumbar spine only; thoracic levels in a longer field of view are outside the training distribution.
- The 3D model sees 16 slices at the native slice spacing (3-4 mm in SPIDER) and 128 x 128 mm
  patches: volumes with a very different slice spacing are outside its training distribution.
- Trained within a short budget (see the training section) on 26 series: far less than the paper's
  ~200 series, and it shows in the Dice scores below. Retrain on more data for research use.
- Clinical 2D turbo-spin-echo series (3-5 mm slices, other pixel sizes and T2 weightings) were only
  simulated during training (thick-slice averaging, resampling, bias field, tone curves, ghosting,
  cropped fields of view); the thick-slice table below measures that on re-acquired SPIDER series,
  not on real TSE scans.
- Not a medical device. Every result must be checked by a qualified reader; the uncertainty heatmap
  shows where to look first but is not a guarantee that low-uncertainty regions are right.
"""


def write_model_cards(models_dir: Path, evaluation_dir: Path, training_log: dict | None) -> None:
    """Write ``MODEL_CARD.md`` into the bundled folders and the summary metrics into their configs.

    Without a ``training_log`` (models trained elsewhere, e.g. from a slice bank on a GPU, then evaluated
    here) each card keeps the training section it has.

    The central-slice table (``results.*``) goes into every card; the volumetric one (``volumes.*``),
    when it exists, too, and its summary into the configs as ``volume_summary_by_method``."""
    tables, metrics = [], {}
    for stem, key, title in (("results", "summary_by_method", "central sagittal slice, input grid"),
                             ("volumes", "volume_summary_by_method", "whole volume, input grid"),
                             ("thick_slices", "thick_slice_summary_by_method",
                              "central slice of series re-acquired with thicker slices")):
        if (evaluation_dir / f"{stem}.json").is_file():
            results = json.loads((evaluation_dir / f"{stem}.json").read_text(encoding="utf-8"))
            metrics["test_cases"] = sorted(next(iter(results.values())))
            metrics[key] = {name: summarise(per_case) for name, per_case in results.items()}
            table = (evaluation_dir / f"{stem}.md").read_text(encoding="utf-8")
            tables.append(f"### {title}\n{table}")
    for name in (DEFAULT_PRESEGMENTER, DEFAULT_DIFFUSION, DEFAULT_DIFFUSION_3D):
        folder, config_path = models_dir / name, models_dir / name / "config.json"
        if not config_path.is_file():
            continue
        config = json.loads(config_path.read_text(encoding="utf-8"))
        config["metrics"] = metrics
        config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        training = json.dumps(training_log, indent=2) if training_log is not None else existing_training(folder)
        (folder / "MODEL_CARD.md").write_text(_card(folder.name, config, "\n".join(tables), training))


def existing_training(folder: Path) -> str:
    """The text of the "## Training" section of the folder's card (empty when there is none)."""
    card = folder / "MODEL_CARD.md"
    text = card.read_text(encoding="utf-8") if card.is_file() else ""
    if "## Training\n" not in text:
        return ""
    return text.split("## Training\n", 1)[1].split("\n\n## ", 1)[0].strip()


def _description(config: dict) -> str:
    if config["kind"] == "nnunet":
        return ("nnU-Net v2 2D presegmentation network (PlainConvUNet from nnU-Net's plans, widths capped for "
                "CPU inference), trained with nnU-Net's deep-supervised Dice + cross-entropy loss, SGD and poly "
                "learning-rate decay by `SpineSegDiffTraining.nnunet_loop` (clinical-acquisition augmentation).")
    network = config["network"]
    text = (f"SpineSegDiff dual-encoder diffusion network, {network['spatial_dims']}D (image encoder + "
            "time-conditioned denoising UNet, MONAI basic_unet blocks), predicting x0; cosine DDIM schedule.")
    if network["spatial_dims"] == 3:
        inference = config.get("inference", {})
        text += (f" Trained on patches of {config['training']['config']['patch_size']} (slices, rows, columns) of "
                 f"whole model-space volumes; inference with MONAI's SlidingWindowInferer, windows "
                 f"{inference.get('roi_size')}, overlap {inference.get('overlap')}, Gaussian blending.")
    init = config.get("training", {}).get("init_from")
    if init:
        text += (f" Warm-started from `{init['path']}` (weights sha256 {init['weights_sha256'][:12]}...) after "
                 f"{init['iterations_before']} iterations.")
    return text


def _card(name: str, config: dict, table: str, training: str) -> str:
    splits = config.get("training", {}).get("splits", {})
    return f"""# Model card: {name}

## What it is
{_description(config)}
Labels: 0 background, 1 spinal canal (SC), 2 vertebrae (VB, posterior elements included), 3
intervertebral discs (IVD).

## Data
SPIDER (van der Graaf et al., Scientific Data 11:264, 2024; CC BY 4.0), T2-SPACE sagittal series
(13-30 slices each; the 2D models learn from single slices, the 3D model from patches of whole
volumes). Patient-wise split, fixed once (`splits.json` of the training work folder):
- test (never trained on, reported below): {", ".join(splits.get("test", []))}
- training/validation folds: {json.dumps(splits.get("folds", []))}

## Preprocessing
Reorient (axis permutation, no interpolation) to sagittal with superior up and anterior left;
resample in-plane to 1 mm; centre in 320 x 320; scale intensities so the volume's 98th percentile is
255. The nnU-Net network then applies its own z-score normalisation.

## Training
{training}

## Measured on the held-out test series
{table}
## Limitations
{LIMITATIONS}"""
