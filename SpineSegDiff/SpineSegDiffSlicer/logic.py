"""What the Slicer module's Logic does, without Qt: MRML -> files for the worker, worker files -> MRML.

Segmentation never runs in Slicer's process: the module writes the selected volume to a file
(:func:`write_input`), the worker process (``SpineSegDiffLib.worker``, driven by
:class:`~.worker_client.WorkerClient`) segments it, and :func:`load_result_nodes` turns its output
files into nodes. Nothing here imports torch, so :func:`missing_requirements` runs before the
dependencies are installed.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import SimpleITK as sitk

from SpineSegDiffLib.io import validate_volume

from . import mrml

if TYPE_CHECKING:
    from SpineSegDiffLib.options import SegmentOptions
    from SpineSegDiffLib.review import Region

INPUT_FILE = "input.nrrd"
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


def worker_options(options: SegmentOptions) -> dict:
    """The ``options`` of a worker request (the fields of :class:`~SpineSegDiffLib.options.SegmentOptions`)."""
    return asdict(options)


def write_input(volume_node, folder: Path) -> Path:
    """The volume as ``folder/input.nrrd`` for the worker, refused with a clear reason if it cannot be segmented."""
    image = image_for_volume_node(volume_node)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / INPUT_FILE
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def load_result_nodes(scene, volume_node, files: dict[str, str], closed_surface: bool = True) -> ResultNodes:
    """The worker's labelmap and heatmap files as nodes on the input volume's grid (nothing added on failure)."""
    labels = sitk.ReadImage(files["labels"])
    heatmap = sitk.ReadImage(files["uncertainty"])
    return add_result_nodes(scene, volume_node, labels, heatmap, closed_surface)


def read_report(files: dict[str, str]) -> dict:
    """The worker's ``_report.json`` (processed slices, timings, levels), or ``{}``."""
    path = files.get("report")
    return json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}


def add_result_nodes(scene, volume_node, labels: sitk.Image, uncertainty: sitk.Image,
                     closed_surface: bool = True) -> ResultNodes:
    """Segmentation and heatmap nodes on the input volume's grid; the scene is left unchanged on failure."""
    name = volume_node.GetName()
    with mrml.removed_on_failure(scene):
        segmentation = mrml.labels_to_segmentation_node(
            scene, labels, volume_node, name + SEGMENTATION_SUFFIX, closed_surface=closed_surface)
        heatmap = mrml.heatmap_to_volume_node(scene, uncertainty, name + HEATMAP_SUFFIX)
        for node, role in ((segmentation, "segmentation"), (heatmap, "uncertainty")):
            node.SetAttribute(ROLE_ATTRIBUTE, role)
            mrml.place_like(node, volume_node)
        return ResultNodes(segmentation, heatmap)


def processed_slice_ras(labels_node, slice_index: int, sagittal_axis: int) -> tuple[float, float, float]:
    """RAS centre of the processed sagittal slice ``slice_index`` along voxel axis ``sagittal_axis``."""
    ijk = [(n - 1) / 2 for n in labels_node.GetImageData().GetDimensions()]
    ijk[sagittal_axis] = slice_index
    return mrml.ijk_to_ras(labels_node, ijk)


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
