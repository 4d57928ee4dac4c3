"""What a training run used and did: its device (recorded next to each run), and the summary of a work
folder's training logs that goes into the model cards."""

from __future__ import annotations

import json
from pathlib import Path

import torch

DEVICE_FILE = "device.txt"
"""Written into a run folder by :func:`record_device`: the device that trained it, in words."""


def use_threads(threads: int | None) -> None:
    """Let torch use ``threads`` CPU threads (None: leave torch's default, all cores)."""
    if threads:
        torch.set_num_threads(threads)


def describe_device(device: str | torch.device) -> str:
    """``device`` in words: the GPU's name (``NVIDIA H200``) or ``CPU, N threads``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads" if device.type == "cpu" else str(device)


def record_device(run_dir: Path, device: str | torch.device) -> None:
    """Write :func:`describe_device` into ``run_dir``, for :func:`training_summary`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / DEVICE_FILE).write_text(describe_device(device) + "\n")


def recorded_devices(*run_dirs: Path) -> str:
    """The devices recorded in ``run_dirs`` (distinct, in order), or ``not recorded``."""
    found = [(d / DEVICE_FILE).read_text().strip() for d in run_dirs if (d / DEVICE_FILE).is_file()]
    return "; ".join(dict.fromkeys(found)) or "not recorded"


def training_summary(workspace, nnunet_trainer: str) -> dict | None:
    """How long, how much and on what each model trained in ``workspace`` (a :class:`~.workspace.Workspace`),
    read back from the training logs; None when the models were not trained in this work folder."""
    if not (workspace.diffusion / "losses.csv").is_file():
        return None
    from . import nnunet

    trainer = nnunet.trainer_class(nnunet_trainer)
    fold_dir = nnunet.first_trained_fold(trainer.__name__)
    epoch_seconds = []
    for log in sorted(fold_dir.glob("training_log_*.txt")) if fold_dir else []:
        epoch_seconds += [float(line.split("Epoch time:")[1].split("s")[0]) for line in log.read_text().splitlines()
                          if "Epoch time:" in line]
    summary = {
        "nnunet": {"trainer": trainer.__name__, "epochs": len(epoch_seconds),
                   "iterations_per_epoch": trainer.ITERATIONS, "batch_size": nnunet.SMALL_BATCH,
                   "minutes": round(sum(epoch_seconds) / 60, 1), "fold": fold_dir.name if fold_dir else None},
        "diffusion": diffusion_log(workspace.diffusion),
        "hardware": recorded_devices(workspace.nnunet, workspace.diffusion, workspace.diffusion_3d),
    }
    if (workspace.diffusion_3d / "losses.csv").is_file():
        summary["diffusion_3d"] = diffusion_log(workspace.diffusion_3d)
    return summary


def diffusion_log(run_dir: Path) -> dict:
    """Iterations, minutes and last loss of a diffusion run, from its ``losses.csv``."""
    losses = (run_dir / "losses.csv").read_text().splitlines()
    last = dict(zip(losses[0].split(","), losses[-1].split(",")))
    log = {"iterations": int(last["iteration"]), "minutes": round(float(last.get("elapsed_s", 0)) / 60, 1),
           "last_loss": float(last["total"])}
    init = run_dir / "init_from.json"  # written by a warm start (.warm_start)
    if init.is_file():
        log["init_from"] = json.loads(init.read_text())
    return log
