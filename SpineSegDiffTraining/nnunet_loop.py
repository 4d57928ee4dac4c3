"""Presegmentation training on any device from a slice bank: nnU-Net v2's planned 2D network (built
from the plans by nnU-Net's ``get_network_from_plans``), its deep-supervised Dice + cross-entropy
loss, SGD with Nesterov momentum and the poly learning-rate decay, fed by the batched sampler of
:mod:`.diffusion` with the clinical-acquisition augmentation of :mod:`.clinical` (nnU-Net's own CPU
data loader knows nothing of thick slices). Normalisation is nnU-Net's z-score over the non-zero
region of each slice, as its predictor applies to a single slice.

The poly decay runs over a *time* budget, ``lr = lr0 (1 - elapsed / budget)^0.9``, so a run sized in
minutes ends at a small learning rate on any hardware; checkpoints keep the elapsed time and resume.
Checkpoints hold ``network_weights`` / ``configuration`` / ``trainer_name`` like nnU-Net's, and load
in :class:`SpineSegDiffLib.inference.presegment.NnUNetPresegmenter` through ``nnUNetPredictor``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .augment import intensity, random_affine, warp
from .clinical import ClinicalAugmentation, clinical_degradation
from .configs import PRESEGMENTER_CONFIGURATION as CONFIGURATION
from .diffusion import SliceBank, resume_training_state, save_training_state

TRAINER_NAME = "SpineSegDiffSliceBankLoop"
CLINICAL = ClinicalAugmentation()


@dataclass(frozen=True)
class LoopConfig:
    """Settings of one presegmentation run (nnU-Net's defaults where it has one)."""

    minutes: float = 10.0
    batch_size: int = 4
    learning_rate: float = 1e-2
    momentum: float = 0.99
    weight_decay: float = 3e-5
    gradient_clip: float = 12.0
    max_degrees: float = 15.0
    scale: tuple[float, float] = (0.8, 1.25)
    checkpoint_every_s: float = 60.0
    seed: int = 0


def build_network(plans: dict, dataset_json: dict, deep_supervision: bool) -> torch.nn.Module:
    """The planned 2D network; ``(B, 1, H, W)`` -> logits ``(B, K, H, W)`` (a list of scales with deep
    supervision, full resolution first)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    architecture = plans["configurations"][CONFIGURATION]["architecture"]
    return get_network_from_plans(
        architecture["network_class_name"], architecture["arch_kwargs"], architecture["_kw_requires_import"],
        len(dataset_json["channel_names"]), len(dataset_json["labels"]),
        allow_init=True, deep_supervision=deep_supervision,
    )


def deep_supervision_scales(plans: dict) -> list[float]:
    """Resolution of each deep-supervision output relative to the input (nnU-Net's rule)."""
    strides = plans["configurations"][CONFIGURATION]["architecture"]["arch_kwargs"]["strides"]
    return [float(s) for s in 1 / np.cumprod([stride[0] for stride in strides])][:-1]


def make_loss(scales: list[float]):
    """nnU-Net's Dice + CE on every deep-supervision output, weights 1/2^i (the lowest one 0)."""
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    loss = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                          weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    weights = np.array([1 / 2**i for i in range(len(scales))])
    weights[-1] = 0
    return DeepSupervisionWrapper(loss, weights / weights.sum())


def zscore_nonzero(images: torch.Tensor) -> torch.Tensor:
    """nnU-Net's ``ZScoreNormalization`` with ``use_mask_for_norm``, per image ``(B, 1, H, W)``: mean and
    standard deviation over the non-zero pixels; pixels outside stay 0."""
    inside = (images != 0).float()
    count = inside.sum((1, 2, 3), keepdim=True).clamp(min=1)
    mean = (images * inside).sum((1, 2, 3), keepdim=True) / count
    var = (((images - mean) * inside) ** 2).sum((1, 2, 3), keepdim=True) / count
    return (images - mean) / var.sqrt().clamp(min=1e-8) * inside


def sample_patches(bank: SliceBank, patch: tuple[int, int], config: LoopConfig, generator: torch.Generator,
                   clinical: ClinicalAugmentation | None):
    """Augmented, normalised training patches: image ``(B, 1, *patch)``, labels ``(B, 1, *patch)``."""
    index, images = bank.draw(config.batch_size, generator, clinical)
    labels = bank.labels[index].long()
    theta = random_affine(len(index), generator, config.max_degrees, config.scale, 0.08)
    images, (labels,) = warp(images, [labels], theta)
    if clinical is not None:
        images, (labels,) = clinical_degradation(images, [labels], generator, clinical)
    images = intensity(images, generator) * (images > 0)
    top = torch.randint(0, images.shape[-2] - patch[0] + 1, (1,), generator=generator).item()
    left = torch.randint(0, images.shape[-1] - patch[1] + 1, (1,), generator=generator).item()
    window = (..., slice(top, top + patch[0]), slice(left, left + patch[1]))
    return zscore_nonzero(images[window]), labels[:, None][window]


def downsampled_targets(labels: torch.Tensor, scales: list[float]) -> list[torch.Tensor]:
    """``labels (B, 1, H, W)`` at each deep-supervision scale (nearest)."""
    return [labels if s == 1 else F.interpolate(labels.float(), scale_factor=s, mode="nearest-exact")
            for s in scales]


def train_presegmenter(bank: SliceBank, plans: dict, dataset_json: dict, out_dir: Path, config: LoopConfig,
                       device: str | torch.device, clinical: ClinicalAugmentation | None = CLINICAL):
    """Train (or resume) until ``config.minutes`` of training time; writes ``out_dir/checkpoint.pth``
    (nnU-Net layout, weights only) and ``out_dir/progress.pth`` (for resuming). Returns the network."""
    device = torch.device(device)
    torch.manual_seed(config.seed)
    net = build_network(plans, dataset_json, deep_supervision=True).to(device)
    optimizer = torch.optim.SGD(net.parameters(), config.learning_rate, momentum=config.momentum,
                                weight_decay=config.weight_decay, nesterov=True)
    generator = torch.Generator().manual_seed(config.seed)
    iteration, elapsed = resume_training_state(out_dir / "progress.pth", net, optimizer, generator)
    scales = deep_supervision_scales(plans)
    loss_fn = make_loss(scales)
    patch = tuple(plans["configurations"][CONFIGURATION]["patch_size"])
    budget = 60 * config.minutes
    started, last_save = time.time() - elapsed, time.time()
    with tqdm(total=round(budget), initial=round(elapsed), desc=f"nnU-Net {out_dir.name}", unit="s") as bar:
        while (elapsed := time.time() - started) < budget:
            for group in optimizer.param_groups:
                group["lr"] = config.learning_rate * (1 - elapsed / budget) ** 0.9
            images, labels = sample_patches(bank, patch, config, generator, clinical)
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                outputs = net(images)
            loss = loss_fn([o.float() for o in outputs], downsampled_targets(labels, scales))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), config.gradient_clip)
            optimizer.step()
            iteration += 1
            bar.n = round(elapsed)
            bar.set_postfix(it=iteration, loss=f"{loss.item():.3f}", refresh=False)
            if time.time() - last_save > config.checkpoint_every_s:
                save_training_state(out_dir / "progress.pth", net, optimizer, generator, iteration, elapsed)
                last_save = time.time()
    save_training_state(out_dir / "progress.pth", net, optimizer, generator, iteration,
                        time.time() - started)
    save_weights(net, out_dir / "checkpoint.pth", iteration)
    return net


def presegmenter_checkpoint(weights: dict, trainer_name: str, mirroring_axes=None, **extra) -> dict:
    """The weights-only checkpoint a bundled presegmenter holds, in nnU-Net's key names (its predictor loads
    it), whichever trainer made the weights: this loop or nnU-Net's own (:func:`.bundle.run_bundle`)."""
    return {"network_weights": weights, "trainer_name": trainer_name, "configuration": CONFIGURATION,
            "inference_allowed_mirroring_axes": mirroring_axes, **extra}


def save_weights(net: torch.nn.Module, path: Path, iterations: int) -> None:
    """The weights-only checkpoint the presegmenter loads (nnU-Net's key names)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu() for k, v in net.state_dict().items()}
    torch.save(presegmenter_checkpoint(state, TRAINER_NAME, iterations=iterations), path)


@torch.no_grad()
def predict_volume(net: torch.nn.Module, images: np.ndarray, device: str | torch.device) -> np.ndarray:
    """Labels ``(N, H, W)`` uint8 for model-space ``images (N, H, W)`` in 0..255, one slice per call
    (whole slices: the planned network is fully convolutional and 320 is a multiple of its strides)."""
    net.eval()
    out = []
    for image in images:
        x = zscore_nonzero(torch.from_numpy(image[None, None] / 255.0).float().to(device))
        logits = net(x)
        logits = logits[0] if isinstance(logits, (list, tuple)) else logits
        out.append(logits.argmax(1)[0].to(torch.uint8).cpu().numpy())
    net.train()
    return np.stack(out)


def load_plans(folder: Path) -> tuple[dict, dict]:
    """``plans.json`` and ``dataset.json`` of a model folder."""
    return json.loads((folder / "plans.json").read_text()), json.loads((folder / "dataset.json").read_text())
