"""MRI-appropriate augmentation on batches (torch, runs on the training device; random numbers are
drawn from a CPU generator and moved to the data's device, so a seed gives the same draws anywhere).

Geometry: small rotations, scaling and shifts applied identically to image and label maps
(nearest neighbour for labels). Intensity: gamma, contrast/brightness and Rician-like noise;
no left-right or up-down flips, since model space has a fixed anatomical orientation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(batch: int, generator: torch.Generator, max_degrees: float = 10.0,
                  scale: tuple[float, float] = (0.9, 1.1), max_shift: float = 0.05) -> torch.Tensor:
    """Affine matrices ``(B, 2, 3)`` for ``F.affine_grid``."""
    angle = (torch.rand(batch, generator=generator) * 2 - 1) * math.radians(max_degrees)
    zoom = scale[0] + torch.rand(batch, generator=generator) * (scale[1] - scale[0])
    shift = (torch.rand(batch, 2, generator=generator) * 2 - 1) * max_shift
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    return torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)


def warp(image: torch.Tensor, labels: list[torch.Tensor], theta: torch.Tensor):
    """Apply ``theta`` to ``image (B, 1, H, W)`` (bilinear) and label maps ``(B, H, W)`` (nearest)."""
    grid = F.affine_grid(theta.to(image.device, image.dtype), list(image.shape), align_corners=False)
    warped = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    warped_labels = [
        F.grid_sample(lab[:, None].float(), grid, mode="nearest", align_corners=False)[:, 0].long()
        for lab in labels
    ]
    return warped, warped_labels


def intensity(image: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Gamma, contrast and noise on ``image (B, 1, H, W)`` in 0..1; returns the same shape in 0..1."""
    b, device = image.shape[0], image.device
    gamma = torch.exp((torch.rand(b, 1, 1, 1, generator=generator) * 2 - 1) * 0.3).to(device)
    contrast = (0.8 + torch.rand(b, 1, 1, 1, generator=generator) * 0.4).to(device)
    out = image.clamp(0, 1) ** gamma * contrast
    noise_level = (torch.rand(b, 1, 1, 1, generator=generator) * 0.05).to(device)
    real = out + noise_level * torch.randn(image.shape, generator=generator).to(device)
    imaginary = noise_level * torch.randn(image.shape, generator=generator).to(device)
    return torch.sqrt(real**2 + imaginary**2).clamp(0, 1)


def corrupt_labels(labels: torch.Tensor, generator: torch.Generator, num_classes: int = 4) -> torch.Tensor:
    """Presegmentation-like errors on ``labels (B, H, W)``: per-class dilation or erosion (up to 3
    pixels), and a random box relabelled as background or another structure. Same shape."""
    onehot = F.one_hot(labels, num_classes).permute(0, 3, 1, 2).float()
    radius = torch.randint(0, 4, (num_classes,), generator=generator).tolist()
    grow = (torch.rand(num_classes, generator=generator) < 0.5).tolist()
    channels = []
    for k in range(num_classes):
        channel = onehot[:, k : k + 1]
        if k > 0 and radius[k] > 0:
            size = 2 * radius[k] + 1
            pooled = F.max_pool2d(channel if grow[k] else 1 - channel, size, stride=1, padding=radius[k])
            channel = pooled if grow[k] else 1 - pooled
        channels.append(channel + 1e-3 * torch.rand(channel.shape, generator=generator).to(channel.device))
    corrupted = torch.cat(channels, 1).argmax(1)
    return _relabel_random_box(corrupted, generator, num_classes)


def _relabel_random_box(labels: torch.Tensor, generator: torch.Generator, num_classes: int) -> torch.Tensor:
    b, h, w = labels.shape
    out = labels.clone()
    for i in range(b):
        if torch.rand(1, generator=generator).item() < 0.5:
            continue
        size = torch.randint(8, 40, (2,), generator=generator).tolist()
        top = torch.randint(0, h - size[0], (1,), generator=generator).item()
        left = torch.randint(0, w - size[1], (1,), generator=generator).item()
        box = out[i, top : top + size[0], left : left + size[1]]
        new_class = torch.randint(0, num_classes, (1,), generator=generator).item()
        box[box > 0] = new_class
    return out
