"""Train every model from a compact *slice bank* on one device within a time budget.

A bank is a small folder that needs neither the raw data nor SimpleITK nor nnU-Net's preprocessing
(so it can travel to a GPU machine): ``cases/<id>.npz`` (model-space ``image`` uint8 and ``labels``,
``(N, 320, 320)``), ``splits.json`` and the presegmenter's ``plans.json`` / ``dataset.json``.

    spinesegdiff-train export-bank --data DATA --work WORK --bank BANK     (here, once)
    python -m SpineSegDiffTraining.bank_run all --bank BANK --out RUN --device cuda \\
        --nnunet-minutes 4 --diffusion-minutes 3

``all`` trains the K nnU-Net folds and an all-data model side by side (one process each, sharing the
device), writes every training case's out-of-fold presegmentation, then trains the 2D and the 3D
diffusion models side by side from those presegmentations. Every run resumes from ``RUN``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from SpineSegDiffLib.inference.networks import NetworkConfig

from .diffusion import DiffusionTrainingConfig, SliceBank, config_to_json, train_diffusion
from .nnunet_loop import LoopConfig, load_plans, predict_volume, train_presegmenter
from .splits import Splits

FEATURES_2D = (16, 16, 32, 64, 128, 16)
FEATURES_3D = (8, 8, 16, 32, 64, 8)
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


def _bank_cases(bank: Path) -> tuple[Splits, dict[str, Path]]:
    splits = Splits.load(bank / "splits.json")
    return splits, {case: bank / "cases" / f"{case}.npz" for case in splits.train_val}


def train_fold(bank: Path, out: Path, fold: str, device: str, minutes: float, batch_size: int) -> None:
    """One presegmenter: fold k (then its validation cases' out-of-fold labels) or ``all``."""
    splits, files = _bank_cases(bank)
    cases = splits.train_val if fold == "all" else splits.training_cases(int(fold))
    plans, dataset_json = load_plans(bank)
    run_dir = out / "nnunet" / f"fold_{fold}"
    config = LoopConfig(minutes=minutes, batch_size=batch_size)
    net = train_presegmenter(SliceBank(files, cases, {}, device), plans, dataset_json, run_dir, config, device)
    if fold == "all":
        return
    (out / "oof").mkdir(parents=True, exist_ok=True)
    for case in splits.folds[int(fold)]:
        with np.load(files[case]) as data:
            labels = predict_volume(net, data["image"], device)
        np.savez_compressed(out / "oof" / f"{case}.npz", labels=labels)


def train_refiner(bank: Path, out: Path, spatial_dims: int, device: str, minutes: float, batch_size: int) -> None:
    """The 2D or 3D diffusion model from the out-of-fold presegmentations in ``out/oof``."""
    from .volumes import VolumeBank

    splits, files = _bank_cases(bank)
    presegmentations = {p.stem: p for p in (out / "oof").glob("*.npz")}
    features = FEATURES_2D if spatial_dims == 2 else FEATURES_3D
    config = DiffusionTrainingConfig(network=NetworkConfig(spatial_dims=spatial_dims, features=features),
                                     iterations=UNLIMITED, batch_size=batch_size, checkpoint_every=500)
    bank_class = SliceBank if spatial_dims == 2 else VolumeBank
    run_dir = out / ("diffusion" if spatial_dims == 2 else "diffusion-3d")
    train_diffusion(bank_class(files, splits.train_val, presegmentations, device), config, run_dir, minutes, device)
    (run_dir / "config.json").write_text(json.dumps(config_to_json(config), indent=2))


def _launch(args: argparse.Namespace, command: list[str], log: Path) -> subprocess.Popen:
    common = ["--bank", str(args.bank), "--out", str(args.out), "--device", args.device]
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "SpineSegDiffTraining.bank_run", *command, *common],
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def _wait(processes: dict[str, subprocess.Popen]) -> None:
    failed = [name for name, p in processes.items() if p.wait() != 0]
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (see the logs under the run folder)")


def run_all(args: argparse.Namespace) -> None:
    """nnU-Net folds + all-data model in parallel, then the 2D and 3D refiners in parallel."""
    splits, _ = _bank_cases(args.bank)
    started = time.time()
    folds = [str(k) for k in range(len(splits.folds))] + ["all"]
    _wait({f"fold {f}": _launch(args, ["fold", "--fold", f, "--minutes", str(args.nnunet_minutes),
                                       "--batch-size", str(args.nnunet_batch)], args.out / "logs" / f"fold_{f}.txt")
           for f in folds})
    nnunet_done = time.time()
    refiners = {"2d": args.diffusion_batch, "3d": args.diffusion3d_batch}
    _wait({f"diffusion {d}": _launch(args, [f"diffusion{d[0]}", "--minutes", str(args.diffusion_minutes),
                                            "--batch-size", str(b)], args.out / "logs" / f"diffusion_{d}.txt")
           for d, b in refiners.items()})
    summary = {"device": torch.cuda.get_device_name() if args.device == "cuda" else args.device,
               "nnunet_wall_minutes": round((nnunet_done - started) / 60, 2),
               "diffusion_wall_minutes": round((time.time() - nnunet_done) / 60, 2), "folds": folds}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))


def bundle_run(bank: Path, run: Path, models: Path, folds: list[str], hardware: str) -> None:
    """Model folders from a finished run: the presegmenter (``folds``, e.g. ``["all"]``) and both refiners."""
    from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION, DEFAULT_DIFFUSION_3D, DEFAULT_PRESEGMENTER, write_config
    from SpineSegDiffLib.inference.volumetric import DEFAULT_OVERLAP

    from .stages import bundle_diffusion

    splits = json.loads((bank / "splits.json").read_text())
    training = {"data": "SPIDER T2 (bank of model-space train/validation cases)", "splits": splits,
                "hardware": hardware}
    destination = models / DEFAULT_PRESEGMENTER
    for name in ("plans.json", "dataset.json"):
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        (destination / name).write_text((bank / name).read_text())
    files, iterations = [], {}
    for fold in folds:
        checkpoint = torch.load(run / "nnunet" / f"fold_{fold}" / "checkpoint.pth", map_location="cpu",
                                weights_only=True)
        checkpoint["network_weights"] = {k: v.float() for k, v in checkpoint["network_weights"].items()}
        (destination / f"fold_{fold}").mkdir(exist_ok=True)
        torch.save(checkpoint, destination / f"fold_{fold}" / "checkpoint.pth")
        files.append(f"fold_{fold}/checkpoint.pth")
        iterations[fold] = checkpoint.get("iterations")
    config = {"kind": "nnunet", "id": destination.name, "configuration": "2d", "folds": folds,
              "checkpoint": "checkpoint.pth",
              "training": {**training, "trainer": "SpineSegDiffTraining.nnunet_loop", "iterations": iterations,
                           "config": json.loads(json.dumps(LoopConfig().__dict__))}}
    write_config(destination, config, ["dataset.json", "plans.json", *files])
    bundle_diffusion(run / "diffusion", models / DEFAULT_DIFFUSION, training)
    inference = {"roi_size": list(DiffusionTrainingConfig().patch_size), "overlap": DEFAULT_OVERLAP}
    bundle_diffusion(run / "diffusion-3d", models / DEFAULT_DIFFUSION_3D, training, inference)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m SpineSegDiffTraining.bank_run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("all", "fold", "diffusion2", "diffusion3", "bundle"))
    parser.add_argument("--bank", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--fold", default="all", help="fold index or 'all' (stage fold)")
    parser.add_argument("--minutes", type=float, default=1.0, help="budget of one stage")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--nnunet-minutes", type=float, default=4.0)
    parser.add_argument("--diffusion-minutes", type=float, default=3.0)
    parser.add_argument("--nnunet-batch", type=int, default=24)
    parser.add_argument("--diffusion-batch", type=int, default=16)
    parser.add_argument("--diffusion3d-batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per process")
    parser.add_argument("--models", type=Path, help="bundle: where the model folders go")
    parser.add_argument("--bundle-folds", nargs="+", default=["all"], help="bundle: presegmenter folds")
    parser.add_argument("--hardware", default="", help="bundle: recorded in the model folders")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    if args.stage == "all":
        run_all(args)
    elif args.stage == "bundle":
        bundle_run(args.bank, args.out, args.models, args.bundle_folds, args.hardware)
    elif args.stage == "fold":
        train_fold(args.bank, args.out, args.fold, args.device, args.minutes, args.batch_size)
    else:
        train_refiner(args.bank, args.out, int(args.stage[-1]), args.device, args.minutes, args.batch_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
