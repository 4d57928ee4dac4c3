"""Clinical-acquisition augmentation: make near-isotropic SPACE training slices look like the routine
2D turbo-spin-echo series a radiologist meets (3-5 mm sagittal slices, 0.5-1.2 mm pixels, bias
field, another T2 contrast, noise, ghosting, a cropped field of view, 8-bit or 12/16-bit scaling).

All functions work on batches of model-space images in 0..1 on any device; random numbers come from a
CPU ``torch.Generator`` (reproducible) and are moved to the images' device. Model space has a fixed
orientation (rows superior -> inferior, columns anterior -> posterior), so the phase-encoding
direction of a sagittal TSE (usually anterior-posterior) is the column axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class ClinicalAugmentation:
    """Probabilities and ranges of each degradation (one draw per image)."""

    thick_slice_probability: float = 0.5
    thickness_mm: tuple[int, int] = (2, 5)
    resolution_probability: float = 0.4
    pixel_mm: tuple[float, float] = (0.5, 1.3)
    bias_probability: float = 0.4
    bias_strength: float = 0.35
    contrast_probability: float = 0.5
    ghost_probability: float = 0.15
    fov_probability: float = 0.15
    max_fov_cut: float = 0.25
    quantise_probability: float = 0.3


def _uniform(n: int, low: float, high: float, generator: torch.Generator, device) -> torch.Tensor:
    return (low + (high - low) * torch.rand(n, generator=generator)).to(device)


def _chosen(n: int, probability: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator) < probability


def slab_weights(thickness: int) -> torch.Tensor:
    """Slice profile of a ``thickness``-mm slice sampled at 1 mm: a box with half-weight edges when even.

    Returns ``(thickness + 1 - thickness % 2,)`` weights that sum to 1 (odd length, centred)."""
    if thickness % 2:
        weights = torch.ones(thickness)
    else:
        weights = torch.ones(thickness + 1)
        weights[0] = weights[-1] = 0.5
    return weights / weights.sum()


def thick_slab(volume: torch.Tensor, index: int, thickness: int) -> torch.Tensor:
    """Partial-volume average of ``volume (N, H, W)`` around slice ``index`` for a ``thickness``-mm slice
    (1 mm apart in model space); slices beyond the volume are clamped. Returns ``(H, W)``."""
    weights = slab_weights(thickness).to(volume.device)
    half = len(weights) // 2
    rows = torch.arange(index - half, index + half + 1).clamp(0, len(volume) - 1).to(volume.device)
    return torch.einsum("n,nhw->hw", weights, volume[rows].float())


def thick_slices_3d(patches: torch.Tensor, thickness: torch.Tensor) -> torch.Tensor:
    """Simulate thick sagittal slices in ``patches (B, 1, D, H, W)`` (D along left-right, 1 mm): average
    ``thickness[b]`` neighbouring slices, keep every ``thickness[b]``-th and interpolate back to 1 mm."""
    out = patches.clone()
    depth = patches.shape[2]
    for b, k in enumerate(thickness.tolist()):
        if k <= 1:
            continue
        pooled = F.avg_pool3d(patches[b : b + 1], (k, 1, 1), stride=(k, 1, 1), ceil_mode=True)
        out[b : b + 1] = F.interpolate(pooled, size=(depth, *patches.shape[3:]), mode="trilinear",
                                       align_corners=False)
    return out


def change_resolution(images: torch.Tensor, pixel_mm: torch.Tensor) -> torch.Tensor:
    """Acquire ``images (B, 1, H, W)`` (1 mm pixels) at ``pixel_mm[b]`` and resample back to 1 mm:
    coarser pixels blur, finer ones keep detail (and are the identity here)."""
    out = images.clone()
    for b, mm in enumerate(pixel_mm.tolist()):
        if mm <= 1.02:
            continue
        size = [max(8, round(n / mm)) for n in images.shape[2:]]
        low = F.interpolate(images[b : b + 1], size=size, mode="area")
        out[b : b + 1] = F.interpolate(low, size=images.shape[2:], mode="bilinear", align_corners=False)
    return out


def bias_field(shape: tuple[int, ...], strength: torch.Tensor, generator: torch.Generator, device) -> torch.Tensor:
    """Smooth multiplicative fields ``(B, 1, H, W)``: exp of a 4 x 4 random grid upsampled bicubically."""
    coarse = torch.randn(shape[0], 1, 4, 4, generator=generator).to(device)
    field = F.interpolate(coarse, size=shape[2:], mode="bicubic", align_corners=True)
    return torch.exp(field * strength.view(-1, 1, 1, 1))


def tone_curve(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random monotone intensity mapping per image (5 knots, piecewise linear) on 0..1: another T2
    weighting (fat, fluid and muscle brightness relative to each other) than SPACE's."""
    b = images.shape[0]
    steps = torch.rand(b, 5, generator=generator) + 0.3
    knots = torch.cat([torch.zeros(b, 1), steps.cumsum(1)], 1)
    knots = (knots / knots[:, -1:]).to(images.device)  # (B, 6) values at 0, 0.2, ..., 1
    position = images.clamp(0, 1) * 5
    low = position.floor().clamp(max=4).long()
    fraction = position - low
    flat = low.flatten(1)
    start = torch.gather(knots, 1, flat).view_as(images)
    end = torch.gather(knots, 1, flat + 1).view_as(images)
    return start + fraction * (end - start)


def ghosting(images: torch.Tensor, amplitude: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Motion ghosts along the phase-encoding (column) axis: the image plus a faint copy shifted by
    about half the field of view."""
    shift = int(images.shape[-1] * (0.3 + 0.4 * torch.rand(1, generator=generator).item()))
    return images + amplitude.view(-1, 1, 1, 1) * torch.roll(images, shifts=shift, dims=-1)


def crop_field_of_view(images: torch.Tensor, labels: list[torch.Tensor], fraction: torch.Tensor,
                       generator: torch.Generator):
    """Blank the top or the bottom ``fraction[b]`` of rows (image 0 = padding, labels background): an
    acquisition whose field of view ends inside the lumbar spine."""
    height = images.shape[-2]
    images, labels = images.clone(), [lab.clone() for lab in labels]
    top = (torch.rand(len(images), generator=generator) < 0.5).tolist()
    for b, (cut, from_top) in enumerate(zip(fraction.tolist(), top)):
        rows = slice(0, int(cut * height)) if from_top else slice(height - int(cut * height), height)
        images[b, ..., rows, :] = 0
        for lab in labels:
            lab[b, ..., rows, :] = 0
    return images, labels


def clinical_degradation(images: torch.Tensor, labels: list[torch.Tensor], generator: torch.Generator,
                         config: ClinicalAugmentation = ClinicalAugmentation()):
    """In-plane degradations of ``images (B, 1, H, W)`` in 0..1 with label maps ``(B, H, W)`` (changed
    only by the field-of-view crop). Padding (exact zeros, as model space pads) stays zero."""
    n, device = len(images), images.device
    inside = images > 0
    pick = lambda p: _chosen(n, p, generator).to(device).view(-1, 1, 1, 1)  # noqa: E731
    pixel = torch.where(pick(config.resolution_probability).view(-1).cpu(),
                        _uniform(n, *config.pixel_mm, generator, "cpu"), torch.ones(n))
    out = change_resolution(images, pixel)
    strength = _uniform(n, 0.0, config.bias_strength, generator, device)
    out = torch.where(pick(config.bias_probability), out * bias_field(out.shape, strength, generator, device), out)
    out = torch.where(pick(config.contrast_probability), tone_curve(out, generator), out)
    amplitude = _uniform(n, 0.05, 0.15, generator, device)
    out = torch.where(pick(config.ghost_probability), ghosting(out, amplitude, generator), out)
    levels = torch.where(_chosen(n, 0.5, generator), 255.0, 63.0).to(device).view(-1, 1, 1, 1)
    out = torch.where(pick(config.quantise_probability), torch.round(out.clamp(0, 1) * levels) / levels, out)
    out = out.clamp(0, 1) * inside
    cut = torch.where(_chosen(n, config.fov_probability, generator),
                      _uniform(n, 0.05, config.max_fov_cut, generator, "cpu"), torch.zeros(n))
    return crop_field_of_view(out, labels, cut, generator)


def random_thickness(n: int, generator: torch.Generator, config: ClinicalAugmentation = ClinicalAugmentation()):
    """Slice thickness in mm per draw ``(n,)``: 1 (as acquired) or uniform in ``config.thickness_mm``."""
    thick = torch.randint(config.thickness_mm[0], config.thickness_mm[1] + 1, (n,), generator=generator)
    return torch.where(_chosen(n, config.thick_slice_probability, generator), thick, torch.ones(n, dtype=torch.long))


def degrade_volume_patch(patch: torch.Tensor, generator: torch.Generator,
                         config: ClinicalAugmentation = ClinicalAugmentation()) -> torch.Tensor:
    """One acquisition for a whole 3D patch ``(D, H, W)`` in 0..1 (D = sagittal slices, 1 mm): thick
    slices, in-plane pixel size, one bias field and one tone curve for all its slices. Same shape."""
    inside = patch > 0
    thickness = random_thickness(1, generator, config)
    out = thick_slices_3d(patch[None, None], thickness)[0, 0]
    if _chosen(1, config.resolution_probability, generator).item():
        mm = _uniform(1, *config.pixel_mm, generator, "cpu")
        out = change_resolution(out[:, None], mm.expand(len(out)))[:, 0]
    if _chosen(1, config.bias_probability, generator).item():
        strength = _uniform(1, 0.0, config.bias_strength, generator, patch.device)
        out = out * bias_field((1, 1, *out.shape[1:]), strength, generator, patch.device)[0]
    if _chosen(1, config.contrast_probability, generator).item():
        out = tone_curve(out.reshape(1, 1, -1, out.shape[-1]), generator).reshape(out.shape)
    return out.clamp(0, 1) * inside
