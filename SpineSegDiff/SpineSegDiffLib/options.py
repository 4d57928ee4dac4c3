"""User-facing options: the one definition of modes, presets and devices, and their validation.

The command line, the Slicer module (parameter node and UI) and the batch scripts all take their
choices, labels and help texts from here. Nothing here imports torch at import time, so the Slicer
module can build its UI before the dependencies are installed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from .errors import SpineSegDiffError

if TYPE_CHECKING:
    import torch

    from .inference.sampling import SamplingOptions
    from .modelset.model_set import ModelSet
    from .modelset.settings import DiffusionSettings

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


@dataclass(frozen=True)
class Choice:
    """One allowed value of an option, with its label and help text for user interfaces."""

    key: str
    label: str
    description: str


MODE_CHOICES = (
    Choice("central", "Central slice", "The central sagittal slice, as in the paper (seconds to a minute on a CPU)."),
    Choice("slices", "Every slice", "The 2D model on every sagittal slice (under a minute on a CPU)."),
    Choice("volume", "Volumetric 3D",
           "The 3D Diff-UNet over the whole volume (sliding window; under a minute on a CPU)."),
)
DEVICE_CHOICES = (
    Choice("auto", "auto", "A CUDA or Apple GPU when there is one, else the CPU (a case that runs out of GPU "
                           "memory is retried on the CPU)."),
    Choice("cpu", "cpu", "The CPU."),
    Choice("cuda", "cuda", "An NVIDIA GPU."),
    Choice("mps", "mps", "An Apple GPU."),
)
MODES = tuple(c.key for c in MODE_CHOICES)
DEVICES = tuple(c.key for c in DEVICE_CHOICES)
PRESET_NAMES = tuple(PRESETS)
MAX_SAMPLES = 256
MAX_STEPS = 1000


def _sizes(presets: dict[str, dict[str, int]]) -> str:
    return ", ".join(f"{name} {p['samples']}x{p['steps']}" for name, p in presets.items())


PRESET_HELP = f"Samples x steps. Central slice: {_sizes(PRESETS)}. Every slice and 3D: {_sizes(VOLUME_PRESETS)}."


def _need(condition: bool, problem: str, hint: str) -> None:
    if not condition:
        raise SpineSegDiffError(problem, hint)


def _check_choice(name: str, value, allowed: tuple[str, ...]) -> None:
    _need(value in allowed, f"unknown {name} {value!r}", f"choose one of {', '.join(allowed)}")


def _check_int(name: str, value, low: int, high: int | None = None) -> None:
    """``value`` is None or an integer in ``low..high``."""
    if value is None:
        return
    flag = "--" + name.replace("_", "-")
    in_range = isinstance(value, int) and not isinstance(value, bool) and value >= low
    in_range = in_range and (high is None or value <= high)
    limit = f"{low}..{high}" if high is not None else f"at least {low}"
    _need(in_range, f"{flag} must be an integer {'in ' if high is not None else ''}{limit}, got {value!r}",
          f"give {flag} a value {'in ' if high is not None else ''}{limit}, or leave it out for the default")


@dataclass(frozen=True)
class SegmentOptions:
    """Everything that changes a segmentation; ``None`` fields take the preset's (or the model's) value.

    Every value is checked on construction; :meth:`sampling` checks the rest against the model
    (``t_start`` below its ``num_train_timesteps``, ``steps`` at most ``t_start + 1``).

    Attributes:
        mode: ``central`` (the paper's central sagittal slice), ``slices`` (the 2D model on every
            sagittal slice) or ``volume`` (the 3D Diff-UNet over the whole volume).
        preset: ``fast``, ``standard`` or ``paper`` (:data:`PRESETS` in central mode, else
            :data:`VOLUME_PRESETS`).
        t_start: the timestep the presegmentation is noised to (default: the model's).
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
        _check_choice("mode", self.mode, MODES)
        _check_choice("preset", self.preset, PRESET_NAMES)
        _check_choice("device", self.device, DEVICES)
        _check_int("samples", self.samples, 1, MAX_SAMPLES)
        _check_int("steps", self.steps, 1, MAX_STEPS)
        _check_int("fused_steps", self.fused_steps, 1, MAX_STEPS)
        _check_int("t_start", self.t_start, 0)
        _check_int("seed", self.seed, 0, 2**63 - 1)
        _check_int("slice_index", self.slice_index, 0)
        _check_int("sample_batch", self.sample_batch, 1)
        for name in ("refine", "bfloat16"):
            _need(isinstance(getattr(self, name), bool), f"{name} must be true or false, got {getattr(self, name)!r}",
                  f"give {name} as a boolean")
        _need(isinstance(self.eta, (int, float)) and not isinstance(self.eta, bool) and 0.0 <= self.eta <= 1.0,
              f"eta must be a number in 0..1, got {self.eta!r}", "use 0 (deterministic DDIM) unless you know why")
        if self.steps is not None and self.fused_steps is not None:
            _need(self.fused_steps <= self.steps, f"--fused-steps ({self.fused_steps}) is more than --steps "
                  f"({self.steps})", "fuse at most as many steps as there are")
        if self.slice_index is not None:
            _need(self.mode == "central", f"--slice-index picks the slice of the central mode, not of {self.mode!r}",
                  "leave --slice-index out, or use --mode central")

    def sampling(self, model: DiffusionSettings, on_gpu: bool) -> SamplingOptions:
        """Resolve preset, model and device defaults into :class:`~.sampling.SamplingOptions`.

        Raises :class:`SpineSegDiffError` when an explicit ``t_start`` or ``steps`` does not fit the model.
        """
        from .inference.sampling import SamplingOptions

        preset = (PRESETS if self.mode == "central" else VOLUME_PRESETS)[self.preset]
        t_start = model.t_start if self.t_start is None else self.t_start
        last = model.num_train_timesteps - 1
        _need(t_start <= last, f"--t-start {t_start} is beyond this model's schedule (0..{last})",
              f"use a value in 0..{last}, or leave it out for the model's default ({model.t_start})")
        if self.steps is not None:
            _need(self.steps <= t_start + 1, f"--steps {self.steps} is more than the {t_start + 1} timesteps "
                  f"from t_start {t_start} down to 0", f"use at most {t_start + 1} steps, or a larger --t-start")
        steps = self.steps or min(preset["steps"], t_start + 1)
        fused = min(self.fused_steps or preset["fused_steps"], steps)
        samples = self.samples or preset["samples"]
        return SamplingOptions(
            samples=samples, steps=steps, fused_steps=fused, t_start=t_start, eta=self.eta, seed=self.seed,
            sample_batch=self.sample_batch or (max(samples, GPU_SAMPLE_BATCH) if on_gpu else CPU_SAMPLE_BATCH),
            bfloat16=self.bfloat16,
        )


@dataclass(frozen=True)
class RunPlan:
    """What one run does, resolved once from the options, the models and the device (:func:`plan`).

    Attributes:
        options: the options as given.
        device: the device the run uses.
        settings: the refining diffusion model's settings (None without refinement).
        sampling: the resolved sampling (samples, steps, t_start, batch...; None without refinement).
    """

    options: SegmentOptions
    device: torch.device
    settings: DiffusionSettings | None
    sampling: SamplingOptions | None

    def describe(self) -> dict:
        """The options as given, plus what they resolved to (for the report)."""
        return {**asdict(self.options), "resolved_device": str(self.device),
                "resolved_sampling": asdict(self.sampling) if self.sampling else None}


def plan(options: SegmentOptions, models: ModelSet, device: torch.device) -> RunPlan:
    """Resolve ``options`` against ``models`` on ``device``, once per run.

    Raises :class:`SpineSegDiffError` when the options ask for another device than the run's (``auto``
    fits any), or do not fit the models (see :meth:`SegmentOptions.sampling`)."""
    _need(options.device in ("auto", device.type), f"the options ask for device {options.device!r} but this "
          f"segmenter runs on {device}", f"use --device {device.type} or auto, or a segmenter on {options.device}")
    settings = models.settings_for(options)
    sampling = options.sampling(settings, on_gpu=device.type != "cpu") if settings else None
    return RunPlan(options, device, settings, sampling)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an unavailable explicit choice is an error."""
    import torch

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
