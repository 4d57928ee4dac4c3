"""MRML <-> core types (module side: imports ``slicer`` and ``vtk``; the core never does).

Slicer stores volumes with an ``IJKToRAS`` matrix (RAS physical space); SimpleITK uses LPS. Going
from one to the other flips the sign of the first two rows of the direction matrix and of the first
two origin coordinates. Voxel arrays are shared in the same NumPy order ``(k, j, i)`` on both sides.

Every function works on an explicit ``scene`` (``slicer.mrmlScene`` inside Slicer, a plain
``vtkMRMLScene`` headless), so the same code runs in the GUI, in batch scripts and in tests.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicer
import vtk
from vtk.util import numpy_support

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.labels import STRUCTURES

RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])
"""Multiplying a direction matrix or a point by this switches between LPS and RAS (it is its own inverse)."""
HEATMAP_COLOR_NAME = "Inferno"
"""Slicer's perceptual colour table used for the heatmap (created from :data:`INFERNO_ANCHORS` if absent)."""
INFERNO_ANCHORS = (
    (0.001, 0.000, 0.014), (0.129, 0.047, 0.291), (0.342, 0.062, 0.429), (0.541, 0.135, 0.415),
    (0.736, 0.216, 0.330), (0.894, 0.353, 0.194), (0.978, 0.558, 0.035), (0.975, 0.798, 0.206),
    (0.988, 0.998, 0.645),
)
"""The "inferno" colour map sampled at 9 evenly spaced points (perceptually uniform, colour-blind safe)."""
HEATMAP_VISIBLE_FROM = 0.05
"""Heatmap values below this are transparent, so the image shows through where the model is certain."""


def _require_scene(scene) -> None:
    if scene is None:
        raise SpineSegDiffError("no MRML scene", "run inside Slicer or pass a vtkMRMLScene")


def segmentations_logic(scene):
    """The Segmentations module logic for ``scene``; segmentation nodes need one attached to their scene.

    Inside the Slicer application that is the module's own logic; headless, one is created once per scene.
    """
    _require_scene(scene)
    if hasattr(slicer, "app") and getattr(slicer, "mrmlScene", None) is scene:
        return slicer.modules.segmentations.logic()
    logic = getattr(scene, "_spinesegdiff_segmentations_logic", None)
    if logic is None:
        logic = slicer.vtkSlicerSegmentationsModuleLogic()
        logic.SetMRMLScene(scene)
        scene._spinesegdiff_segmentations_logic = logic
    return logic


def ijk_to_ras_matrix(image: sitk.Image) -> vtk.vtkMatrix4x4:
    """The ``IJKToRAS`` matrix of a SimpleITK image (LPS geometry -> RAS)."""
    direction = RAS_FROM_LPS @ np.array(image.GetDirection()).reshape(3, 3)
    matrix = np.eye(4)
    matrix[:3, :3] = direction * np.array(image.GetSpacing())[np.newaxis, :]
    matrix[:3, 3] = RAS_FROM_LPS @ np.array(image.GetOrigin())
    return slicer.util.vtkMatrixFromArray(matrix)


def image_from_volume_node(node) -> sitk.Image:
    """A SimpleITK copy of a scalar volume node with its full geometry (spacing, origin, direction in LPS).

    The geometry is the node's own ``IJKToRAS``; a parent transform is not applied (results are put
    back on the same grid, under the same transform).
    """
    if node is None or node.GetImageData() is None:
        raise SpineSegDiffError("the selected volume has no voxels", "load a volume first")
    if node.GetImageData().GetNumberOfScalarComponents() != 1:
        raise SpineSegDiffError(f"{node.GetName()} is a colour or vector volume", "select a grey-scale MRI volume")
    image = sitk.GetImageFromArray(array_from_volume_node(node))
    image.SetSpacing(tuple(float(s) for s in node.GetSpacing()))
    image.SetOrigin(tuple((RAS_FROM_LPS @ np.array(node.GetOrigin())).tolist()))
    image.SetDirection(lps_direction(node))
    return image


def lps_direction(node) -> tuple[float, ...]:
    """The node's direction matrix in LPS (SimpleITK's convention), row-major."""
    directions = vtk.vtkMatrix4x4()
    node.GetIJKToRASDirectionMatrix(directions)
    ras_direction = slicer.util.arrayFromVTKMatrix(directions)[:3, :3]
    return tuple((RAS_FROM_LPS @ ras_direction).ravel().tolist())


def array_from_volume_node(node) -> np.ndarray:
    """A copy of the node's voxels in NumPy order ``(k, j, i)``."""
    return np.array(slicer.util.arrayFromVolume(node), copy=True)


def volume_node_from_image(scene, image: sitk.Image, name: str, class_name: str = "vtkMRMLScalarVolumeNode"):
    """A new volume node in ``scene`` holding a copy of ``image`` with its geometry and default display."""
    _require_scene(scene)
    node = scene.AddNewNodeByClass(class_name, scene.GenerateUniqueName(name))
    update_volume_node(node, image)
    node.CreateDefaultDisplayNodes()
    return node


def update_volume_node(node, image: sitk.Image) -> None:
    """Replace the voxels and geometry of an existing volume node by those of ``image`` (same node ID)."""
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    node.SetIJKToRASMatrix(ijk_to_ras_matrix(image))


def _oriented_labelmap(labels: sitk.Image):
    """A ``vtkOrientedImageData`` (uint8) with the voxels and geometry of ``labels``."""
    array = sitk.GetArrayFromImage(sitk.Cast(labels, sitk.sitkUInt8))
    oriented = slicer.vtkOrientedImageData()
    oriented.SetDimensions(*labels.GetSize())
    oriented.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    numpy_support.vtk_to_numpy(oriented.GetPointData().GetScalars())[:] = array.ravel()
    oriented.SetImageToWorldMatrix(ijk_to_ras_matrix(labels))
    return oriented


def labels_to_segmentation_node(scene, labels: sitk.Image, reference_volume_node, name: str,
                                closed_surface: bool = True):
    """A segmentation node with one segment per structure of the label table, sharing one labelmap layer.

    Segment IDs are the structures' keys; names, colours and terminology come from
    :data:`~.labels.STRUCTURES`. ``closed_surface`` also builds the 3D surfaces for display.
    """
    segmentations_logic(scene)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", scene.GenerateUniqueName(name))
    node.CreateDefaultDisplayNodes()
    if reference_volume_node is not None:
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
        node.SetNodeReferenceID(node.GetReferenceImageGeometryReferenceRole(), reference_volume_node.GetID())
    replace_segments(node, labels, closed_surface)
    return node


def replace_segments(node, labels: sitk.Image, closed_surface: bool = True) -> None:
    """Make the node's segments those of ``labels`` (one per structure, IDs = keys); other segments are removed."""
    replace_labelled_segments(node, labels, [(s.value, s.key, s.name, s.color, s.terminology) for s in STRUCTURES])
    if closed_surface:
        node.CreateClosedSurfaceRepresentation()
    node.GetDisplayNode().SetVisibility3D(closed_surface)


def replace_labelled_segments(node, labels: sitk.Image, segments) -> None:
    """Make the node's segments those of ``labels``, one per ``(label value, segment ID, name, colour,
    terminology entry)`` of ``segments``, sharing one labelmap layer; other segments are removed."""
    segmentation = node.GetSegmentation()
    segmentation.RemoveAllSegments()
    representation = slicer.vtkSegmentationConverter.GetBinaryLabelmapRepresentationName()
    segmentation.SetSourceRepresentationName(representation)
    labelmap = _oriented_labelmap(labels)
    for value, segment_id, name, color, terminology in segments:
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.SetColor(*color)
        segment.SetLabelValue(int(value))
        segment.SetTag("TerminologyEntry", terminology)
        segment.AddRepresentation(representation, labelmap)
        segmentation.AddSegment(segment, segment_id)


def subject_hierarchy(scene):
    """The scene's subject hierarchy node (Slicer keeps exactly one per scene)."""
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)


def file_under(hierarchy, node, folder: int) -> None:
    """Put ``node`` under the subject hierarchy ``folder`` (its item is made if the scene has none yet, as in
    a bare scene without Slicer's subject hierarchy plugins)."""
    item = hierarchy.GetItemByDataNode(node)
    if item:
        hierarchy.SetItemParent(item, folder)
    else:
        hierarchy.CreateItem(folder, node)


def segmentation_to_labels(scene, segmentation_node, reference_volume_node) -> np.ndarray:
    """The segments as one labelmap array ``(k, j, i)`` on the reference volume's grid, values from the table.

    Segments are matched to label values by segment ID (the structure's key), never by name, so a renamed
    segment keeps its label; structures whose segment was deleted are simply absent.
    """
    logic = segmentations_logic(scene)
    present = [s for s in STRUCTURES if segmentation_node.GetSegmentation().GetSegment(s.key) is not None]
    if not present:
        return np.zeros(array_from_volume_node(reference_volume_node).shape, np.uint8)
    ids = vtk.vtkStringArray()
    for structure in present:
        ids.InsertNextValue(structure.key)
    with temporary_nodes(scene):
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__spinesegdiff_export__")
        # Without a colour table the n-th segment of ``ids`` is exported as value n (1-based).
        if not logic.ExportSegmentsToLabelmapNode(segmentation_node, ids, labelmap, reference_volume_node,
                                                  slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY):
            raise SpineSegDiffError("the segments could not be exported to a labelmap")
        exported = np.array(slicer.util.arrayFromVolume(labelmap), dtype=np.int64, copy=True)
    values = np.array([0] + [s.value for s in present], dtype=np.uint8)
    return values[exported]


def heatmap_color_node(scene):
    """Slicer's "Inferno" colour table, or an equivalent one added to ``scene`` where it is missing."""
    existing = scene.GetFirstNodeByName(HEATMAP_COLOR_NAME)
    if existing is not None and existing.IsA("vtkMRMLColorNode"):
        return existing
    table = scene.AddNewNodeByClass("vtkMRMLColorTableNode", HEATMAP_COLOR_NAME)
    table.SetTypeToUser()
    table.SetNumberOfColors(256)
    anchors = np.array(INFERNO_ANCHORS)
    positions = np.linspace(0.0, 1.0, len(anchors))
    for index, t in enumerate(np.linspace(0.0, 1.0, 256)):
        rgb = [float(np.interp(t, positions, anchors[:, c])) for c in range(3)]
        table.SetColor(index, f"{t:.3f}", *rgb, 1.0)
    return table


def heatmap_to_volume_node(scene, heatmap: sitk.Image, name: str, node=None):
    """A scalar volume of the uncertainty heatmap (0..1) shown with the "Inferno" colour map.

    The display window is fixed to 0..1 (so maps from different runs compare) and values below
    :data:`HEATMAP_VISIBLE_FROM` are transparent in slice views. An existing ``node`` is updated in place.
    """
    heatmap = sitk.Cast(heatmap, sitk.sitkFloat32)
    if node is None:
        node = volume_node_from_image(scene, heatmap, name)
    else:
        update_volume_node(node, heatmap)
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(heatmap_color_node(scene).GetID())
    display.AutoWindowLevelOff()
    display.SetWindowLevelMinMax(0.0, 1.0)
    display.AutoThresholdOff()
    display.SetThreshold(HEATMAP_VISIBLE_FROM, 1.0e6)
    display.SetApplyThreshold(True)
    return node


def save_node(node, path: Path) -> None:
    """Write a segmentation (``.seg.nrrd``) or volume node (``.nrrd``, ``.nii.gz``...) with compression.

    The file is written beside ``path`` under a temporary name and renamed into place, so a failed
    write never leaves a partial file; the node's own storage node (if any) is not changed.
    """
    storage = (slicer.vtkMRMLSegmentationStorageNode() if node.IsA("vtkMRMLSegmentationNode")
               else slicer.vtkMRMLVolumeArchetypeStorageNode())
    temporary = path.with_name(f".partial.{path.name}")  # same extension: it selects the file format
    storage.SetFileName(str(temporary))
    storage.SetUseCompression(True)
    try:
        if not storage.WriteData(node):
            raise SpineSegDiffError(f"{path} could not be written", "check that the folder exists and is writable")
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def place_like(node, reference_volume_node) -> None:
    """Put ``node`` under the same parent transform as the reference volume (results share its grid)."""
    transform = reference_volume_node.GetParentTransformNode() if reference_volume_node is not None else None
    node.SetAndObserveTransformNodeID(transform.GetID() if transform is not None else None)


def ijk_to_ras(volume_node, ijk: Sequence[float]) -> tuple[float, float, float]:
    """RAS coordinates (world, parent transforms applied) of a continuous voxel index of ``volume_node``."""
    matrix = vtk.vtkMatrix4x4()
    volume_node.GetIJKToRASMatrix(matrix)
    ras = np.array(matrix.MultiplyPoint([*map(float, ijk), 1.0])[:3])
    transform = volume_node.GetParentTransformNode()
    if transform is not None:
        to_world = vtk.vtkGeneralTransform()
        transform.GetTransformToWorld(to_world)
        ras = np.array(to_world.TransformPoint(ras.tolist()))
    return tuple(float(v) for v in ras)


@contextlib.contextmanager
def removed_on_failure(scene) -> Iterator[None]:
    """Remove every node added to ``scene`` inside the block if the block raises (then re-raise)."""
    before = _node_ids(scene)
    try:
        yield
    except BaseException:
        _remove_nodes_not_in(scene, before)
        raise


@contextlib.contextmanager
def temporary_nodes(scene) -> Iterator[None]:
    """Remove every node added to ``scene`` inside the block, whatever happens."""
    before = _node_ids(scene)
    try:
        yield
    finally:
        _remove_nodes_not_in(scene, before)


def _node_ids(scene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def _remove_nodes_not_in(scene, keep: set[str]) -> None:
    added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]
    for node in reversed(added):
        if node is not None and node.GetID() not in keep and node.GetScene() is scene:
            scene.RemoveNode(node)
