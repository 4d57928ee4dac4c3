"""The whole pipeline: volume in, labelmap + uncertainty heatmap on the input grid out.

The same code path serves the CLI, batch runs, the Slicer module and the training evaluation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from .. import __version__
from ..anatomy.assessment import assess_levels
from ..anatomy.grading import MODEL_FILE, DiscGrader
from ..anatomy.levels import find_levels
from ..anatomy.volume_levels import measure_slices, propagate_levels
from ..errors import SpineSegDiffError
from ..labels import by_key
from ..modelset.model_set import ModelSet, open_models
from ..options import RunPlan, SegmentOptions, plan, resolve_device
from .postprocess import remove_small_components
from .preprocess import Geometry, from_model_space, model_point_to_patient, to_model_space
from .refiner import refine_slices

DEFAULT_OPTIONS = SegmentOptions()
Progress = Callable[[str, float], None]
"""``progress(stage, fraction_done)``; it may raise :class:`~.errors.Cancelled` to stop the run."""


@dataclass
class SegmentationResult:
    """What one run produces.

    Attributes:
        labels: uint8 labelmap on the input grid (0 background, then the label table's values).
        uncertainty: float32 heatmap on the input grid, 0 (certain) .. 1 (maximal entropy).
        model_image / model_labels / model_uncertainty: model-space ``(N, H, W)`` arrays.
        model_structure_uncertainty: model-space per-class binary-entropy maps ``(N, K, H, W)``.
        geometry: the mapping between both grids.
        timings: seconds per stage.
        levels: named vertebrae and discs of the central processed slice, with measurements and
            grades (:func:`~.assessment.assess_levels`).
        model_level_labels: int32 ``(N, H, W)``: each named level's ``label_value`` over its pixels
            (tracked from the central slice through every processed slice, :mod:`~.volume_levels`).
        slice_levels: in the volumetric modes, the measurements of every level on every processed slice
            (:func:`~.volume_levels.measure_slices`); None for a single slice.
    """

    labels: sitk.Image
    uncertainty: sitk.Image
    model_image: np.ndarray
    model_labels: np.ndarray
    model_uncertainty: np.ndarray
    model_structure_uncertainty: np.ndarray
    geometry: Geometry
    options: dict
    models: dict
    timings: dict[str, float] = field(default_factory=dict)
    levels: dict | None = None
    model_level_labels: np.ndarray | None = None
    slice_levels: list[dict] | None = None

    @property
    def slice_indices(self) -> tuple[int, ...]:
        return self.geometry.slice_indices

    def level_labels(self) -> sitk.Image | None:
        """The level labelmap (values: the report's ``label_value``) on the input grid, or None."""
        if self.model_level_labels is None:
            return None
        return sitk.Cast(from_model_space(self.model_level_labels, self.geometry, sitk.sitkNearestNeighbor),
                         sitk.sitkUInt8)

    def structure_uncertainty(self, key: str) -> sitk.Image:
        """One structure's float32 heatmap (``"SC"``, ``"VB"``, ``"IVD"``) on the input grid, resampled on request."""
        maps = self.model_structure_uncertainty[:, by_key(key).value]
        return sitk.Cast(from_model_space(maps, self.geometry, sitk.sitkLinear), sitk.sitkFloat32)


class Segmenter:
    """Checked model folders on one device, reused across many volumes.

    The presegmenter is loaded at once; each diffusion model on its first use. Give ``models`` (from
    :func:`~.model_set.open_models`) when the folders were already opened, e.g. to check options first.
    """

    def __init__(self, models_dir: Path | None = None, device: str = "auto",
                 presegmenter: str | Path | None = None, diffusion: str | Path | None = None,
                 diffusion_3d: str | Path | None = None, models: ModelSet | None = None,
                 grader: str | Path | None = None) -> None:
        from .presegment import NnUNetPresegmenter

        self.models = models or open_models(models_dir, presegmenter, diffusion, diffusion_3d, grader)
        self.device = resolve_device(device)
        self.preprocessing = self.models.preprocessing
        self.presegmenter = NnUNetPresegmenter(self.models.presegmenter, self.device)
        self._refiners: dict[str, object] = {}
        self.grader = DiscGrader(self.models.grader) if self.models.grader else None

    def refiner_for(self, options: SegmentOptions):
        """The loaded refiner for these options (None without refinement); loads the model on first use."""
        if not options.refine:
            return None
        kind = "volume" if options.mode == "volume" else "slices"
        if kind not in self._refiners:
            model = self.models.diffusion_for(options.mode)
            if kind == "volume":
                from .volumetric import VolumeRefiner as refiner_class
            else:
                from .refiner import DiffusionRefiner as refiner_class
            self._refiners[kind] = refiner_class(model, self.device)
        return self._refiners[kind]

    def segment(self, image: sitk.Image, options: SegmentOptions = DEFAULT_OPTIONS,
                progress: Progress | None = None) -> SegmentationResult:
        """Segment one validated 3D volume (see :func:`~.io.read_volume`)."""
        if not isinstance(image, sitk.Image):
            raise SpineSegDiffError("segment() takes a SimpleITK image", "read it with SpineSegDiffLib.io.read_volume")
        run = plan(options, self.models, self.device)  # refuses options that do not fit, before any work
        self.refiner_for(options)  # a diffusion model loads on first use, before the timed stages
        progress = progress or (lambda stage, fraction: None)
        timings: dict[str, float] = {}
        start = clock = time.perf_counter()
        slices = "all" if options.mode != "central" else (
            options.slice_index if options.slice_index is not None else "central")
        images, geometry = to_model_space(image, slices, self.preprocessing)
        timings["preprocess"], clock = _lap(clock)
        progress("presegmentation", 0.0)
        presegmentation, preseg_uncertainty = self.presegmenter.predict(images)
        timings["presegmentation"], clock = _lap(clock)
        probabilities, uncertainty, class_uncertainty = self._refine(images, presegmentation, preseg_uncertainty,
                                                                     run, progress)
        timings["diffusion"], clock = _lap(clock)
        labels = remove_small_components(probabilities.argmax(axis=1).astype(np.uint8))
        result = SegmentationResult(
            labels=sitk.Cast(from_model_space(labels, geometry, sitk.sitkNearestNeighbor), sitk.sitkUInt8),
            uncertainty=sitk.Cast(from_model_space(uncertainty, geometry, sitk.sitkLinear), sitk.sitkFloat32),
            model_image=images, model_labels=labels, model_uncertainty=uncertainty,
            model_structure_uncertainty=class_uncertainty, geometry=geometry,
            options=run.describe(), models=self.model_description(),
        )
        self._assess(result)
        timings["postprocess"], _ = _lap(clock)
        timings["total"] = time.perf_counter() - start
        result.timings = timings
        progress("done", 1.0)
        return result

    def _assess(self, result: SegmentationResult) -> None:
        """Name, measure and grade the levels of the central processed slice (``result.levels``)."""
        k = len(result.model_image) // 2
        image, labels = result.model_image[k], result.model_labels[k]
        spacing = result.geometry.model_grid.spacing[0]
        levels = find_levels(labels, image, spacing)
        to_patient = lambda row, column: model_point_to_patient(result.geometry.model_grid, k, row, column)  # noqa: E731
        result.levels = assess_levels(levels, image, labels, result.model_uncertainty[k], self.grader, spacing,
                                      to_patient)
        if len(result.model_image) == 1:
            result.model_level_labels = levels.instances[None]
            return
        labels, heatmap = result.model_labels, result.model_uncertainty
        result.model_level_labels = propagate_levels(levels, labels, k, spacing)
        result.slice_levels = measure_slices(levels, result.model_level_labels, labels, heatmap, spacing,
                                             result.slice_indices)

    def _refine(self, images: np.ndarray, presegmentation: np.ndarray, preseg_uncertainty: np.ndarray,
                run: RunPlan, progress: Progress):
        """Probabilities ``(N, K, H, W)``, uncertainty ``(N, H, W)``, class uncertainty ``(N, K, H, W)``.

        The heatmap covers the whole image: the diffusion entropy (eq. 4-5) where the refiner ran, the
        presegmenter's own entropy elsewhere (and everywhere with ``refine=False``)."""
        refiner = self.refiner_for(run.options)
        on_progress = lambda fraction: progress("diffusion", fraction)  # noqa: E731
        if run.options.mode == "volume" and refiner is not None:
            return refiner(images, presegmentation, run.sampling, on_progress, preseg_uncertainty)
        return refine_slices(refiner, images, presegmentation, run.sampling, on_progress, preseg_uncertainty)

    def model_description(self) -> dict:
        """The report's ``models``: the versions of SpineSegDiff and torch and the id of every model of the set;
        the disc grader also with ``grader_sha256``, the checksum of its ``model.json`` (its id stays the same
        when it is retrained, the checksum does not), and ``grader_calibration`` (temperature, abstain threshold)."""
        description = {"spinesegdiff_version": __version__, "torch_version": torch.__version__,
                       "presegmentation": self.models.presegmenter.model_id}
        models = (("diffusion", self.models.diffusion), ("diffusion_3d", self.models.diffusion_3d),
                  ("grader", self.models.grader))
        for key, model in models:
            if model is not None:
                description[key] = model.model_id
        grader = self.models.grader.config if self.models.grader else {}
        if grader.get("files", {}).get(MODEL_FILE):
            description["grader_sha256"] = grader["files"][MODEL_FILE]
        if "calibration" in grader:  # kept in config.json, outside the checksum: reported beside it
            description["grader_calibration"] = {key: grader["calibration"][key]
                                                 for key in ("temperature", "abstain_below")}
        return description


def _lap(clock: float) -> tuple[float, float]:
    now = time.perf_counter()
    return round(now - clock, 3), now
