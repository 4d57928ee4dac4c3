"""DDIM refinement of a presegmentation: S chains, batched, started from the noised presegmentation.

The noise schedule is MONAI's ``DDIMScheduler`` (:func:`make_scheduler`: cosine, linear or scaled
linear betas, x0 prediction); it gives ``alphas_cumprod`` and the forward noising. We pick the
timestep pairs ourselves: MONAI spaces ``set_timesteps`` with linspace but ``step()`` always jumps by
``T // n``, and the two disagree when ``n`` does not divide ``T``. :func:`ddim_step` is the DDIM
update (Song et al. 2021, eq. 12) for an explicit pair ``(t, t_prev)`` on MONAI's ``alphas_cumprod``,
read once per image as Python floats, so the sampling loop never waits on the GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from .fusion import StepFusion
from .networks import SpineSegDiffNet
from .schedules import SCHEDULES

if TYPE_CHECKING:
    from monai.networks.schedulers import DDIMScheduler


@dataclass(frozen=True)
class SamplingOptions:
    """How the S chains run.

    Attributes:
        samples: S, the number of parallel chains.
        steps: network evaluations per chain, from ``t_start`` down to 0.
        fused_steps: Ts, the last steps fused (eq. 3) and used for the heatmap (eq. 4-5).
        t_start: the timestep the presegmentation is noised to (``< T``).
        eta: DDIM stochasticity (0 = deterministic after the initial noise).
        seed: seed of all noise; the same seed gives the same result on the same device.
        sample_batch: chains evaluated per network call (memory / cache trade-off).
        bfloat16: run the networks under bfloat16 autocast.
    """

    samples: int = 15
    steps: int = 5
    fused_steps: int = 5
    t_start: int = 30
    eta: float = 0.0
    seed: int = 0
    sample_batch: int = 15
    bfloat16: bool = False


"""Noise schedules a model config may name: MONAI's ``NoiseSchedules`` names (with MONAI's default beta
range for the linear ones), passed to :func:`make_scheduler` as they are."""


def make_scheduler(num_train_timesteps: int, schedule: str = "cosine") -> DDIMScheduler:
    """MONAI's x0-predicting ``DDIMScheduler`` with ``T = num_train_timesteps`` and one of :data:`SCHEDULES`;
    the same for training and inference. MONAI is imported here, on first use."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
    from monai.networks.schedulers import DDIMScheduler

    return DDIMScheduler(
        num_train_timesteps=num_train_timesteps, schedule=schedule, prediction_type="sample", clip_sample=True
    )


def timestep_pairs(t_start: int, steps: int) -> list[tuple[int, int]]:
    """``steps`` evenly spaced timesteps from ``t_start`` to 0, as ``(t, t_prev)`` pairs.

    The last pair is ``(0, -1)``: -1 means the clean image. Raises ``ValueError`` when the timesteps
    would repeat (``steps > t_start + 1``).
    """
    if steps < 1 or steps > t_start + 1:
        raise ValueError(f"steps must be in 1..{t_start + 1} for t_start={t_start}, got {steps}")
    timesteps = np.round(np.linspace(t_start, 0, steps)).astype(int).tolist() if steps > 1 else [t_start]
    return list(zip(timesteps, timesteps[1:] + [-1]))


def ddim_step(
    alphas_cumprod: list[float], x0: torch.Tensor, x_t: torch.Tensor, t: int, t_prev: int,
    eta: float = 0.0, noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One DDIM update from ``t`` to ``t_prev`` given the predicted ``x0``; shapes equal ``x_t``.

    ``alphas_cumprod``: the scheduler's cumulative alphas as a list (``scheduler.alphas_cumprod.tolist()``).
    """
    a_t = alphas_cumprod[t]
    a_prev = alphas_cumprod[t_prev] if t_prev >= 0 else 1.0
    eps = (x_t - a_t**0.5 * x0) / (1 - a_t) ** 0.5
    sigma = eta * ((1 - a_prev) / (1 - a_t)) ** 0.5 * (1 - a_t / a_prev) ** 0.5
    x_prev = a_prev**0.5 * x0 + max(1 - a_prev - sigma**2, 0.0) ** 0.5 * eps
    if sigma > 0 and noise is not None:
        x_prev = x_prev + sigma * noise
    return x_prev


def _logits_for_all_chains(net, x_t, t, image, features, samples: int, batch: int) -> torch.Tensor:
    """Denoiser logits for every chain, ``batch`` chains per call; chain ``c`` belongs to image ``c // samples``."""
    owner = torch.arange(x_t.shape[0], device=x_t.device) // samples
    steps = torch.full((x_t.shape[0],), t, device=x_t.device, dtype=torch.long)
    chunks = []
    for x_chunk, t_chunk, o_chunk in zip(x_t.split(batch), steps.split(batch), owner.split(batch)):
        if image.shape[0] == 1:  # one image: broadcast it and its features instead of copying them
            chunks.append(net.denoiser(x_chunk, t_chunk, image, features))
        else:
            chunks.append(net.denoiser(x_chunk, t_chunk, image[o_chunk], [f[o_chunk] for f in features]))
    return torch.cat(chunks).float()


@torch.inference_mode()
def refine(
    net: SpineSegDiffNet, scheduler: DDIMScheduler, image: torch.Tensor, presegmentation: torch.Tensor,
    options: SamplingOptions, on_step: Callable[[], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Refine the presegmentations of B images with S DDIM chains each and fuse each image's chains.

    Args:
        net: the dual-encoder network, on the target device.
        scheduler: from :func:`make_scheduler` (its ``alphas_cumprod`` and ``add_noise`` are used).
        image: ``(B, C, *spatial)`` normalised images (B = 1 in central mode).
        presegmentation: ``(B, K, *spatial)`` one-hot presegmentations in {0, 1}.
        options: sampling options; ``sample_batch`` chains (of any images) go through the network per call.
        on_step: called after every denoising step (progress and cancel).

    Returns:
        ``(probabilities (B, K, *spatial), uncertainty (B, *spatial), class uncertainty (B, K, *spatial))``.
    """
    device = image.device
    b, s = image.shape[0], options.samples
    generator = torch.Generator().manual_seed(options.seed)
    shape = (b * s, *presegmentation.shape[1:])
    pairs = timestep_pairs(options.t_start, options.steps)
    fusions = [StepFusion(len(pairs), min(options.fused_steps, len(pairs))) for _ in range(b)]
    alphas_cumprod = scheduler.alphas_cumprod.tolist()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.bfloat16):
        features = net.image_encoder(image)
        x0 = (presegmentation.float() * 2 - 1).repeat_interleave(s, dim=0)
        noise = torch.randn(shape, generator=generator).to(device)
        x_t = scheduler.add_noise(x0, noise, torch.full((shape[0],), options.t_start, device=device))
        for t, t_prev in pairs:
            logits = _logits_for_all_chains(net, x_t, t, image, features, s, options.sample_batch)
            for fusion, image_logits in zip(fusions, logits.split(s)):
                fusion.add(image_logits)
            if t_prev >= 0:
                x0_hat = torch.softmax(logits, dim=1) * 2 - 1
                step_noise = torch.randn(shape, generator=generator).to(device) if options.eta > 0 else None
                x_t = ddim_step(alphas_cumprod, x0_hat, x_t.float(), t, t_prev, options.eta, step_noise)
            if on_step is not None:
                on_step()
    results = [fusion.result() for fusion in fusions]
    return tuple(torch.stack(parts) for parts in zip(*results))
