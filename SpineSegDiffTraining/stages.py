"""The training stages behind ``spinesegdiff-train`` (nnU-Net, diffusion, bundle, evaluate)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import SimpleITK as sitk
import torch

from SpineSegDiffLib.models import DEFAULT_DIFFUSION, DEFAULT_PRESEGMENTER, ModelFolder, write_config
from SpineSegDiffLib.networks import NetworkConfig
from SpineSegDiffLib.presegment import NnUNetPresegmenter

from . import nnunet
from .diffusion import DiffusionTrainingConfig, SliceBank, config_to_json, train_diffusion
from .model_card import write_model_cards
from .nnunet_trainer import nnUNetTrainerSpineCPU, nnUNetTrainerSpineSmoke
from .prepare import load_case
from .splits import Splits
from .workspace import Workspace

TRAINERS = {"cpu": nnUNetTrainerSpineCPU, "smoke": nnUNetTrainerSpineSmoke}


def run(stage: str, workspace: Workspace, args: argparse.Namespace) -> None:
    _, splits, files = workspace.prepare(args.data, args.folds)
    if stage in ("nnunet", "all"):
        train_presegmentation(workspace, splits, files, args)
    if stage in ("diffusion", "all"):
        train_refinement(workspace, splits, files, args)
    if stage in ("bundle", "all"):
        bundle(workspace, splits, args)
    if stage in ("evaluate", "all"):
        from .evaluate import evaluate_models

        evaluate_models(workspace, splits, args.out, args.data, args.device, tuple(args.eval_steps))
        write_model_cards(args.out, workspace.evaluation, training_summary(workspace, args))


def train_presegmentation(workspace: Workspace, splits: Splits, files: dict[str, Path], args) -> None:
    """Export, plan and preprocess once, then train each fold (resumable) with OOF predictions."""
    raw = workspace.nnunet / "raw" / nnunet.DATASET_NAME
    if not (raw / "dataset.json").is_file():
        nnunet.export_raw_dataset(files, splits.train_val, workspace.nnunet)
    if not (workspace.nnunet / "preprocessed" / nnunet.DATASET_NAME / "splits_final.json").is_file():
        nnunet.plan_and_preprocess(splits)
    for fold in args.nnunet_folds if args.nnunet_folds is not None else range(len(splits.folds)):
        nnunet.train_fold(fold, TRAINERS[args.nnunet_trainer], args.device)


def presegment_training_cases(workspace: Workspace, splits: Splits, files: dict[str, Path], args) -> dict[str, Path]:
    """Presegmentations of every train/validation case: out-of-fold where that fold was trained,
    else from the first trained fold's model (in-sample for its training cases)."""
    trainer = TRAINERS[args.nnunet_trainer].__name__
    found = nnunet.oof_prediction_files(trainer, splits)
    missing = [c for c in splits.train_val if c not in found]
    folder = nnunet.first_trained_fold(trainer)
    if not missing or folder is None:
        return found
    out = workspace.root / "presegmentations"
    out.mkdir(exist_ok=True)
    presegmenter = NnUNetPresegmenter(ModelFolder(folder.parent, {"kind": "nnunet", "trusted_pickles": True}),
                                      torch.device(args.device), folds=[folder.name.removeprefix("fold_")])
    for case_id in missing:
        path = out / f"{case_id}.nii.gz"
        if not path.is_file():
            image, _ = load_case(files[case_id])
            sitk.WriteImage(sitk.GetImageFromArray(presegmenter(image)), str(path), useCompression=True)
        found[case_id] = path
    return found


def train_refinement(workspace: Workspace, splits: Splits, files: dict[str, Path], args) -> None:
    """Train the diffusion model on the train/validation cases, starting from real presegmentations."""
    presegmentations = presegment_training_cases(workspace, splits, files, args)
    print(f"diffusion training: {len(splits.train_val)} cases, {len(presegmentations)} with presegmentations")
    bank = SliceBank(files, splits.train_val, presegmentations)
    config = DiffusionTrainingConfig(network=NetworkConfig(features=tuple(args.features)), iterations=args.iterations)
    train_diffusion(bank, config, workspace.diffusion, args.minutes)
    (workspace.diffusion / "config.json").write_text(json.dumps(config_to_json(config), indent=2))


def training_summary(workspace: Workspace, args) -> dict:
    """How long and how much each model trained, read back from the training logs."""
    trainer = TRAINERS[args.nnunet_trainer]
    fold_dir = nnunet.first_trained_fold(trainer.__name__)
    epoch_seconds = []
    for log in sorted(fold_dir.glob("training_log_*.txt")) if fold_dir else []:
        epoch_seconds += [float(line.split("Epoch time:")[1].split("s")[0]) for line in log.read_text().splitlines()
                          if "Epoch time:" in line]
    losses = (workspace.diffusion / "losses.csv").read_text().splitlines()
    last = dict(zip(losses[0].split(","), losses[-1].split(",")))
    return {
        "nnunet": {"trainer": trainer.__name__, "epochs": len(epoch_seconds),
                   "iterations_per_epoch": trainer.ITERATIONS, "batch_size": nnunet.SMALL_BATCH,
                   "minutes": round(sum(epoch_seconds) / 60, 1), "fold": fold_dir.name if fold_dir else None},
        "diffusion": {"iterations": int(last["iteration"]), "minutes": round(float(last.get("elapsed_s", 0)) / 60, 1),
                      "last_loss": float(last["total"])},
        "hardware": "2 CPU cores, no GPU",
    }


def bundle(workspace: Workspace, splits: Splits, args) -> None:
    """Write the self-describing model folders (nnU-Net + diffusion) into ``args.out``."""
    trainer = TRAINERS[args.nnunet_trainer].__name__
    folds = args.nnunet_folds if args.nnunet_folds else [0]
    training = {"data": str(args.data), "splits": json.loads(workspace.splits_file.read_text())}
    nnunet.bundle_model(trainer, list(folds), args.out / DEFAULT_PRESEGMENTER, training)
    bundle_diffusion(workspace, args.out / DEFAULT_DIFFUSION, training)


def bundle_diffusion(workspace: Workspace, destination: Path, training: dict) -> None:
    state = torch.load(workspace.diffusion / "checkpoint.pt", map_location="cpu", weights_only=True)
    config = json.loads((workspace.diffusion / "config.json").read_text())
    destination.mkdir(parents=True, exist_ok=True)
    torch.save(state["net"], destination / "weights.pt")
    model_config = {
        "kind": "diffusion", "id": destination.name, "network": config["network"],
        "diffusion": {"num_train_timesteps": config["num_train_timesteps"], "schedule": "cosine",
                      "prediction": "x0", "t_start": config["t_start"]},
        "preprocessing": {"size": 320, "spacing_mm": 1.0, "intensity": "98th percentile -> 255",
                          "orientation": "sagittal, superior up, anterior left"},
        "training": {**training, "config": config, "iterations_done": state["iteration"]},
    }
    write_config(destination, model_config, ["weights.pt"])
