"""The whole pipeline: volume in, labelmap + uncertainty heatmap on the input grid out.

The same code path serves the CLI, batch runs, the Slicer module and the training evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from . import __version__
from .errors import SpineSegDiffError
from .labels import STRUCTURES
from .models import (
    DEFAULT_DIFFUSION,
    DEFAULT_DIFFUSION_3D,
    DEFAULT_MODELS_DIR,
    DEFAULT_PRESEGMENTER,
    open_model_folder,
)
from .options import SegmentOptions, resolve_device
from .postprocess import remove_small_components
from .preprocess import Geometry, from_model_space, to_model_space
from .presegment import NnUNetPresegmenter
from .refiner import DiffusionRefiner, refine_slices
from .volumetric import VolumeRefiner

DEFAULT_OPTIONS = SegmentOptions()
Progress = Callable[[str, float], None]
"""``progress(stage, fraction_done)``; it may raise :class:`~.errors.Cancelled` to stop the run."""


@dataclass
class SegmentationResult:
    """What one run produces.

    Attributes:
        labels: uint8 labelmap on the input grid (0 background, then the label table's values).
        uncertainty: float32 heatmap on the input grid, 0 (certain) .. 1 (maximal entropy).
        structure_uncertainty: per structure key, float32 binary-entropy map on the input grid.
        model_image / model_labels / model_uncertainty: model-space ``(N, 320, 320)`` arrays.
        geometry: the mapping between both grids.
        timings: seconds per stage.
    """

    labels: sitk.Image
    uncertainty: sitk.Image
    structure_uncertainty: dict[str, sitk.Image]
    model_image: np.ndarray
    model_labels: np.ndarray
    model_uncertainty: np.ndarray
    geometry: Geometry
    options: dict
    models: dict
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def slice_indices(self) -> tuple[int, ...]:
        return self.geometry.slice_indices


class Segmenter:
    """Loaded models on one device, reused across many volumes."""

    def __init__(self, models_dir: Path | None = None, device: str = "auto",
                 presegmenter: str | Path | None = None, diffusion: str | Path | None = None,
                 diffusion_3d: str | Path | None = None) -> None:
        root = Path(models_dir) if models_dir else DEFAULT_MODELS_DIR
        self.device = resolve_device(device)
        self.preseg_model = open_model_folder(_model_path(root, presegmenter, DEFAULT_PRESEGMENTER), "nnunet")
        self.presegmenter = NnUNetPresegmenter(self.preseg_model, self.device)
        self.diffusion_model, self.refiner = self._optional_diffusion(root, diffusion, DEFAULT_DIFFUSION,
                                                                      DiffusionRefiner)
        self.volume_model, self.volume_refiner = self._optional_diffusion(root, diffusion_3d, DEFAULT_DIFFUSION_3D,
                                                                          VolumeRefiner)

    def _optional_diffusion(self, root: Path, given: str | Path | None, default: str, refiner_class):
        """``(model folder, refiner)``, or ``(None, None)`` when the default folder is absent and none was
        named (a folder named explicitly must exist)."""
        path = _model_path(root, given, default)
        if not path.exists() and given is None:
            return None, None
        model = open_model_folder(path, "diffusion")
        return model, refiner_class(model, self.device)

    def segment(self, image: sitk.Image, options: SegmentOptions = DEFAULT_OPTIONS,
                progress: Progress | None = None) -> SegmentationResult:
        """Segment one validated 3D volume (see :func:`~.io.read_volume`)."""
        progress = progress or (lambda stage, fraction: None)
        timings: dict[str, float] = {}
        start = clock = time.perf_counter()
        slices = options.slice_index if options.slice_index is not None else "central"
        if options.mode != "central":
            slices = "all"
        if options.mode == "volume" and options.refine and self.volume_refiner is None:
            raise SpineSegDiffError("volume mode needs the 3D diffusion model, which is not installed",
                                    f"put {DEFAULT_DIFFUSION_3D} into the models folder or use --mode slices")
        images, geometry = to_model_space(image, slices)
        timings["preprocess"], clock = _lap(clock)
        progress("presegmentation", 0.0)
        presegmentation = self.presegmenter(images)
        timings["presegmentation"], clock = _lap(clock)
        probabilities, uncertainty, class_uncertainty = self._refine(images, presegmentation, options, progress)
        timings["diffusion"], clock = _lap(clock)
        labels = remove_small_components(probabilities.argmax(axis=1).astype(np.uint8))
        result = self._on_input_grid(images, labels, uncertainty, class_uncertainty, geometry)
        result.options = self.describe_options(options)
        timings["postprocess"], _ = _lap(clock)
        timings["total"] = time.perf_counter() - start
        result.timings = timings
        progress("done", 1.0)
        return result

    def _refine(self, images: np.ndarray, presegmentation: np.ndarray, options: SegmentOptions, progress: Progress):
        """Probabilities ``(N, K, H, W)``, uncertainty ``(N, H, W)``, class uncertainty ``(N, K, H, W)``."""
        refiner = self._refiner_for(options)
        sampling = options.sampling(refiner.t_start_default, self.device) if refiner else None
        on_progress = lambda fraction: progress("diffusion", fraction)  # noqa: E731
        if options.mode == "volume" and refiner is not None:
            return refiner(images, presegmentation, sampling, on_progress)
        return refine_slices(refiner, images, presegmentation, sampling, on_progress)

    def _refiner_for(self, options: SegmentOptions) -> DiffusionRefiner | VolumeRefiner | None:
        if not options.refine:
            return None
        return self.volume_refiner if options.mode == "volume" else self.refiner

    def _on_input_grid(self, images, labels, uncertainty, class_uncertainty, geometry) -> SegmentationResult:
        structure_maps = {
            s.key: from_model_space(class_uncertainty[:, s.value], geometry, sitk.sitkLinear) for s in STRUCTURES
        }
        return SegmentationResult(
            labels=sitk.Cast(from_model_space(labels, geometry, sitk.sitkNearestNeighbor), sitk.sitkUInt8),
            uncertainty=sitk.Cast(from_model_space(uncertainty, geometry, sitk.sitkLinear), sitk.sitkFloat32),
            structure_uncertainty={k: sitk.Cast(v, sitk.sitkFloat32) for k, v in structure_maps.items()},
            model_image=images, model_labels=labels, model_uncertainty=uncertainty, geometry=geometry,
            options={}, models=self.model_description(),
        )

    def describe_options(self, options: SegmentOptions) -> dict:
        """The options as given, plus what they resolved to on this device (for the report)."""
        refiner = self._refiner_for(options)
        sampling = options.sampling(refiner.t_start_default, self.device) if refiner else None
        return {**asdict(options), "resolved_device": str(self.device),
                "resolved_sampling": asdict(sampling) if sampling else None}

    def model_description(self) -> dict:
        description = {"spinesegdiff_version": __version__, "torch_version": torch.__version__,
                       "presegmentation": self.preseg_model.model_id}
        if self.diffusion_model is not None:
            description["diffusion"] = self.diffusion_model.model_id
        if self.volume_model is not None:
            description["diffusion_3d"] = self.volume_model.model_id
        return description


def _model_path(root: Path, given: str | Path | None, default: str) -> Path:
    if given is None:
        return root / default
    path = Path(given)
    return path if path.is_absolute() or path.exists() else root / path


def _lap(clock: float) -> tuple[float, float]:
    now = time.perf_counter()
    return round(now - clock, 3), now


def segment(image: sitk.Image, options: SegmentOptions = DEFAULT_OPTIONS, models_dir: Path | None = None,
            progress: Progress | None = None) -> SegmentationResult:
    """One-call API: load the default models on ``options.device`` and segment ``image``."""
    if not isinstance(image, sitk.Image):
        raise SpineSegDiffError("segment() takes a SimpleITK image", "read it with SpineSegDiffLib.io.read_volume")
    return Segmenter(models_dir, options.device).segment(image, options, progress)
