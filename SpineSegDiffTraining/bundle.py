"""The one bundler: self-describing model folders (``config.json`` + weights + checksums) from either training
path, a work folder (``bundle``) or a bank run (``bank-bundle``).

A diffusion folder's preprocessing and noise schedule are not typed here: they are written from the core's
own dataclasses (:class:`~SpineSegDiffLib.inference.preprocess.Preprocessing`,
:class:`~SpineSegDiffLib.modelset.settings.DiffusionSettings`), which inference reads back.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import torch

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.inference.preprocess import DEFAULT_PREPROCESSING, MODEL_ORIENTATION_TEXT, Preprocessing
from SpineSegDiffLib.inference.volumetric import DEFAULT_OVERLAP
from SpineSegDiffLib.modelset.folder import (
    DEFAULT_DIFFUSION,
    DEFAULT_DIFFUSION_3D,
    DEFAULT_PRESEGMENTER,
    write_config,
)
from SpineSegDiffLib.modelset.settings import DiffusionSettings

from .configs import PRESEGMENTER_CONFIGURATION, BankBundleConfig, BundleConfig
from .nnunet_loop import LoopConfig, presegmenter_checkpoint
from .warm_start import init_provenance

BANK_DATA = "SPIDER T2 (bank of model-space train/validation cases)"


def preprocessing_config(settings: Preprocessing = DEFAULT_PREPROCESSING) -> dict:
    """``preprocessing`` of a model folder, as :func:`~SpineSegDiffLib.modelset.settings.preprocessing_settings`
    reads it back."""
    return {"size": settings.size, "spacing_mm": settings.spacing_mm,
            "intensity": f"{settings.intensity_percentile:g}th percentile -> {settings.intensity_max:g}",
            "orientation": MODEL_ORIENTATION_TEXT}


def bundle_diffusion(run_dir: Path, destination: Path, training: dict, inference: dict | None = None) -> None:
    """A diffusion model folder from a training run (``run_dir``: checkpoint.pt + config.json)."""
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    config = json.loads((run_dir / "config.json").read_text())
    schedule = DiffusionSettings(num_train_timesteps=config["num_train_timesteps"], t_start=config["t_start"])
    destination.mkdir(parents=True, exist_ok=True)
    torch.save(state["net"], destination / "weights.pt")
    model_config = {
        "kind": "diffusion", "id": destination.name, "network": config["network"],
        "diffusion": dataclasses.asdict(schedule), "preprocessing": preprocessing_config(),
        "training": {**training, "config": config, "iterations_done": state["iteration"]},
    }
    if init_provenance(run_dir) is not None:
        model_config["training"]["init_from"] = init_provenance(run_dir)
    if inference:
        model_config["inference"] = inference
    write_config(destination, model_config, ["weights.pt"])


def volume_inference(run_dir: Path, roi_size: tuple[int, ...] | None, t_start: int | None) -> dict:
    """``inference`` of a 3D folder: the sliding window (default: the training patch of ``run_dir``), its
    overlap and, when given, the default ``t_start``."""
    patch = json.loads((run_dir / "config.json").read_text())["patch_size"]
    inference = {"roi_size": list(roi_size or patch), "overlap": DEFAULT_OVERLAP}
    if t_start is not None:
        inference["t_start"] = t_start
    return inference


def bundle_refiners(run_root: Path, out: Path, training: dict, roi_size, t_start) -> None:
    """The 2D folder from ``run_root/diffusion`` and, when trained, the 3D one from ``run_root/diffusion-3d``."""
    bundle_diffusion(run_root / "diffusion", out / DEFAULT_DIFFUSION, training)
    if (run_root / "diffusion-3d" / "config.json").is_file():
        bundle_diffusion(run_root / "diffusion-3d", out / DEFAULT_DIFFUSION_3D, training,
                         volume_inference(run_root / "diffusion-3d", roi_size, t_start))


def write_presegmenter(destination: Path, plans_dir: Path, checkpoints: dict, training: dict) -> None:
    """A presegmenter folder: ``plans_dir``'s dataset.json and plans.json, ``fold_<k>/checkpoint.pth`` for each
    ``{k: checkpoint}`` (:func:`~.nnunet_loop.presegmenter_checkpoint`), and its config."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in ("dataset.json", "plans.json"):
        shutil.copy(plans_dir / name, destination / name)
    files = []
    for fold, checkpoint in checkpoints.items():
        (destination / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(checkpoint, destination / f"fold_{fold}" / "checkpoint.pth")
        files.append(f"fold_{fold}/checkpoint.pth")
    config = {"kind": "nnunet", "id": destination.name, "configuration": PRESEGMENTER_CONFIGURATION,
              "folds": list(checkpoints), "checkpoint": "checkpoint.pth", "training": training}
    write_config(destination, config, ["dataset.json", "plans.json", *files])


def run_bundle(config: BundleConfig) -> None:
    """``bundle``: the presegmenter (nnU-Net's own training, ``config.nnunet_folds``, default fold 0) and the
    refiners of the work folder ``config.work`` into ``config.out``."""
    from . import nnunet
    from .workspace import open_workspace

    workspace = open_workspace(config.work)
    if not workspace.splits_file.is_file():
        raise SpineSegDiffError(f"{config.work} holds no trained models", "train them first (spinesegdiff-train all)")
    data = config.data or (workspace.data_file.read_text().strip() if workspace.data_file.is_file() else None)
    if data is None:
        raise SpineSegDiffError(f"{config.work} does not say which data it was trained on", "pass --data")
    training = {"data": str(data), "splits": json.loads(workspace.splits_file.read_text())}
    source = nnunet.results_folder(nnunet.trainer_class(config.nnunet_trainer).__name__)
    checkpoints = {}
    for fold in config.nnunet_folds or (0,):
        full = torch.load(source / f"fold_{fold}" / "checkpoint_final.pth", map_location="cpu",
                          weights_only=False)  # our own training output
        checkpoints[fold] = presegmenter_checkpoint(full["network_weights"], full["trainer_name"],
                                                    full["inference_allowed_mirroring_axes"])
    write_presegmenter(config.out / DEFAULT_PRESEGMENTER, source, checkpoints, training)
    bundle_refiners(workspace.root, config.out, training, config.roi_size, config.volume_t_start)


def run_bank_bundle(config: BankBundleConfig) -> None:
    """``bank-bundle``: the presegmenter (``config.nnunet_folds`` of the run, e.g. ``all``) and both refiners of
    the bank run ``config.run`` into ``config.out``."""
    summary = config.run / "summary.json"
    hardware = config.hardware
    if hardware is None:
        hardware = json.loads(summary.read_text()).get("device", "") if summary.is_file() else ""
    training = {"data": BANK_DATA, "splits": json.loads((config.bank / "splits.json").read_text()),
                "hardware": hardware}
    checkpoints, iterations = {}, {}
    for fold in config.nnunet_folds:
        checkpoint = torch.load(config.run / "nnunet" / f"fold_{fold}" / "checkpoint.pth", map_location="cpu",
                                weights_only=True)
        checkpoint["network_weights"] = {k: v.float() for k, v in checkpoint["network_weights"].items()}
        checkpoints[fold], iterations[fold] = checkpoint, checkpoint.get("iterations")
    loop = {**training, "trainer": "SpineSegDiffTraining.nnunet_loop", "iterations": iterations,
            "config": json.loads(json.dumps(dataclasses.asdict(LoopConfig())))}
    write_presegmenter(config.out / DEFAULT_PRESEGMENTER, config.bank, checkpoints, loop)
    bundle_refiners(config.run, config.out, training, config.roi_size, config.volume_t_start)
