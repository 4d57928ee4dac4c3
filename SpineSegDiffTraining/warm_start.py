"""Warm starts: a diffusion run that begins from a model folder instead of from scratch (``--init-from``).

A run with no ``checkpoint.pt`` of its own starts from the folder's ``weights.pt`` (iteration 0, a fresh
optimiser), or, when the folder holds a carried-back resumable state (``resume/checkpoint.pt``, as a bank run
leaves in ``RUN/resume/<model id>/``), from that state: weights, optimiser, random generator and iteration,
so the run continues where that one stopped. A run that has its own checkpoint resumes it; the init is then
ignored. What the run started from is written to ``init_from.json`` in the run folder, which the bundler copies
into the model folder's ``training`` section (path, the weights' sha256, iterations done before this run).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.inference.networks import NetworkConfig
from SpineSegDiffLib.modelset.folder import open_model_folder

CHECKPOINT = "checkpoint.pt"
"""The resumable state of a run (:func:`.diffusion.save_training_state`)."""
RESUME = "resume"
"""Subfolder holding a carried-back resumable state: ``<model folder>/resume/checkpoint.pt``."""
INIT_FILE = "init_from.json"
"""Written into a warm-started run folder: what it started from."""


def check_architecture(folder_config: dict, network: NetworkConfig, path: Path) -> None:
    """Raise one clear error when the folder's network is not the one this run trains."""
    wanted = json.loads(json.dumps(dataclasses.asdict(network)))
    found = folder_config.get("network")
    if found != wanted:
        differing = sorted(k for k in set(wanted) | set(found or {}) if (found or {}).get(k) != wanted.get(k))
        raise SpineSegDiffError(
            f"--init-from {path}: its network differs from this run's in {', '.join(differing)} "
            f"(folder {found}, run {wanted})",
            "warm-start from a folder of the same network (2D or 3D, same --features), or drop --init-from")


def prior_iterations(folder_config: dict) -> int:
    """Iterations that trained a bundled folder's weights, counting the runs it was itself warm-started from."""
    training = folder_config.get("training", {})
    earlier = training.get("init_from") or {}
    before = 0 if earlier.get("resumed_state") else int(earlier.get("iterations_before", 0))
    return int(training.get("iterations_done", 0)) + before


def warm_start(init_from: Path, net, optimizer, generator, network: NetworkConfig) -> tuple[int, float, dict]:
    """Load ``init_from`` into a fresh run; returns (iteration, seconds trained, provenance)."""
    from .diffusion import resume_training_state

    folder = open_model_folder(init_from, "diffusion")  # verifies the weights' checksum
    check_architecture(folder.config, network, Path(init_from))
    resume = folder.path / RESUME / CHECKPOINT
    if resume.is_file():
        iteration, elapsed = resume_training_state(resume, net, optimizer, generator)
        done = folder.config.get("training", {}).get("iterations_done")
        if done is not None and int(done) != iteration:
            raise SpineSegDiffError(f"{resume} is at iteration {iteration}, the folder's weights at {done}",
                                    f"copy the state of the run these weights were bundled from, or remove {resume}")
        before = iteration
    else:
        net.load_state_dict(torch.load(folder.file("weights.pt"), map_location="cpu", weights_only=True))
        iteration, elapsed, before = 0, 0.0, prior_iterations(folder.config)
    provenance = {"path": str(init_from), "weights_sha256": folder.config["files"]["weights.pt"],
                  "iterations_before": before, "resumed_state": resume.is_file()}
    return iteration, elapsed, provenance


def start_training_state(work_dir: Path, init_from: Path | None, net, optimizer, generator,
                         network: NetworkConfig) -> tuple[int, float]:
    """The run's own checkpoint when there is one, else ``init_from`` (when given), else nothing;
    returns (iterations done, seconds trained)."""
    from .diffusion import resume_training_state

    state_file = work_dir / CHECKPOINT
    if state_file.is_file() or init_from is None:
        if init_from is not None:
            print(f"resuming {state_file}: --init-from {init_from} ignored")
        return resume_training_state(state_file, net, optimizer, generator)
    iteration, elapsed, provenance = warm_start(init_from, net, optimizer, generator, network)
    work_dir.mkdir(parents=True, exist_ok=True)
    (work_dir / INIT_FILE).write_text(json.dumps(provenance, indent=2))
    print(f"warm start from {init_from} after {provenance['iterations_before']} iterations")
    return iteration, elapsed


def init_provenance(run_dir: Path) -> dict | None:
    """What the run in ``run_dir`` was warm-started from (see :func:`start_training_state`), or None."""
    path = run_dir / INIT_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def keep_resumable_state(run_dir: Path, destination: Path) -> None:
    """Copy the run's ``checkpoint.pt`` to ``destination/checkpoint.pt`` (atomically), to carry it back."""
    import shutil

    destination.mkdir(parents=True, exist_ok=True)
    temporary = destination / (CHECKPOINT + ".tmp")
    shutil.copyfile(run_dir / CHECKPOINT, temporary)
    temporary.replace(destination / CHECKPOINT)
