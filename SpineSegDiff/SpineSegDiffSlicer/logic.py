"""What the Slicer module's Logic does, without Qt: MRML -> files for the worker, worker files -> MRML.

Segmentation never runs in Slicer's process: the module writes the selected volume to a file
(:func:`write_input`), the worker process (``SpineSegDiffLib.apps.worker``, driven by
:class:`~.worker_client.WorkerClient`) segments it, and :func:`load_result_nodes` turns its output
files into nodes. Nothing here imports torch; which dependencies are missing or outdated is
:func:`~.install.missing_or_outdated`'s job.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import SimpleITK as sitk

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.header import ImageHeader, InputLimits, check_header
from SpineSegDiffLib.io import validate_volume
from SpineSegDiffLib.outputs.destination import plain_os_errors

from . import mrml, roles
from .roles import NAME_SUFFIXES, ROLE_ATTRIBUTE  # noqa: F401 (ROLE_ATTRIBUTE: the module and scripts use it here)

if TYPE_CHECKING:
    from SpineSegDiffLib.options import SegmentOptions
    from SpineSegDiffLib.review import Region

INPUT_FILE = "input.nrrd"


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


def volume_node_header(volume_node) -> ImageHeader:
    """What the volume node's image data says about its voxels (dimensions, scalar type, geometry), read without
    touching the voxels."""
    data = None if volume_node is None else volume_node.GetImageData()
    if data is None:
        raise SpineSegDiffError("the selected volume has no voxels", "load a volume first")
    return ImageHeader(tuple(int(n) for n in data.GetDimensions()), tuple(float(s) for s in volume_node.GetSpacing()),
                       mrml.lps_direction(volume_node), data.GetScalarTypeAsString(), int(data.GetScalarSize()),
                       int(data.GetNumberOfScalarComponents()))


def image_for_volume_node(volume_node, limits: InputLimits | None = None) -> sitk.Image:
    """The volume as a SimpleITK image, refused with a clear reason if it cannot be segmented. Its dimensions
    are checked against ``limits`` before its voxels are copied."""
    check_header(volume_node_header(volume_node), volume_node.GetName(), limits)
    image = mrml.image_from_volume_node(volume_node)
    validate_volume(image, volume_node.GetName(), limits)
    return image


def worker_options(options: SegmentOptions) -> dict:
    """The ``options`` of a worker request (the fields of :class:`~SpineSegDiffLib.options.SegmentOptions`)."""
    return asdict(options)


def write_input(volume_node, folder: Path, limits: InputLimits | None = None) -> Path:
    """The volume as ``folder/input.nrrd`` for the worker, refused with a clear reason if it cannot be segmented
    (or is over ``limits``; pass the worker request the same ``limits``). A full or unwritable ``folder`` is one
    message naming it."""
    image = image_for_volume_node(volume_node, limits)
    path = folder / INPUT_FILE
    with plain_os_errors(folder, image.GetNumberOfPixels() * image.GetSizeOfPixelComponent()):
        folder.mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(path), useCompression=True)
    return path


def load_result_nodes(scene, volume_node, files: dict[str, str], closed_surface: bool = True,
                      new_nodes: bool = False) -> ResultNodes:
    """The worker's labelmap and heatmap files as nodes on the input volume's grid (nothing added on failure).

    The nodes of the previous result on the same volume are updated in place unless ``new_nodes``.
    """
    labels = sitk.ReadImage(files["labels"])
    heatmap = sitk.ReadImage(files["uncertainty"])
    reuse = None if new_nodes else previous_result_nodes(scene, volume_node)
    return add_result_nodes(scene, volume_node, labels, heatmap, closed_surface, reuse)


def read_report(files: dict[str, str]) -> dict:
    """The worker's ``_report.json`` (processed slices, timings, levels), or ``{}``."""
    path = files.get("report")
    return json.loads(Path(path).read_text(encoding="utf-8")) if path and Path(path).is_file() else {}


def read_level_labels(files: dict[str, str]) -> sitk.Image | None:
    """The worker's level labelmap (values: the report's ``label_value``), or None if it wrote none."""
    path = files.get("level_labels")
    return sitk.ReadImage(path) if path and Path(path).is_file() else None


def add_result_nodes(scene, volume_node, labels: sitk.Image, uncertainty: sitk.Image,
                     closed_surface: bool = True, reuse: ResultNodes | None = None) -> ResultNodes:
    """Segmentation and heatmap nodes on the input volume's grid: ``reuse``'s nodes updated in place, or new
    ones (then the scene is left unchanged on failure). Both are marked as results of the input volume
    (:func:`~.roles.mark`)."""
    if reuse is not None:
        mrml.replace_segments(reuse.segmentation, labels, closed_surface)
        mrml.heatmap_to_volume_node(scene, uncertainty, reuse.heatmap.GetName(), node=reuse.heatmap)
        return reuse
    name = volume_node.GetName()
    with mrml.removed_on_failure(scene):
        segmentation = mrml.labels_to_segmentation_node(
            scene, labels, volume_node, name + NAME_SUFFIXES["segmentation"], closed_surface=closed_surface)
        heatmap = mrml.heatmap_to_volume_node(scene, uncertainty, name + NAME_SUFFIXES["uncertainty"])
        for node, role in ((segmentation, "segmentation"), (heatmap, "uncertainty")):
            roles.mark(node, role, volume_node)
            mrml.place_like(node, volume_node)
        return ResultNodes(segmentation, heatmap)


def previous_result_nodes(scene, volume_node) -> ResultNodes | None:
    """The segmentation and heatmap of the last result made from ``volume_node``, or None if either is gone."""
    found = {node.GetAttribute(ROLE_ATTRIBUTE): node for node in roles.nodes_with_role(scene, volume_node)}
    if "segmentation" not in found or "uncertainty" not in found:
        return None
    return ResultNodes(found["segmentation"], found["uncertainty"])


def processed_slice_ras(labels_node, slice_index: int, sagittal_axis: int) -> tuple[float, float, float]:
    """RAS centre of the processed sagittal slice ``slice_index`` along voxel axis ``sagittal_axis``."""
    ijk = [(n - 1) / 2 for n in labels_node.GetImageData().GetDimensions()]
    ijk[sagittal_axis] = slice_index
    return mrml.ijk_to_ras(labels_node, ijk)


class ReviewCache:
    """The review regions of the current result, as the worker computed them for every slider level.

    Nothing is computed here (Slicer's GUI thread): the worker's result names a ``review`` file, and after
    edits the module asks the worker again (:func:`write_review_input`). :meth:`regions` only picks a list.
    """

    def __init__(self) -> None:
        self._key: tuple[str, str] | None = None
        self._levels = None
        self._ras: dict = {}

    def invalidate(self) -> None:
        self._key = None

    def load(self, nodes: ResultNodes, path: str | Path | None) -> None:
        """Take the regions of ``nodes`` from the worker's review file (no file: no regions)."""
        from SpineSegDiffLib.review import regions_from_dict

        self.invalidate()
        if not path or not Path(path).is_file():
            return
        self._levels = regions_from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        self._ras = {region: mrml.ijk_to_ras(nodes.heatmap, region.centroid_ijk)
                     for found in self._levels.regions for region in found}
        self._key = (nodes.segmentation.GetID(), nodes.heatmap.GetID())

    def regions(self, nodes: ResultNodes, threshold: float) -> list[tuple[Region, tuple[float, float, float]]]:
        """The most uncertain regions at ``threshold`` with their RAS centres; [] when none were loaded for
        these nodes."""
        if self._key != (nodes.segmentation.GetID(), nodes.heatmap.GetID()):
            return []
        return [(region, self._ras[region]) for region in self._levels.at(threshold)]


def write_review_input(scene, nodes: ResultNodes, folder: Path) -> tuple[Path, Path]:
    """The current segments (after the reader's edits) as a labelmap on the heatmap's grid, and the heatmap,
    written into ``folder`` for the worker's ``review`` request."""
    folder.mkdir(parents=True, exist_ok=True)
    heatmap = mrml.image_from_volume_node(nodes.heatmap)
    labels = sitk.GetImageFromArray(mrml.segmentation_to_labels(scene, nodes.segmentation, nodes.heatmap))
    labels.CopyInformation(heatmap)
    paths = folder / "labels.nrrd", folder / "heatmap.nrrd"
    sitk.WriteImage(labels, str(paths[0]), useCompression=True)
    sitk.WriteImage(heatmap, str(paths[1]), useCompression=True)
    return paths
