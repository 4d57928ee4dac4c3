"""3D training data for the volumetric Diff-UNet: whole model-space volumes in memory, random patches.

A patch is ``patch_size = (slices, rows, columns)`` of a ``(N, 320, 320)`` model-space volume, centred
on a labelled voxel most of the time. Volumes thinner than the patch are zero-padded along the slices.
Augmentation reuses the 2D transforms: one in-plane affine per patch (the same for all its slices) and
the intensity changes; presegmentation-like errors are drawn slice by slice.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .augment import corrupt_labels, intensity, random_affine, warp
from .clinical import degrade_volume_patch
from .diffusion import DiffusionTrainingConfig, read_presegmentation
from .prepare import load_case

FOREGROUND_CENTRE_PROBABILITY = 0.9


class VolumeBank:
    """Every training volume: images (0..1), labels and presegmentations (or None), each ``(N, H, W)``."""

    def __init__(self, case_files: dict[str, Path], case_ids: list[str], presegmentations: dict[str, Path],
                 device: str | torch.device = "cpu"):
        self.volumes = []
        self.foregrounds = []
        """Per volume, the ``(M, 3)`` indices of its labelled voxels (patch centres)."""
        for case_id in case_ids:
            image, label = load_case(case_files[case_id])
            preseg = read_presegmentation(presegmentations.get(case_id), label.shape)
            label = torch.from_numpy(label).long()
            self.volumes.append((torch.from_numpy(image / 255.0).float().to(device), label.to(device),
                                 torch.from_numpy(preseg).long().to(device) if preseg is not None else None))
            self.foregrounds.append(torch.nonzero(label > 0))

    def __len__(self) -> int:
        return len(self.volumes)

    def sample(self, config: DiffusionTrainingConfig, generator: torch.Generator):
        """Augmented patches: image ``(B, 1, D, h, w)`` in -1..1, target and start labels ``(B, D, h, w)``."""
        patches = [self._one_patch(config, generator) for _ in range(config.batch_size)]
        return tuple(torch.stack(parts) for parts in zip(*patches))

    def _one_patch(self, config: DiffusionTrainingConfig, generator: torch.Generator):
        index = int(torch.randint(len(self.volumes), (1,), generator=generator))
        image, label, preseg = self.volumes[index]
        window = patch_window(label.shape, self.foregrounds[index], config.patch_size, generator)
        image, target = image[window], label[window]
        if preseg is not None and torch.rand(1, generator=generator).item() < config.presegmentation_probability:
            start = preseg[window]
        elif torch.rand(1, generator=generator).item() < config.presegmentation_probability:
            start = corrupt_labels(target, generator)
        else:
            start = target.clone()
        image, (target, start) = _pad_slices(image, [target, start], config.patch_size[0])
        theta = random_affine(1, generator).expand(len(image), 2, 3)
        image, (target, start) = warp(image[:, None], [target, start], theta)
        if config.clinical is not None:
            image = degrade_volume_patch(image[:, 0], generator, config.clinical)[:, None]
        image = intensity(image.reshape(1, 1, -1, image.shape[-1]), generator).reshape(image.shape[0], *image.shape[2:])
        return image[None] * 2 - 1, target, start


def patch_window(shape: tuple[int, ...], foreground: torch.Tensor, patch_size: tuple[int, int, int],
                 generator: torch.Generator):
    """Slices of a patch of a ``shape = (N, H, W)`` volume, centred with probability 0.9 on one of the
    ``foreground (M, 3)`` labelled voxels."""
    if len(foreground) and torch.rand(1, generator=generator).item() < FOREGROUND_CENTRE_PROBABILITY:
        centre = foreground[int(torch.randint(len(foreground), (1,), generator=generator))].tolist()
    else:
        centre = [int(torch.randint(n, (1,), generator=generator)) for n in shape]
    window = []
    for c, size, total in zip(centre, patch_size, shape):
        start = int(np.clip(c - size // 2, 0, max(total - size, 0)))
        window.append(slice(start, start + size))
    return tuple(window)


def _pad_slices(image: torch.Tensor, labels: list[torch.Tensor], depth: int):
    missing = depth - image.shape[0]
    if missing <= 0:
        return image, labels
    before = missing // 2
    pad = lambda x: torch.cat([x.new_zeros(before, *x.shape[1:]), x, x.new_zeros(missing - before, *x.shape[1:])])  # noqa: E731
    return pad(image), [pad(x) for x in labels]
