"""What a diffusion model folder's ``config.json`` says about inference, read and checked.

Inference follows the model: its preprocessing (model-space size, spacing, intensity scaling), its
noise schedule (``num_train_timesteps``, ``schedule``), what its network predicts, how its timesteps
are spaced and its default start step. A setting this code cannot reproduce is refused with a
reason instead of being run silently wrong. Absent keys take the values every bundled model was
trained with (the defaults of the dataclasses below).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpineSegDiffError
from ..inference.preprocess import MODEL_ORIENTATION_TEXT, Preprocessing
from ..inference.schedules import SCHEDULES

PREDICTIONS = ("x0",)
"""What the network may predict: the clean one-hot labels (the paper's choice)."""
TIMESTEP_SPACINGS = ("linspace",)
"""How inference timesteps are spaced: evenly from ``t_start`` to 0, rounded (:func:`~.sampling.timestep_pairs`)."""
_PERCENTILE = re.compile(r"^\s*(\d+(?:\.\d+)?)(?:st|nd|rd|th)?\s+percentile\s*->\s*(\d+(?:\.\d+)?)\s*$")


@dataclass(frozen=True)
class DiffusionSettings:
    """The sampling-relevant part of a diffusion model's ``config.json``."""

    num_train_timesteps: int
    t_start: int
    schedule: str = "cosine"
    prediction: str = "x0"
    timestep_spacing: str = "linspace"


def _refuse(path: Path, problem: str, supported) -> SpineSegDiffError:
    return SpineSegDiffError(
        f"the model in {path} cannot be run by this SpineSegDiff: {problem}",
        f"this version supports {', '.join(map(str, supported))}; update SpineSegDiff or use another model",
    )


def _one_of(value, supported: tuple, path: Path, what: str):
    if value not in supported:
        raise _refuse(path, f"its {what} is {value!r}", supported)
    return value


def diffusion_settings(config: dict, path: Path) -> DiffusionSettings:
    """Read ``diffusion`` (and ``inference.t_start``, which overrides the trained default) from a config."""
    diffusion = config.get("diffusion")
    if not isinstance(diffusion, dict) or "num_train_timesteps" not in diffusion or "t_start" not in diffusion:
        raise SpineSegDiffError(f"{path / 'config.json'} does not describe its diffusion schedule",
                                "bundle the model again with spinesegdiff-train bundle")
    steps = diffusion["num_train_timesteps"]
    t_start = config.get("inference", {}).get("t_start", diffusion["t_start"])
    if not isinstance(steps, int) or steps < 1:
        raise _refuse(path, f"num_train_timesteps is {steps!r}", ["a positive integer"])
    if not isinstance(t_start, int) or not 0 <= t_start < steps:
        raise _refuse(path, f"its default t_start is {t_start!r}", [f"an integer in 0..{steps - 1}"])
    return DiffusionSettings(
        num_train_timesteps=steps, t_start=t_start,
        schedule=_one_of(diffusion.get("schedule", "cosine"), SCHEDULES, path, "noise schedule"),
        prediction=_one_of(diffusion.get("prediction", "x0"), PREDICTIONS, path, "prediction type"),
        timestep_spacing=_one_of(diffusion.get("timestep_spacing", "linspace"), TIMESTEP_SPACINGS, path,
                                 "timestep spacing"),
    )


def preprocessing_settings(config: dict, path: Path) -> Preprocessing:
    """Read ``preprocessing``: ``size``, ``spacing_mm``, ``intensity`` ("98th percentile -> 255" or
    ``{"percentile": 98, "max": 255}``) and ``orientation`` (only the model space described in :mod:`.preprocess`)."""
    given = config.get("preprocessing", {})
    default = Preprocessing()
    size, spacing = given.get("size", default.size), given.get("spacing_mm", default.spacing_mm)
    if not isinstance(size, int) or size < 32:
        raise _refuse(path, f"its model-space size is {size!r}", ["an integer of at least 32"])
    if not isinstance(spacing, (int, float)) or spacing <= 0:
        raise _refuse(path, f"its model-space spacing is {spacing!r} mm", ["a positive number"])
    _one_of(given.get("orientation", MODEL_ORIENTATION_TEXT), (MODEL_ORIENTATION_TEXT,), path, "orientation")
    percentile, maximum = _intensity(given.get("intensity"), default, path)
    return Preprocessing(size=size, spacing_mm=float(spacing), intensity_percentile=percentile,
                         intensity_max=maximum)


def _intensity(value, default: Preprocessing, path: Path) -> tuple[float, float]:
    if value is None:
        return default.intensity_percentile, default.intensity_max
    if isinstance(value, dict) and {"percentile", "max"} <= value.keys():
        percentile, maximum = float(value["percentile"]), float(value["max"])
    elif isinstance(value, str) and _PERCENTILE.match(value):
        percentile, maximum = (float(g) for g in _PERCENTILE.match(value).groups())
    else:
        raise _refuse(path, f"its intensity scaling is {value!r}", ['"<p>th percentile -> <max>"'])
    if not 0 < percentile <= 100 or maximum <= 0:
        raise _refuse(path, f"its intensity scaling is {value!r}", ["a percentile in (0, 100] and a positive max"])
    return percentile, maximum
