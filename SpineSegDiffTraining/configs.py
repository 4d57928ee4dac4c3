"""Typed settings of every training stage: one frozen dataclass per stage, callable from Python.

Each stage function (:mod:`.stages`, :mod:`.bank`, :mod:`.bundle`, :mod:`.grading`) takes one of these;
``spinesegdiff-train`` builds a subcommand from each class, one flag per field (``nnunet_folds`` ->
``--nnunet-folds``, the help text from the field's metadata), so a subcommand offers exactly the settings
its stage reads. Fields without a default are required. This module imports nothing heavy, so that
``--help`` and the bank stages (which travel without SimpleITK) stay light.

    from SpineSegDiffTraining.configs import DiffusionConfig
    from SpineSegDiffTraining.stages import run_diffusion
    run_diffusion(DiffusionConfig(data=Path("data"), work=Path("work"), iterations=100))
"""

from __future__ import annotations

import dataclasses
from dataclasses import MISSING, dataclass
from pathlib import Path
from typing import Literal

FEATURES_2D = (16, 16, 32, 64, 128, 16)
"""Widths of the 2D diffusion network."""
FEATURES_3D = (8, 8, 16, 32, 64, 8)
"""Half the 2D widths: one 3D training step of 2 patches of 16 x 128 x 128 takes about 3 s on 2 CPU cores."""
PATCH_3D = (16, 128, 128)
"""3D training patch (slices, rows, columns); also the default sliding window at inference."""
EVAL_STEPS = (1, 2, 5, 10)
"""Denoising steps compared by the evaluation (Table 2)."""
PRESEGMENTER_CONFIGURATION = "2d"
"""The nnU-Net configuration of the presegmenter, however it was trained."""
MODELS = Path("Resources/Models")
NnunetTrainer = Literal["cpu", "smoke"]


def option(default=MISSING, help: str = "", **argparse: object) -> dataclasses.Field:  # noqa: A002 - argparse's name
    """A config field with its command-line help (``argparse``: extra keywords for ``add_argument``)."""
    return dataclasses.field(default=default, metadata={"help": help, "argparse": argparse})


def narrow(config: object, cls: type):
    """``cls`` built from the same-named fields of ``config`` (``all`` hands its settings to each stage)."""
    names = {f.name for f in dataclasses.fields(config)}
    return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if f.name in names})


frozen = dataclass(frozen=True, kw_only=True)


@frozen
class PrepareConfig:
    """``prepare``: bring the cases into model space (cached in ``WORK``) and make or reuse the split."""

    data: Path = option(help="SPIDER root (images/, masks/) or a folder of <case>/image.nii.gz + mask.nii.gz")
    work: Path = option(help="work folder: every stage resumes from it")
    folds: int = option(5, "K of the patient-wise K-fold split (used when the split is first made)")


@frozen
class _OnDevice:
    device: str = option("cpu", "torch device (cpu, cuda, cuda:1, ...)")
    threads: int | None = option(None, "CPU threads for torch (default: all cores)")


@frozen
class _Models:
    out: Path = option(MODELS, "the model folders (nnunet-2d-t2, spinesegdiff-2d-t2, ...)")


@frozen
class _Trainer:
    nnunet_trainer: NnunetTrainer = option("cpu", "nnU-Net trainer: cpu (the real budget) or smoke (tests)")


@frozen
class _Refiner(_Trainer):
    iterations: int = option(3000, "diffusion training iterations")
    minutes: float | None = option(None, "stop diffusion training after this long (resumable)")
    features: tuple[int, int, int, int, int, int] | None = option(
        None, f"diffusion network widths (default {FEATURES_2D} in 2D, {FEATURES_3D} in 3D)")


@frozen
class _WarmStart:
    init_from: Path | None = option(None, "warm start: a diffusion model folder of the same network (its weights, "
                                          "or its resume/checkpoint.pt to continue that run); ignored once the run "
                                          "has a checkpoint of its own (default: from scratch)")


@frozen
class _Patch:
    patch_size: tuple[int, int, int] = option(PATCH_3D, "3D training patch: slices, rows, columns")


@frozen
class _VolumeInference:
    roi_size: tuple[int, int, int] | None = option(None, "3D sliding window at inference (default: the "
                                                         "training patch)")
    volume_t_start: int | None = option(None, "default t_start of the 3D model (default: its training t_start)")


@frozen
class ExportBankConfig(_Models, PrepareConfig):
    """``export-bank``: write the train/validation cases and the presegmenter's plans as a slice bank."""

    bank: Path = option(help="the bank folder to write (then run bank-all on any device)")


@frozen
class NnunetConfig(_OnDevice, _Trainer, PrepareConfig):
    """``nnunet``: nnU-Net v2 plan, preprocess and train the folds (out-of-fold predictions included)."""

    nnunet_folds: tuple[int, ...] | None = option(None, "train only these folds (default: all K)")


@frozen
class DiffusionConfig(_WarmStart, _OnDevice, _Refiner, PrepareConfig):
    """``diffusion``: the 2D diffusion model, from the nnU-Net folds' presegmentations."""


@frozen
class Diffusion3dConfig(_Patch, DiffusionConfig):
    """``diffusion3d``: the 3D Diff-UNet on patches of whole volumes."""


@frozen
class BundleConfig(_VolumeInference, _Trainer, _Models):
    """``bundle``: the model folders from the trained runs of ``WORK``."""

    work: Path = option(help="work folder of the trained models")
    nnunet_folds: tuple[int, ...] | None = option(None, "presegmenter folds to bundle (default: 0)")
    data: Path | None = option(None, "training data recorded in the model folders (default: the data the work "
                                     "folder was prepared from)")


@frozen
class EvaluateConfig(_OnDevice, _Trainer, _Models, PrepareConfig):
    """``evaluate``: the central-slice table on the test cases, then the model cards."""

    eval_steps: tuple[int, ...] = option(EVAL_STEPS, "denoising steps compared in the evaluation (Table 2)")


@frozen
class EvaluateVolumesConfig(_OnDevice, _Trainer, _Models, PrepareConfig):
    """``evaluate-volumes``: the whole-volume table (when a 3D model is bundled), then the model cards."""


@frozen
class EvaluateThickConfig(_OnDevice, _Models, PrepareConfig):
    """``evaluate-thick``: the test cases re-acquired with thicker slices."""


@frozen
class GradingConfig(_OnDevice, _Models, PrepareConfig):
    """``grading``: select, fit, evaluate and bundle the disc grader (``OUT/disc-grading-t2``)."""

    gradings: Path | None = option(None, "SPIDER's radiological_gradings.csv (default: the one in DATA)")


@frozen
class AllConfig(_VolumeInference, _Patch, _Refiner, _OnDevice, _Models, PrepareConfig):
    """``all``: nnunet, diffusion, diffusion3d, bundle, evaluate and evaluate-volumes in turn."""

    nnunet_folds: tuple[int, ...] | None = option(None, "train and bundle only these folds (default: train all "
                                                        "K, bundle fold 0)")
    eval_steps: tuple[int, ...] = option(EVAL_STEPS, "denoising steps compared in the evaluation (Table 2)")


@frozen
class _Bank:
    bank: Path = option(help="the slice bank (written by export-bank)")
    run: Path = option(help="run folder: every bank stage resumes from it")


@frozen
class _BankDevice:
    device: str = option("cuda", "torch device (cuda, cuda:1, cpu, ...)")
    threads: int = option(2, "CPU threads of each process")


@frozen
class BankNnunetConfig(_BankDevice, _Bank):
    """``bank-nnunet``: one presegmenter from the bank (fold k, then its out-of-fold labels, or all data)."""

    fold: str = option("all", "fold index or 'all'")
    minutes: float = option(1.0, "training time")
    batch_size: int = option(4, "slices per step")


@frozen
class BankDiffusionConfig(_WarmStart, _BankDevice, _Bank):
    """``bank-diffusion``: the 2D refiner from the out-of-fold labels of ``bank-nnunet``."""

    minutes: float = option(1.0, "training time")
    batch_size: int = option(4, "crops (2D) or patches (3D) per step")


@frozen
class BankDiffusion3dConfig(BankDiffusionConfig):
    """``bank-diffusion3d``: the 3D refiner from the out-of-fold labels of ``bank-nnunet``."""


@frozen
class BankAllConfig(_BankDevice, _Bank):
    """``bank-all``: every presegmenter side by side, then both refiners side by side, on one device."""

    nnunet_minutes: float = option(4.0, "training time of each presegmenter")
    diffusion_minutes: float = option(3.0, "training time of each refiner")
    nnunet_batch: int = option(24, "slices per presegmenter step")
    diffusion_batch: int = option(16, "crops per 2D refiner step")
    diffusion3d_batch: int = option(4, "patches per 3D refiner step")
    init_models: Path | None = option(None, "warm-start each refiner from its folder here (e.g. Resources/Models, "
                                            "the init of bank-diffusion; default: from scratch)")


@frozen
class BankBundleConfig(_VolumeInference, _Models, _Bank):
    """``bank-bundle``: the model folders from a finished bank run."""

    nnunet_folds: tuple[str, ...] = option(("all",), "presegmenter folds to bundle")
    hardware: str | None = option(None, "recorded in the model folders (default: the device of the run's "
                                        "summary.json)")
