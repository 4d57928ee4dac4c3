"""The training stages behind ``spinesegdiff-train`` (nnU-Net, diffusion, bundle, evaluate)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import SimpleITK as sitk
import torch

from SpineSegDiffLib.modelset.folder import (
    DEFAULT_DIFFUSION,
    DEFAULT_DIFFUSION_3D,
    DEFAULT_PRESEGMENTER,
    ModelFolder,
    write_config,
)
from SpineSegDiffLib.inference.networks import NetworkConfig
from SpineSegDiffLib.inference.presegment import NnUNetPresegmenter
from SpineSegDiffLib.inference.volumetric import DEFAULT_OVERLAP

from . import nnunet
from .diffusion import DiffusionTrainingConfig, SliceBank, config_to_json, train_diffusion
from .model_card import write_model_cards
from .nnunet_trainer import nnUNetTrainerSpineCPU, nnUNetTrainerSpineSmoke
from .prepare import load_case
from .splits import Splits
from .volumes import VolumeBank
from .workspace import Workspace

TRAINERS = {"cpu": nnUNetTrainerSpineCPU, "smoke": nnUNetTrainerSpineSmoke}
FEATURES_2D = (16, 16, 32, 64, 128, 16)
FEATURES_3D = (8, 8, 16, 32, 64, 8)
"""Half the 2D widths: one 3D training step of 2 patches of 16 x 128 x 128 takes about 3 s on 2 CPU cores."""
BATCH_3D = 2


def run(stage: str, workspace: Workspace, args: argparse.Namespace) -> None:
    _, splits, files = workspace.prepare(args.data, args.folds)
    if stage == "export-bank":
        from .bank_run import export_bank

        export_bank(files, splits, args.out / DEFAULT_PRESEGMENTER, args.bank)
    if stage in ("nnunet", "all"):
        train_presegmentation(workspace, splits, files, args)
    if stage in ("diffusion", "all"):
        train_refinement(workspace, splits, files, args)
    if stage in ("diffusion3d", "all"):
        train_volumetric_refinement(workspace, splits, files, args)
    if stage in ("bundle", "all"):
        bundle(workspace, splits, args)
    if stage in ("evaluate", "all"):
        from .evaluate import evaluate_models

        evaluate_models(workspace, splits, args.out, args.data, args.device, tuple(args.eval_steps))
    if stage in ("evaluate-volumes", "all") and (args.out / DEFAULT_DIFFUSION_3D).is_dir():
        from .evaluate_volumes import evaluate_volumes

        evaluate_volumes(workspace, splits, args.out, args.data, args.device)
    if stage == "evaluate-thick":
        from .thick_slices import evaluate_thick_slices

        evaluate_thick_slices(splits, args.out, args.data, workspace.evaluation, args.device)
    if stage in ("evaluate", "evaluate-volumes", "all"):
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
    network = NetworkConfig(features=tuple(args.features or FEATURES_2D))
    config = DiffusionTrainingConfig(network=network, iterations=args.iterations)
    train_diffusion(bank, config, workspace.diffusion, args.minutes)
    (workspace.diffusion / "config.json").write_text(json.dumps(config_to_json(config), indent=2))


def train_volumetric_refinement(workspace: Workspace, splits: Splits, files: dict[str, Path], args) -> None:
    """Train the 3D Diff-UNet on patches of the train/validation volumes (same presegmentations as 2D)."""
    presegmentations = presegment_training_cases(workspace, splits, files, args)
    print(f"3D diffusion training: {len(splits.train_val)} volumes, patches {tuple(args.patch_size)}")
    bank = VolumeBank(files, splits.train_val, presegmentations)
    network = NetworkConfig(spatial_dims=3, features=tuple(args.features or FEATURES_3D))
    config = DiffusionTrainingConfig(network=network, iterations=args.iterations, batch_size=BATCH_3D,
                                     patch_size=tuple(args.patch_size))
    train_diffusion(bank, config, workspace.diffusion_3d, args.minutes)
    (workspace.diffusion_3d / "config.json").write_text(json.dumps(config_to_json(config), indent=2))


def training_summary(workspace: Workspace, args) -> dict | None:
    """How long and how much each model trained, read back from the training logs; None when the models
    were not trained in this work folder."""
    if not (workspace.diffusion / "losses.csv").is_file():
        return None
    trainer = TRAINERS[args.nnunet_trainer]
    fold_dir = nnunet.first_trained_fold(trainer.__name__)
    epoch_seconds = []
    for log in sorted(fold_dir.glob("training_log_*.txt")) if fold_dir else []:
        epoch_seconds += [float(line.split("Epoch time:")[1].split("s")[0]) for line in log.read_text().splitlines()
                          if "Epoch time:" in line]
    summary = {
        "nnunet": {"trainer": trainer.__name__, "epochs": len(epoch_seconds),
                   "iterations_per_epoch": trainer.ITERATIONS, "batch_size": nnunet.SMALL_BATCH,
                   "minutes": round(sum(epoch_seconds) / 60, 1), "fold": fold_dir.name if fold_dir else None},
        "diffusion": _diffusion_log(workspace.diffusion),
        "hardware": "2 CPU cores, no GPU",
    }
    if (workspace.diffusion_3d / "losses.csv").is_file():
        summary["diffusion_3d"] = _diffusion_log(workspace.diffusion_3d)
    return summary


def _diffusion_log(run_dir: Path) -> dict:
    losses = (run_dir / "losses.csv").read_text().splitlines()
    last = dict(zip(losses[0].split(","), losses[-1].split(",")))
    return {"iterations": int(last["iteration"]), "minutes": round(float(last.get("elapsed_s", 0)) / 60, 1),
            "last_loss": float(last["total"])}


def bundle(workspace: Workspace, splits: Splits, args) -> None:
    """Write the self-describing model folders (nnU-Net + diffusion) into ``args.out``."""
    trainer = TRAINERS[args.nnunet_trainer].__name__
    folds = args.nnunet_folds if args.nnunet_folds else [0]
    training = {"data": str(args.data), "splits": json.loads(workspace.splits_file.read_text())}
    nnunet.bundle_model(trainer, list(folds), args.out / DEFAULT_PRESEGMENTER, training)
    bundle_diffusion(workspace.diffusion, args.out / DEFAULT_DIFFUSION, training)
    if (workspace.diffusion_3d / "config.json").is_file():
        inference = {"roi_size": list(args.roi_size or args.patch_size), "overlap": DEFAULT_OVERLAP}
        if args.volume_t_start is not None:
            inference["t_start"] = args.volume_t_start
        bundle_diffusion(workspace.diffusion_3d, args.out / DEFAULT_DIFFUSION_3D, training, inference)


def bundle_diffusion(run_dir: Path, destination: Path, training: dict, inference: dict | None = None) -> None:
    """A diffusion model folder from a training run (``run_dir``: checkpoint.pt + config.json)."""
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    config = json.loads((run_dir / "config.json").read_text())
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
    if inference:
        model_config["inference"] = inference
    write_config(destination, model_config, ["weights.pt"])
