"""Train every model from a compact *slice bank* on one device within a time budget.

A bank is a small folder that needs neither the raw data nor SimpleITK nor nnU-Net's preprocessing
(so it can travel to a GPU machine): ``cases/<id>.npz`` (model-space ``image`` uint8 and ``labels``,
``(N, 320, 320)``), ``splits.json`` and the presegmenter's ``plans.json`` / ``dataset.json``.

    spinesegdiff-train export-bank --data DATA --work WORK --bank BANK     (here, once)
    spinesegdiff-train bank-all --bank BANK --run RUN --device cuda --nnunet-minutes 4 --diffusion-minutes 3
    spinesegdiff-train bank-bundle --bank BANK --run RUN --out Resources/Models

``bank-all`` trains the K nnU-Net folds and an all-data model side by side (one ``bank-nnunet`` process each,
sharing the device), writes every training case's out-of-fold presegmentation, then trains the 2D and the
3D diffusion models side by side (``bank-diffusion``, ``bank-diffusion3d``) from those presegmentations.
Every run resumes from ``RUN``. Stage functions: :func:`run_bank_nnunet`, :func:`run_bank_diffusion`,
:func:`run_bank_diffusion3d`, :func:`run_bank_all` (and :func:`.bundle.run_bank_bundle`).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.inference.networks import NetworkConfig
from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION, DEFAULT_DIFFUSION_3D

from .configs import (
    FEATURES_2D,
    FEATURES_3D,
    BankAllConfig,
    BankDiffusion3dConfig,
    BankDiffusionConfig,
    BankNnunetConfig,
)
from .diffusion import DiffusionTrainingConfig, SliceBank, config_to_json, train_diffusion
from .nnunet_loop import LoopConfig, load_plans, predict_volume, train_presegmenter
from .splits import Splits
from .summary import describe_device
from .warm_start import RESUME, keep_resumable_state

UNLIMITED = 10**9


def export_bank(case_files: dict[str, Path], splits: Splits, presegmenter_folder: Path, bank: Path) -> None:
    """Write the train/validation cases (never the test cases) as a bank."""
    (bank / "cases").mkdir(parents=True, exist_ok=True)
    for case_id in splits.train_val:
        with np.load(case_files[case_id]) as data:
            image = np.clip(np.round(data["image"].astype(np.float32)), 0, 255).astype(np.uint8)
            np.savez_compressed(bank / "cases" / f"{case_id}.npz", image=image, labels=data["labels"],
                                spacing=data["spacing"])
    splits.save(bank / "splits.json")
    for name in ("plans.json", "dataset.json"):
        (bank / name).write_text((presegmenter_folder / name).read_text())


def bank_cases(bank: Path) -> tuple[Splits, dict[str, Path]]:
    """The bank's split and its case files (train/validation only)."""
    splits = Splits.load(bank / "splits.json")
    return splits, {case: bank / "cases" / f"{case}.npz" for case in splits.train_val}


def use_bank_device(threads: int) -> None:
    """``threads`` CPU threads per process, TF32 matrix products on CUDA."""
    torch.set_num_threads(threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True


def run_bank_nnunet(config: BankNnunetConfig) -> None:
    """``bank-nnunet``: one presegmenter, fold k (then its validation cases' out-of-fold labels) or ``all``."""
    use_bank_device(config.threads)
    splits, files = bank_cases(config.bank)
    cases = splits.train_val if config.fold == "all" else splits.training_cases(int(config.fold))
    plans, dataset_json = load_plans(config.bank)
    run_dir = config.run / "nnunet" / f"fold_{config.fold}"
    loop = LoopConfig(minutes=config.minutes, batch_size=config.batch_size)
    bank = SliceBank(files, cases, {}, config.device)
    net = train_presegmenter(bank, plans, dataset_json, run_dir, loop, config.device)
    if config.fold == "all":
        return
    (config.run / "oof").mkdir(parents=True, exist_ok=True)
    for case in splits.folds[int(config.fold)]:
        with np.load(files[case]) as data:
            labels = predict_volume(net, data["image"], config.device)
        np.savez_compressed(config.run / "oof" / f"{case}.npz", labels=labels)


def train_bank_refiner(config: BankDiffusionConfig, spatial_dims: int) -> None:
    """The 2D or 3D diffusion model from the out-of-fold presegmentations in ``run/oof``; its resumable state
    is also left in ``run/resume/<model id>/checkpoint.pt``, to carry back next to the bundled folder."""
    from .volumes import VolumeBank

    use_bank_device(config.threads)
    splits, files = bank_cases(config.bank)
    presegmentations = {p.stem: p for p in (config.run / "oof").glob("*.npz")}
    features = FEATURES_2D if spatial_dims == 2 else FEATURES_3D
    training = DiffusionTrainingConfig(network=NetworkConfig(spatial_dims=spatial_dims, features=features),
                                       iterations=UNLIMITED, batch_size=config.batch_size, checkpoint_every=500)
    bank = (SliceBank if spatial_dims == 2 else VolumeBank)(files, splits.train_val, presegmentations, config.device)
    run_dir = config.run / ("diffusion" if spatial_dims == 2 else "diffusion-3d")
    train_diffusion(bank, training, run_dir, config.minutes, config.device, config.init_from)
    (run_dir / "config.json").write_text(json.dumps(config_to_json(training), indent=2))
    model_id = DEFAULT_DIFFUSION if spatial_dims == 2 else DEFAULT_DIFFUSION_3D
    keep_resumable_state(run_dir, config.run / RESUME / model_id)


def run_bank_diffusion(config: BankDiffusionConfig) -> None:
    """``bank-diffusion``: the 2D refiner."""
    train_bank_refiner(config, 2)


def run_bank_diffusion3d(config: BankDiffusion3dConfig) -> None:
    """``bank-diffusion3d``: the 3D refiner."""
    train_bank_refiner(config, 3)


def launch(stage: str, config, log: Path) -> subprocess.Popen:
    """``spinesegdiff-train STAGE`` with ``config`` in a process of its own, output to ``log``."""
    from .cli import to_argv

    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "SpineSegDiffTraining.cli", stage, *to_argv(config)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def wait(processes: dict[str, subprocess.Popen]) -> None:
    """Wait for every process; raise naming the ones that failed."""
    failed = [name for name, p in processes.items() if p.wait() != 0]
    if failed:
        raise SpineSegDiffError(f"failed: {', '.join(failed)}", "see the logs under the run folder")


def run_bank_all(config: BankAllConfig) -> dict:
    """``bank-all``: nnU-Net folds + all-data model in parallel, then the 2D and 3D refiners in parallel;
    returns (and writes to ``run/summary.json``) the device and the wall time of each phase."""
    use_bank_device(config.threads)
    splits, _ = bank_cases(config.bank)
    common = {"bank": config.bank, "run": config.run, "device": config.device, "threads": config.threads}
    logs, started = config.run / "logs", time.time()
    folds = [str(k) for k in range(len(splits.folds))] + ["all"]
    wait({f"fold {f}": launch("bank-nnunet", BankNnunetConfig(**common, fold=f, minutes=config.nnunet_minutes,
                                                              batch_size=config.nnunet_batch), logs / f"fold_{f}.txt")
          for f in folds})
    nnunet_done = time.time()
    refiners = {"2d": ("bank-diffusion", BankDiffusionConfig, config.diffusion_batch, DEFAULT_DIFFUSION),
                "3d": ("bank-diffusion3d", BankDiffusion3dConfig, config.diffusion3d_batch, DEFAULT_DIFFUSION_3D)}
    init = (lambda name: config.init_models / name) if config.init_models else (lambda name: None)  # noqa: E731
    wait({f"diffusion {d}": launch(stage, kind(**common, minutes=config.diffusion_minutes, batch_size=batch,
                                               init_from=init(name)), logs / f"diffusion_{d}.txt")
          for d, (stage, kind, batch, name) in refiners.items()})
    summary = {"device": describe_device(config.device), "nnunet_wall_minutes": round((nnunet_done - started) / 60, 2),
               "diffusion_wall_minutes": round((time.time() - nnunet_done) / 60, 2), "folds": folds}
    (config.run / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
