"""Presegmentation training with nnU-Net v2: export, plan, preprocess, train folds, out-of-fold
predictions (:mod:`.bundle` makes the model folder). The ``nnunet`` stage of the work-folder path; the bank
path trains the same planned network with its own loop (:mod:`.nnunet_loop`).

nnU-Net reads its folders from ``nnUNet_raw`` / ``nnUNet_preprocessed`` / ``nnUNet_results`` when
it is first imported; :func:`use_work_dir` sets them from an explicit work folder, so call it before
anything else here (the training CLI does).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SpineSegDiffLib.labels import STRUCTURES

from .configs import PRESEGMENTER_CONFIGURATION as CONFIGURATION
from .prepare import load_case
from .splits import Splits

DATASET_ID = 501
DATASET_NAME = f"Dataset{DATASET_ID}_SpineSegDiff"
PLANS = "nnUNetPlans"
SMALL_FEATURES_CAP = 128
SMALL_BATCH = 4


def use_work_dir(work_dir: Path, processes: int = 2) -> None:
    """Point nnU-Net at ``work_dir/{raw,preprocessed,results}`` (before nnU-Net is imported)."""
    for name in ("raw", "preprocessed", "results"):
        (work_dir / name).mkdir(parents=True, exist_ok=True)
        os.environ[f"nnUNet_{name}"] = str(work_dir / name)
    os.environ["nnUNet_n_proc_DA"] = str(processes)  # noqa: SIM112 - nnU-Net's own variable name
    os.environ.setdefault("nnUNet_compile", "false")


def _write_slices(array: np.ndarray, spacing, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing))
    sitk.WriteImage(image, str(path), useCompression=True)


def export_raw_dataset(case_files: dict[str, Path], case_ids: list[str], work_dir: Path) -> Path:
    """Write model-space cases as an nnU-Net raw dataset (imagesTr, labelsTr, dataset.json)."""
    raw = work_dir / "raw" / DATASET_NAME
    (raw / "imagesTr").mkdir(parents=True, exist_ok=True)
    (raw / "labelsTr").mkdir(parents=True, exist_ok=True)
    for case_id in case_ids:
        image, labels = load_case(case_files[case_id])
        spacing = np.load(case_files[case_id])["spacing"]
        _write_slices(image, spacing, raw / "imagesTr" / f"{case_id}_0000.nii.gz")
        _write_slices(labels, spacing, raw / "labelsTr" / f"{case_id}.nii.gz")
    dataset = {
        "channel_names": {"0": "T2"},
        "labels": {"background": 0, **{s.key: s.value for s in STRUCTURES}},
        "numTraining": len(case_ids),
        "file_ending": ".nii.gz",
        "name": "SpineSegDiff model-space sagittal slices (SPIDER T2)",
    }
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return raw


def plan_and_preprocess(splits: Splits, processes: int = 2) -> Path:
    """nnU-Net fingerprint + planning, a smaller 2D network for CPU, preprocessing, our folds."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (
        extract_fingerprints,
        plan_experiments,
        preprocess,
    )
    from nnunetv2.paths import nnUNet_preprocessed

    extract_fingerprints([DATASET_ID], num_processes=processes, check_dataset_integrity=False)
    plan_experiments([DATASET_ID])
    folder = Path(nnUNet_preprocessed) / DATASET_NAME
    shrink_2d_plans(folder / f"{PLANS}.json")
    preprocess([DATASET_ID], PLANS, configurations=(CONFIGURATION,), num_processes=(processes,))
    folds = [{"train": splits.training_cases(k), "val": fold} for k, fold in enumerate(splits.folds)]
    (folder / "splits_final.json").write_text(json.dumps(folds, indent=2))
    return folder


def shrink_2d_plans(plans_file: Path) -> None:
    """Cap the 2D network's widths and batch size so it trains on a CPU and stays small on disk."""
    plans = json.loads(plans_file.read_text())
    config = plans["configurations"][CONFIGURATION]
    kwargs = config["architecture"]["arch_kwargs"]
    kwargs["features_per_stage"] = [min(f // 2, SMALL_FEATURES_CAP) for f in kwargs["features_per_stage"]]
    config["batch_size"] = SMALL_BATCH
    plans_file.write_text(json.dumps(plans, indent=2))


def trainer_class(name: str) -> type:
    """The nnU-Net trainer ``name`` stands for: ``cpu`` (the CPU budget) or ``smoke`` (a few iterations)."""
    from .nnunet_trainer import nnUNetTrainerSpineCPU, nnUNetTrainerSpineSmoke

    return {"cpu": nnUNetTrainerSpineCPU, "smoke": nnUNetTrainerSpineSmoke}[name]


def results_folder(trainer_class_name: str) -> Path:
    """nnU-Net's output folder of ``trainer_class_name`` (``fold_k/`` inside, plans and dataset.json beside)."""
    from nnunetv2.paths import nnUNet_results

    return Path(nnUNet_results) / DATASET_NAME / f"{trainer_class_name}__{PLANS}__{CONFIGURATION}"


def train_fold(fold: int | str, trainer: type | None = None, device: str = "cpu"):
    """Train (or resume) one fold with ``trainer`` (default: the CPU budget), then predict its validation
    cases (out-of-fold presegmentations)."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.paths import nnUNet_preprocessed

    trainer = trainer or trainer_class("cpu")
    folder = Path(nnUNet_preprocessed) / DATASET_NAME
    plans, dataset_json = load_json(str(folder / f"{PLANS}.json")), load_json(str(folder / "dataset.json"))
    output = results_folder(trainer.__name__) / f"fold_{fold}"
    resume_from = _checkpoint_to_resume(output, trainer.EPOCHS)
    if resume_from == "finished":
        return None
    plans["continue_training"] = resume_from is not None  # nnU-Net's trainer takes this flag via the plans
    run = trainer(plans, CONFIGURATION, fold, dataset_json, torch.device(device))
    if resume_from is not None:
        run.load_checkpoint(str(resume_from))
    run.run_training()
    run.perform_actual_validation(False)
    return run


def _checkpoint_to_resume(output: Path, epochs: int) -> Path | str | None:
    """``"finished"``, the checkpoint to continue from (the final one when the budget grew), or None."""
    import torch

    final, latest = output / "checkpoint_final.pth", output / "checkpoint_latest.pth"
    if final.is_file():
        done = torch.load(final, map_location="cpu", weights_only=False)["current_epoch"]  # our own output
        return "finished" if done + 1 >= epochs else final
    return latest if latest.is_file() else None


def oof_prediction_files(trainer_class_name: str, splits: Splits) -> dict[str, Path]:
    """Case id -> out-of-fold presegmentation written by :func:`train_fold` (where present)."""
    base = results_folder(trainer_class_name)
    found = {}
    for k in range(len(splits.folds)):
        for case_id in splits.folds[k]:
            path = base / f"fold_{k}" / "validation" / f"{case_id}.nii.gz"
            if path.is_file():
                found[case_id] = path
    return found


def first_trained_fold(trainer_class_name: str) -> Path | None:
    """``.../fold_k`` of the first fold with a final checkpoint, or None."""
    base = results_folder(trainer_class_name)
    done = sorted(p.parent for p in base.glob("fold_*/checkpoint_final.pth"))
    return done[0] if done else None
