"""Diffusion training: the dual-encoder network learns x0 (the true labels) from x_t, where x_t is
either the noised ground truth or the noised presegmentation (out-of-fold nnU-Net predictions, so
the errors are realistic). Loss: MSE + Dice + BCE on the predicted x0 probabilities; AdamW.
Checkpoints every ``checkpoint_every`` iterations and resumes from the last one.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from tqdm import tqdm

from SpineSegDiffLib.inference.networks import NetworkConfig, SpineSegDiffNet
from SpineSegDiffLib.inference.postprocess import roi_columns
from SpineSegDiffLib.inference.sampling import make_scheduler
from SpineSegDiffLib.labels import NUM_CLASSES

from .augment import corrupt_labels, intensity, random_affine, warp
from .clinical import ClinicalAugmentation, clinical_degradation, random_thickness, thick_slab
from .configs import PATCH_3D
from .prepare import load_case


@dataclass(frozen=True)
class DiffusionTrainingConfig:
    """All settings of one diffusion training run (stored in the model folder).

    ``crop_width`` applies to 2D training (full-height crops), ``patch_size`` (slices, rows, columns)
    to 3D training (``network.spatial_dims == 3``).
    """

    network: NetworkConfig = field(default_factory=NetworkConfig)
    num_train_timesteps: int = 50
    t_start: int = 30
    iterations: int = 3000
    batch_size: int = 4
    learning_rate: float = 2e-4
    weight_decay: float = 1e-4
    presegmentation_probability: float = 0.7
    crop_width: int = 160
    patch_size: tuple[int, int, int] = PATCH_3D
    checkpoint_every: int = 50
    seed: int = 0
    clinical: ClinicalAugmentation | None = field(default_factory=ClinicalAugmentation)


NO_PRESEGMENTATION = 255


class SliceBank:
    """Every training volume in memory, slices concatenated: images (0..1) ``(M, H, W)``, labels and
    presegmentations (uint8, ``NO_PRESEGMENTATION`` where a case has none), on ``device``.

    Training slices are the labelled ones; a simulated thick slice averages its neighbours within the
    same volume (``volume_range[i]`` = first and last concatenated index of slice i's volume).
    """

    def __init__(self, case_files: dict[str, Path], case_ids: list[str], presegmentations: dict[str, Path],
                 device: str | torch.device = "cpu"):
        images, labels, presegs, ranges = [], [], [], []
        for case_id in case_ids:
            image, label = load_case(case_files[case_id])
            preseg = read_presegmentation(presegmentations.get(case_id), label.shape)
            offset = sum(len(x) for x in labels)
            images.append(image / 255.0)
            labels.append(label)
            presegs.append(preseg if preseg is not None else np.full_like(label, NO_PRESEGMENTATION))
            ranges += [(offset, offset + len(label) - 1)] * len(label)
        self.images = torch.from_numpy(np.concatenate(images)).float().to(device)
        self.labels = torch.from_numpy(np.concatenate(labels)).to(device)
        self.presegs = torch.from_numpy(np.concatenate(presegs)).to(device)
        self.has_preseg = (self.presegs[:, 0, 0] != NO_PRESEGMENTATION).cpu()
        self.volume_range = torch.tensor(ranges)
        self.training_slices = torch.nonzero(self.labels.flatten(1).any(1)).flatten().cpu()

    def __len__(self) -> int:
        return len(self.training_slices)

    def sample(self, config: DiffusionTrainingConfig, generator: torch.Generator):
        return sample_batch(self, config, generator)

    def draw(self, count: int, generator: torch.Generator, clinical: ClinicalAugmentation | None):
        """``count`` random training slices: their indices ``(B,)`` and images ``(B, 1, H, W)``, acquired
        with a random slice thickness when ``clinical`` augmentation is on (1 mm otherwise)."""
        index = self.training_slices[torch.randint(len(self), (count,), generator=generator)]
        thickness = random_thickness(len(index), generator, clinical or ClinicalAugmentation(0.0))
        return index, self.thick_images(index, thickness)

    def thick_images(self, index: torch.Tensor, thickness: torch.Tensor) -> torch.Tensor:
        """Images ``(B, 1, H, W)`` of slices ``index (B,)`` acquired ``thickness (B,)`` mm thick."""
        slabs = []
        for i, k in zip(index.tolist(), thickness.tolist()):
            first, last = self.volume_range[i].tolist()
            slabs.append(thick_slab(self.images[first : last + 1], i - first, k))
        return torch.stack(slabs)[:, None]


def read_presegmentation(path: Path | None, shape) -> np.ndarray | None:
    """A stored presegmentation ``(N, H, W)`` (``.npz`` with ``labels``, or any image SimpleITK reads);
    None when absent or of another shape."""
    if path is None:
        return None
    if Path(path).suffix == ".npz":
        with np.load(path) as data:
            array = data["labels"].astype(np.uint8)
    else:
        import SimpleITK as sitk

        array = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).astype(np.uint8)
    return array if array.shape == shape else None


def sample_batch(bank: SliceBank, config: DiffusionTrainingConfig, generator: torch.Generator):
    """Augmented crops: image ``(B,1,H,w)`` in -1..1, target and start labels ``(B,H,w)``."""
    index, image = bank.draw(config.batch_size, generator, config.clinical)
    target, start = bank.labels[index].long(), bank.presegs[index].long()
    from_preseg = torch.rand(len(index), generator=generator) < config.presegmentation_probability
    synthetic = (from_preseg & ~bank.has_preseg[index]).to(start.device)
    from_preseg = from_preseg.to(start.device)
    start[~from_preseg] = target[~from_preseg]
    if synthetic.any():
        start[synthetic] = corrupt_labels(target[synthetic], generator)
    image, (target, start) = warp(image, [target, start], random_affine(len(index), generator))
    if config.clinical is not None:
        image, (target, start) = clinical_degradation(image, [target, start], generator, config.clinical)
    image = intensity(image, generator) * 2 - 1
    jitter = torch.randint(-16, 17, (len(index),), generator=generator).tolist()
    last_start = image.shape[-1] - config.crop_width
    starts = [min(max(roi_columns(t.cpu().numpy(), config.crop_width, margin=0).start + j, 0), last_start)
              for t, j in zip(target, jitter)]
    columns = [slice(start, start + config.crop_width) for start in starts]
    pick = lambda x: torch.stack([x[i, ..., c] for i, c in enumerate(columns)])  # noqa: E731
    return pick(image), pick(target), pick(start)


def one_hot_channels(labels: torch.Tensor) -> torch.Tensor:
    """``(B, *spatial)`` integer labels -> float ``(B, K, *spatial)``."""
    return F.one_hot(labels, NUM_CLASSES).movedim(-1, 1).float()


def diffusion_loss(logits: torch.Tensor, target: torch.Tensor, dice: DiceLoss) -> dict[str, torch.Tensor]:
    """MSE + Dice + BCE between softmax(logits) and one-hot target; ``(B,K,*spatial), (B,*spatial)``."""
    onehot = one_hot_channels(target)
    probabilities = torch.softmax(logits, dim=1)
    terms = {
        "mse": F.mse_loss(probabilities, onehot),
        "dice": dice(logits, onehot),
        "bce": F.binary_cross_entropy(probabilities.clamp(1e-6, 1 - 1e-6), onehot),
    }
    terms["total"] = terms["mse"] + terms["dice"] + terms["bce"]
    return terms


def train_diffusion(bank, config: DiffusionTrainingConfig, work_dir: Path, max_minutes: float | None = None,
                    device: str | torch.device = "cpu", init_from: Path | None = None) -> SpineSegDiffNet:
    """Train (resuming from ``work_dir/checkpoint.pt``, else warm-starting from the model folder ``init_from``
    when given, see :mod:`.warm_start`); logs losses to ``work_dir/losses.csv``.

    ``bank.sample(config, generator)`` gives one batch ``(image (B,1,*s), target (B,*s), start (B,*s))``
    on the bank's device: a :class:`SliceBank` for 2D, a :class:`~.volumes.VolumeBank` for 3D; the loop is
    the same. On CUDA the forward pass runs under bfloat16 autocast.
    """
    from .warm_start import start_training_state

    device = torch.device(device)
    torch.manual_seed(config.seed)
    net = SpineSegDiffNet(config.network).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = make_scheduler(config.num_train_timesteps)
    generator = torch.Generator().manual_seed(config.seed)
    state_file = work_dir / "checkpoint.pt"
    iteration, elapsed = start_training_state(work_dir, init_from, net, optimizer, generator, config.network)
    started = time.time() - elapsed
    dice = DiceLoss(include_background=True, softmax=True)
    deadline = time.time() + 60 * max_minutes if max_minutes else float("inf")
    log = _open_log(work_dir / "losses.csv")
    description = f"diffusion {config.network.spatial_dims}D"
    with tqdm(total=config.iterations, initial=iteration, desc=description, unit="it") as bar:
        while iteration < config.iterations and time.time() < deadline:
            image, target, start = bank.sample(config, generator)
            # inference never starts above t_start: train only on the timesteps it visits
            t = torch.randint(0, config.t_start + 1, (len(image),), generator=generator).to(device)
            x0 = one_hot_channels(start) * 2 - 1
            x_t = scheduler.add_noise(x0, torch.randn(x0.shape, generator=generator).to(device), t)
            with torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
                logits = net(x_t, t, image)
            terms = diffusion_loss(logits.float(), target, dice)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            iteration += 1
            log.writerow([iteration] + [round(v.item(), 5) for v in terms.values()] + [round(time.time() - started)])
            bar.update(1)
            bar.set_postfix(loss=f"{terms['total'].item():.3f}")
            if iteration % config.checkpoint_every == 0:
                save_training_state(state_file, net, optimizer, generator, iteration, time.time() - started)
    # also when stopped by the time budget
    save_training_state(state_file, net, optimizer, generator, iteration, time.time() - started)
    return net


def _open_log(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.is_file()
    stream = open(path, "a", newline="", buffering=1)  # noqa: SIM115 - kept open for the run
    writer = csv.writer(stream)
    if new:
        writer.writerow(["iteration", "mse", "dice", "bce", "total", "elapsed_s"])
    return writer


def save_training_state(path: Path, net, optimizer, generator, iteration: int, elapsed: float) -> None:
    """Atomically write weights, optimiser and random state, iterations done and seconds trained."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"net": net.state_dict(), "optimizer": optimizer.state_dict(), "iteration": iteration,
             "generator": generator.get_state(), "elapsed": elapsed}
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def resume_training_state(path: Path, net, optimizer, generator) -> tuple[int, float]:
    """Load a state written by :func:`save_training_state`; returns (iterations done, seconds trained),
    ``(0, 0.0)`` when there is none yet."""
    if not path.is_file():
        return 0, 0.0
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state["net"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    return int(state["iteration"]), float(state.get("elapsed", 0.0))


def config_to_json(config: DiffusionTrainingConfig) -> dict:
    return json.loads(json.dumps(asdict(config)))
