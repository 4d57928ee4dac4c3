"""What the Slicer module's Logic does, without Qt: MRML -> core, one core call, core -> MRML.

Three steps, so the GUI can run the middle one in a background thread:

1. :func:`image_for_volume_node` (main thread): the selected volume as a validated SimpleITK image;
2. :func:`run_segmenter` (any thread): ``Segmenter.segment`` on that image;
3. :func:`add_result_nodes` (main thread): the segmentation and heatmap nodes, or nothing on failure.

:func:`segment_volume_node` chains them for batch scripts and tests. Nothing here imports torch at
import time, so :func:`missing_requirements` can run before the dependencies are installed.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import SimpleITK as sitk

from SpineSegDiffLib.errors import Cancelled
from SpineSegDiffLib.io import validate_volume

from . import mrml

if TYPE_CHECKING:
    from SpineSegDiffLib.options import SegmentOptions
    from SpineSegDiffLib.pipeline import SegmentationResult, Segmenter
    from SpineSegDiffLib.review import Region

REQUIREMENTS: dict[str, str] = {
    "torch": "torch>=2.2",
    "monai": "monai==1.6.1",
    "nnunetv2": "nnunetv2==2.8.1",
    "scipy": "scipy",
}
"""Import name -> pip requirement of what the core needs beyond what Slicer ships (torch comes from
the PyTorch extension when it is installed)."""
SEGMENTATION_SUFFIX = " SpineSegDiff"
HEATMAP_SUFFIX = " uncertainty"
ROLE_ATTRIBUTE = "SpineSegDiff.Role"
"""Node attribute marking what a node is (``segmentation`` or ``uncertainty``), e.g. to skip heatmaps as inputs."""


def missing_requirements() -> list[str]:
    """Pip requirements of the packages that cannot be imported here (empty when all are present)."""
    return [spec for name, spec in REQUIREMENTS.items() if importlib.util.find_spec(name) is None]


def make_options(mode: str = "central", preset: str = "standard", device: str = "auto", samples: int = 0,
                 steps: int = 0, seed: int = 0) -> SegmentOptions:
    """:class:`~.options.SegmentOptions` from the module's parameters (0 samples or steps: the preset's value)."""
    from SpineSegDiffLib.options import SegmentOptions

    return SegmentOptions(mode=mode, preset=preset, device=device, samples=samples or None, steps=steps or None,
                          seed=seed)


class SegmenterCache:
    """Keeps the loaded models between runs (loading takes seconds); reloads when the folder or device changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._segmenter: Segmenter | None = None

    def get(self, models_dir: Path | None, device: str) -> Segmenter:
        """The segmenter for these models on this device (thread-safe; loads on first use)."""
        from SpineSegDiffLib.pipeline import Segmenter

        key = (str(models_dir) if models_dir else None, device)
        with self._lock:
            if self._segmenter is None or self._key != key:
                self._segmenter, self._key = None, None
                self._segmenter, self._key = Segmenter(models_dir, device), key
            return self._segmenter


@dataclass(frozen=True)
class ResultNodes:
    """The nodes one run adds to the scene."""

    segmentation: Any
    heatmap: Any


def image_for_volume_node(volume_node) -> sitk.Image:
    """The volume as a SimpleITK image, refused with a clear reason if it cannot be segmented."""
    image = mrml.image_from_volume_node(volume_node)
    validate_volume(image, volume_node.GetName())
    return image


def run_segmenter(segmenter: Segmenter, image: sitk.Image, options: SegmentOptions,
                  progress: Callable[[str, float], None] | None = None,
                  cpu_segmenter: Callable[[], Segmenter] | None = None) -> SegmentationResult:
    """The one core call; touches no MRML, so it may run in a background thread.

    Out of GPU memory is a clear error, or, with ``device="auto"`` and ``cpu_segmenter`` given, a rerun
    on the CPU (the batch engine's rule, :func:`~.batch.on_gpu_or_cpu`).
    """
    from SpineSegDiffLib.batch import on_gpu_or_cpu

    def run(chosen: Segmenter) -> SegmentationResult:
        return chosen.segment(image, options, progress)

    fallback = cpu_segmenter or (lambda: segmenter)
    requested = options.device if cpu_segmenter is not None else "explicit"
    result, _ = on_gpu_or_cpu(run, segmenter, segmenter.device, requested, fallback, "this volume")
    return result


def add_result_nodes(scene, volume_node, result: SegmentationResult, closed_surface: bool = True) -> ResultNodes:
    """Segmentation and heatmap nodes on the input volume's grid; the scene is left unchanged on failure."""
    name = volume_node.GetName()
    with mrml.removed_on_failure(scene):
        segmentation = mrml.labels_to_segmentation_node(
            scene, result.labels, volume_node, name + SEGMENTATION_SUFFIX, closed_surface=closed_surface)
        heatmap = mrml.heatmap_to_volume_node(scene, result.uncertainty, name + HEATMAP_SUFFIX)
        for node, role in ((segmentation, "segmentation"), (heatmap, "uncertainty")):
            node.SetAttribute(ROLE_ATTRIBUTE, role)
            mrml.place_like(node, volume_node)
        return ResultNodes(segmentation, heatmap)


def segment_volume_node(scene, volume_node, segmenter: Segmenter, options: SegmentOptions,
                        progress: Callable[[str, float], None] | None = None,
                        closed_surface: bool = True) -> tuple[ResultNodes, SegmentationResult]:
    """All three steps in the calling thread (batch scripts, tests)."""
    image = image_for_volume_node(volume_node)
    result = run_segmenter(segmenter, image, options, progress)
    return add_result_nodes(scene, volume_node, result, closed_surface), result


def processed_slice_ras(volume_node, result: SegmentationResult) -> tuple[float, float, float]:
    """RAS centre of the (middle) processed sagittal slice, to point the slice views at it."""
    ijk = [(n - 1) / 2 for n in result.labels.GetSize()]
    indices = result.slice_indices
    ijk[result.geometry.sagittal_axis] = indices[len(indices) // 2]
    return mrml.ijk_to_ras(volume_node, ijk)


def review_regions(scene, nodes: ResultNodes, threshold: float = 0.5,
                   max_regions: int = 20) -> list[tuple[Region, tuple[float, float, float]]]:
    """The most uncertain regions with their RAS centres, read from the nodes (so user edits count).

    See :func:`~.review.uncertain_regions`; the labels are the current segments on the heatmap's grid.
    """
    from SpineSegDiffLib.review import uncertain_regions

    heatmap = mrml.array_from_volume_node(nodes.heatmap)
    labels = mrml.segmentation_to_labels(scene, nodes.segmentation, nodes.heatmap)
    regions = uncertain_regions(heatmap, labels, nodes.heatmap.GetSpacing(), threshold, max_regions)
    return [(region, mrml.ijk_to_ras(nodes.heatmap, region.centroid_ijk)) for region in regions]


def save_result_nodes(nodes: ResultNodes, out_dir: Path, stem: str) -> dict[str, Path]:
    """Write ``STEM.seg.nrrd`` and ``STEM_uncertainty.nrrd`` into ``out_dir``; returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"segmentation": out_dir / f"{stem}.seg.nrrd", "uncertainty": out_dir / f"{stem}_uncertainty.nrrd"}
    mrml.save_node(nodes.segmentation, paths["segmentation"])
    mrml.save_node(nodes.heatmap, paths["uncertainty"])
    return paths


class BackgroundJob:
    """Runs ``work(progress)`` in a daemon thread; the GUI polls :attr:`done`, :attr:`stage`, :attr:`fraction`.

    :meth:`cancel` makes the next progress report raise :class:`~.errors.Cancelled`, and a result
    that arrives after a cancel is discarded. After :attr:`done`, exactly one of :attr:`result` and
    :attr:`error` is set.
    """

    def __init__(self, work: Callable[[Callable[[str, float], None]], Any]) -> None:
        self._work = work
        self._cancel = threading.Event()
        self._finished = threading.Event()
        self._thread = threading.Thread(target=self._run, name="SpineSegDiff", daemon=True)
        self.stage = "starting"
        self.fraction = 0.0
        self.result: Any = None
        self.error: BaseException | None = None

    def start(self) -> BackgroundJob:
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job ends (for scripts and tests); True when it has."""
        return self._finished.wait(timeout)

    def progress(self, stage: str, fraction: float) -> None:
        """The core's progress callback (called from the worker thread)."""
        if self._cancel.is_set():
            raise Cancelled()
        self.stage, self.fraction = stage, min(max(float(fraction), 0.0), 1.0)

    def _run(self) -> None:
        try:
            result = self._work(self.progress)
            if self._cancel.is_set():
                raise Cancelled()
            self.result = result
        except BaseException as error:  # reported to the GUI thread, never lost
            self.error = error
        finally:
            self._finished.set()
