"""The work-folder stages (nnU-Net's own training on a CPU, then the refiners, evaluation, model cards), each
a function of its typed config (:mod:`.configs`), resumable from ``config.work``:

    run_prepare, run_export_bank, run_nnunet, run_diffusion, run_diffusion3d, run_evaluate,
    run_evaluate_volumes, run_evaluate_thick, run_all

(``bundle`` is :func:`.bundle.run_bundle`, ``grading`` :func:`.grading.run_grading`, the bank path :mod:`.bank`.)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from SpineSegDiffLib.inference.networks import NetworkConfig
from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION_3D, DEFAULT_PRESEGMENTER, ModelFolder

from . import nnunet
from .configs import (
    FEATURES_2D,
    FEATURES_3D,
    AllConfig,
    BundleConfig,
    Diffusion3dConfig,
    DiffusionConfig,
    EvaluateConfig,
    EvaluateThickConfig,
    EvaluateVolumesConfig,
    ExportBankConfig,
    NnunetConfig,
    PrepareConfig,
    narrow,
)
from .diffusion import DiffusionTrainingConfig, SliceBank, config_to_json, train_diffusion
from .splits import Splits
from .summary import record_device, training_summary
from .workspace import Workspace, open_workspace

BATCH_3D = 2
"""3D patches per step of the work-folder path (CPU)."""


def prepared(config: PrepareConfig) -> tuple[Workspace, Splits, dict[str, Path]]:
    """The work folder of ``config`` (see :func:`~.workspace.open_workspace`), its split and model-space cases."""
    workspace = open_workspace(config.work, getattr(config, "threads", None))
    _, splits, files = workspace.prepare(config.data, config.folds)
    return workspace, splits, files


def run_prepare(config: PrepareConfig) -> Splits:
    """``prepare``: cache the cases in model space and make (or reuse) the split; returns the split."""
    return prepared(config)[1]


def run_export_bank(config: ExportBankConfig) -> Path:
    """``export-bank``: the train/validation cases and the presegmenter plans of ``config.out`` as a bank."""
    from .bank import export_bank

    _, splits, files = prepared(config)
    export_bank(files, splits, config.out / DEFAULT_PRESEGMENTER, config.bank)
    return config.bank


def run_nnunet(config: NnunetConfig) -> None:
    """``nnunet``: export, plan and preprocess once, then train each fold (resumable) with OOF predictions."""
    workspace, splits, files = prepared(config)
    raw = workspace.nnunet / "raw" / nnunet.DATASET_NAME
    if not (raw / "dataset.json").is_file():
        nnunet.export_raw_dataset(files, splits.train_val, workspace.nnunet)
    if not (workspace.nnunet / "preprocessed" / nnunet.DATASET_NAME / "splits_final.json").is_file():
        nnunet.plan_and_preprocess(splits)
    trainer = nnunet.trainer_class(config.nnunet_trainer)
    for fold in config.nnunet_folds if config.nnunet_folds is not None else range(len(splits.folds)):
        nnunet.train_fold(fold, trainer, config.device)
    record_device(workspace.nnunet, config.device)


def presegment_training_cases(workspace: Workspace, splits: Splits, files: dict[str, Path], nnunet_trainer: str,
                              device: str) -> dict[str, Path]:
    """Presegmentations of every train/validation case: out-of-fold where that fold was trained,
    else from the first trained fold's model (in-sample for its training cases)."""
    import SimpleITK as sitk

    from SpineSegDiffLib.inference.presegment import NnUNetPresegmenter

    from .prepare import load_case

    trainer = nnunet.trainer_class(nnunet_trainer).__name__
    found = nnunet.oof_prediction_files(trainer, splits)
    missing = [c for c in splits.train_val if c not in found]
    folder = nnunet.first_trained_fold(trainer)
    if not missing or folder is None:
        return found
    out = workspace.root / "presegmentations"
    out.mkdir(exist_ok=True)
    presegmenter = NnUNetPresegmenter(ModelFolder(folder.parent, {"kind": "nnunet", "trusted_pickles": True}),
                                      torch.device(device), folds=[folder.name.removeprefix("fold_")])
    for case_id in missing:
        path = out / f"{case_id}.nii.gz"
        if not path.is_file():
            image, _ = load_case(files[case_id])
            sitk.WriteImage(sitk.GetImageFromArray(presegmenter(image)), str(path), useCompression=True)
        found[case_id] = path
    return found


def run_diffusion(config: DiffusionConfig) -> None:
    """``diffusion``: the 2D model on the train/validation cases, starting from real presegmentations."""
    workspace, splits, files = prepared(config)
    presegmentations = presegment_training_cases(workspace, splits, files, config.nnunet_trainer, config.device)
    print(f"diffusion training: {len(splits.train_val)} cases, {len(presegmentations)} with presegmentations")
    bank = SliceBank(files, splits.train_val, presegmentations, config.device)
    training = DiffusionTrainingConfig(network=NetworkConfig(features=tuple(config.features or FEATURES_2D)),
                                       iterations=config.iterations)
    _train(bank, training, workspace.diffusion, config)


def run_diffusion3d(config: Diffusion3dConfig) -> None:
    """``diffusion3d``: the 3D Diff-UNet on patches of the train/validation volumes (same presegmentations)."""
    from .volumes import VolumeBank

    workspace, splits, files = prepared(config)
    presegmentations = presegment_training_cases(workspace, splits, files, config.nnunet_trainer, config.device)
    print(f"3D diffusion training: {len(splits.train_val)} volumes, patches {tuple(config.patch_size)}")
    bank = VolumeBank(files, splits.train_val, presegmentations, config.device)
    network = NetworkConfig(spatial_dims=3, features=tuple(config.features or FEATURES_3D))
    training = DiffusionTrainingConfig(network=network, iterations=config.iterations, batch_size=BATCH_3D,
                                       patch_size=tuple(config.patch_size))
    _train(bank, training, workspace.diffusion_3d, config)


def _train(bank, training: DiffusionTrainingConfig, run_dir: Path, config: DiffusionConfig) -> None:
    train_diffusion(bank, training, run_dir, config.minutes, config.device, config.init_from)
    (run_dir / "config.json").write_text(json.dumps(config_to_json(training), indent=2))
    record_device(run_dir, config.device)


def run_evaluate(config: EvaluateConfig) -> dict:
    """``evaluate``: the central-slice table of every setting on the test cases, then the model cards."""
    from .evaluate import evaluate_models
    from .model_card import write_model_cards

    workspace, splits, _ = prepared(config)
    results = evaluate_models(workspace, splits, config.out, config.data, config.device, tuple(config.eval_steps))
    write_model_cards(config.out, workspace.evaluation, training_summary(workspace, config.nnunet_trainer))
    return results


def run_evaluate_volumes(config: EvaluateVolumesConfig) -> dict | None:
    """``evaluate-volumes``: the whole-volume table (None without a bundled 3D model), then the model cards."""
    from .evaluate_volumes import evaluate_volumes
    from .model_card import write_model_cards

    workspace, splits, _ = prepared(config)
    results = None
    if (config.out / DEFAULT_DIFFUSION_3D).is_dir():
        results = evaluate_volumes(workspace, splits, config.out, config.data, config.device)
    write_model_cards(config.out, workspace.evaluation, training_summary(workspace, config.nnunet_trainer))
    return results


def run_evaluate_thick(config: EvaluateThickConfig) -> dict:
    """``evaluate-thick``: central-slice scores of the test cases re-acquired with thicker slices."""
    from .thick_slices import evaluate_thick_slices

    workspace, splits, _ = prepared(config)
    return evaluate_thick_slices(splits, config.out, config.data, workspace.evaluation, config.device)


def run_all(config: AllConfig) -> None:
    """``all``: nnunet, diffusion, diffusion3d, bundle, evaluate, evaluate-volumes, each resuming."""
    from .bundle import run_bundle

    run_nnunet(narrow(config, NnunetConfig))
    run_diffusion(narrow(config, DiffusionConfig))
    run_diffusion3d(narrow(config, Diffusion3dConfig))
    run_bundle(narrow(config, BundleConfig))
    run_evaluate(narrow(config, EvaluateConfig))
    run_evaluate_volumes(narrow(config, EvaluateVolumesConfig))
