"""User-facing options and quality presets (one frozen dataclass, no behaviour by string dispatch)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .errors import SpineSegDiffError
from .sampling import SamplingOptions

PRESETS: dict[str, dict[str, int]] = {
    "fast": {"samples": 5, "steps": 2, "fused_steps": 2},
    "standard": {"samples": 15, "steps": 5, "fused_steps": 5},
    "paper": {"samples": 15, "steps": 10, "fused_steps": 10},
}
"""Central-slice presets, picked on the accuracy-vs-cost grid (``bench/results/accuracy_vs_cost.md``,
7 held-out SPIDER series, 3 seeds): mean Dice 0.8904 / 0.8916 / 0.8913 against 0.8627 for nnU-Net
alone, heatmap AUROC 0.902 / 0.907 / 0.909, for 10 / 75 / 150 network evaluations. S = 15 is the
paper's; more steps mostly sharpen the heatmap."""
VOLUME_PRESETS: dict[str, dict[str, int]] = {
    "fast": {"samples": 3, "steps": 2, "fused_steps": 2},
    "standard": {"samples": 5, "steps": 2, "fused_steps": 2},
    "paper": {"samples": 15, "steps": 5, "fused_steps": 5},
}
"""Presets of the volumetric modes (every slice, 3D), where every evaluation covers a whole volume:
on the same grid S = 5 with 2 steps keeps 99.9 % of the best central-slice Dice at 1/7 of its cost."""
CPU_SAMPLE_BATCH = 5
"""Chains per network call on a CPU: measured fastest at 320 x 192 on 2 cores (batch 1: 0.110 s,
batch 4-5: 0.095 s per chain)."""
GPU_SAMPLE_BATCH = 64
"""Chains per network call on a GPU (at least S): all chains of one slice, and in every-slice mode the
chains of several slices together (``GPU_SAMPLE_BATCH // S`` slices per call)."""
MODES = ("central", "slices", "volume")
DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class SegmentOptions:
    """Everything that changes a segmentation; ``None`` fields take the preset's value.

    Attributes:
        mode: ``central`` (the paper's central sagittal slice), ``slices`` (the 2D model on every
            sagittal slice) or ``volume`` (the 3D Diff-UNet over the whole volume).
        preset: ``fast``, ``standard`` or ``paper`` (:data:`PRESETS` in central mode, else
            :data:`VOLUME_PRESETS`).
        refine: False runs the nnU-Net presegmentation only.
        slice_index: in central mode, process this index along the left-right axis instead.
    """

    mode: str = "central"
    preset: str = "standard"
    samples: int | None = None
    steps: int | None = None
    fused_steps: int | None = None
    t_start: int | None = None
    eta: float = 0.0
    seed: int = 0
    device: str = "auto"
    refine: bool = True
    slice_index: int | None = None
    sample_batch: int | None = None
    bfloat16: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise SpineSegDiffError(f"unknown mode {self.mode!r}", f"choose one of {', '.join(MODES)}")
        if self.preset not in PRESETS:
            raise SpineSegDiffError(f"unknown preset {self.preset!r}", f"choose one of {', '.join(PRESETS)}")
        if self.device not in DEVICES:
            raise SpineSegDiffError(f"unknown device {self.device!r}", f"choose one of {', '.join(DEVICES)}")
        for name in ("samples", "steps", "fused_steps"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise SpineSegDiffError(f"{name} must be at least 1, got {value}")

    def with_overrides(self, **changes) -> SegmentOptions:
        return replace(self, **changes)

    def sampling(self, t_start_default: int, device: torch.device) -> SamplingOptions:
        """Resolve the preset and device-dependent defaults into :class:`SamplingOptions`."""
        preset = (PRESETS if self.mode == "central" else VOLUME_PRESETS)[self.preset]
        samples = self.samples or preset["samples"]
        t_start = self.t_start if self.t_start is not None else t_start_default
        steps = min(self.steps or preset["steps"], t_start + 1)
        fused = min(self.fused_steps or preset["fused_steps"], steps)
        on_gpu = device.type != "cpu"
        return SamplingOptions(
            samples=samples, steps=steps, fused_steps=fused, t_start=t_start, eta=self.eta, seed=self.seed,
            sample_batch=self.sample_batch or (max(samples, GPU_SAMPLE_BATCH) if on_gpu else CPU_SAMPLE_BATCH),
            bfloat16=self.bfloat16,
        )


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable explicit choice is an error."""
    available = {
        "cuda": torch.cuda.is_available(),
        "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available(),
        "cpu": True,
    }
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available[name]:
        raise SpineSegDiffError(f"device {name!r} is not available on this computer", "use --device auto or cpu")
    return torch.device(name)
