"""The MRML bridge and the Slicer Logic's path under real compiled MRML (slicer-core, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
vtk = pytest.importorskip("vtk")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (compiled MRML) is not installed", allow_module_level=True)

from conftest import oblique_direction, synthetic_spine  # noqa: E402

from SpineSegDiffLib.errors import Cancelled, SpineSegDiffError  # noqa: E402
from SpineSegDiffLib.labels import STRUCTURES  # noqa: E402
from SpineSegDiffSlicer import logic, mrml, roles  # noqa: E402

TINY_OPTIONS = {"preset": "fast", "samples": 2, "steps": 2, "fused_steps": 2}


def assert_same_geometry(a: sitk.Image, b: sitk.Image, tolerance: float = 1e-6) -> None:
    assert a.GetSize() == b.GetSize()
    np.testing.assert_allclose(a.GetSpacing(), b.GetSpacing(), atol=tolerance)
    np.testing.assert_allclose(a.GetOrigin(), b.GetOrigin(), atol=tolerance)
    np.testing.assert_allclose(a.GetDirection(), b.GetDirection(), atol=tolerance)


def ras_of_index(node, ijk) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return np.array(matrix.MultiplyPoint([*map(float, ijk), 1.0])[:3])


def node_geometry(node) -> tuple:
    matrix = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(matrix)
    return node.GetImageData().GetDimensions(), slicer.util.arrayFromVTKMatrix(matrix)


def tag(segment, name: str) -> str:
    value = vtk.reference("")
    assert segment.GetTag(name, value)
    return str(value)


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


# --- geometry round trips ---------------------------------------------------------------------------------------


def test_volume_read_by_slicer_has_the_simpleitk_geometry_and_voxels(scene, real_volume_path):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "spider")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(real_volume_path))
    assert storage.ReadData(node)
    expected = sitk.ReadImage(str(real_volume_path))
    image = mrml.image_from_volume_node(node)
    assert_same_geometry(image, expected, tolerance=1e-4)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(image), sitk.GetArrayViewFromImage(expected))


@pytest.mark.parametrize("source", ["real", "oblique"])
def test_volume_node_round_trip_keeps_geometry_voxels_and_type(scene, source, request):
    if source == "real":
        image = sitk.ReadImage(str(request.getfixturevalue("real_volume_path")))
    else:
        image = synthetic_spine(size=(9, 70, 64), spacing=(3.3, 0.7, 0.8), direction=oblique_direction(17.0))
    node = mrml.volume_node_from_image(scene, image, "volume")
    back = mrml.image_from_volume_node(node)
    assert_same_geometry(back, image)
    assert back.GetPixelID() == image.GetPixelID()
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(image))
    corner = [n - 1 for n in image.GetSize()]
    lps = np.array(image.TransformIndexToPhysicalPoint(corner))
    np.testing.assert_allclose(ras_of_index(node, corner), lps * [-1, -1, 1], atol=1e-6)


def test_colour_volume_is_refused(scene):
    node = scene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    slicer.util.updateVolumeFromArray(node, np.zeros((4, 40, 40, 3), np.uint8))
    with pytest.raises(SpineSegDiffError, match="colour or vector"):
        mrml.image_from_volume_node(node)


# --- segmentation and heatmap nodes -----------------------------------------------------------------------------


def synthetic_labels(image: sitk.Image) -> sitk.Image:
    array = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    array[2:5, 10:30, 10:20] = 1
    array[2:5, 40:50, 12:22] = 2
    array[6, 55:65, 30:40] = 3
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    return labels


def assert_segments_match_table(segmentation_node) -> None:
    segmentation = segmentation_node.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(STRUCTURES)
    for structure in STRUCTURES:
        segment = segmentation.GetSegment(structure.key)
        assert segment is not None, structure.key
        assert segment.GetName() == structure.name
        np.testing.assert_allclose(segment.GetColor(), structure.color, atol=1e-6)
        assert segment.GetLabelValue() == structure.value
        assert tag(segment, "TerminologyEntry") == structure.terminology


def test_labels_become_named_coloured_segments_with_the_same_voxels(scene):
    image = synthetic_spine(direction=oblique_direction())
    volume = mrml.volume_node_from_image(scene, image, "volume")
    labels = synthetic_labels(image)
    node = mrml.labels_to_segmentation_node(scene, labels, volume, "result", closed_surface=True)
    assert_segments_match_table(node)
    assert node.GetSegmentation().ContainsRepresentation("Closed surface")
    before = scene.GetNumberOfNodes()
    exported = mrml.segmentation_to_labels(scene, node, volume)
    assert scene.GetNumberOfNodes() == before  # the export's temporary nodes are gone
    np.testing.assert_array_equal(exported, sitk.GetArrayViewFromImage(labels))


def test_heatmap_node_is_on_the_input_grid_with_a_perceptual_colour_map(scene):
    image = synthetic_spine(direction=oblique_direction())
    volume = mrml.volume_node_from_image(scene, image, "volume")
    heatmap = sitk.Cast(sitk.RescaleIntensity(image, 0.0, 1.0), sitk.sitkFloat32)
    node = mrml.heatmap_to_volume_node(scene, heatmap, "uncertainty")
    assert node.IsA("vtkMRMLScalarVolumeNode")
    dims, matrix = node_geometry(node)
    expected_dims, expected_matrix = node_geometry(volume)
    assert dims == expected_dims
    np.testing.assert_allclose(matrix, expected_matrix, atol=1e-9)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(node), sitk.GetArrayViewFromImage(heatmap))
    display = node.GetDisplayNode()
    assert display.GetColorNode().GetName() == mrml.HEATMAP_COLOR_NAME
    assert (display.GetWindowLevelMin(), display.GetWindowLevelMax()) == (0.0, 1.0)
    assert display.GetApplyThreshold()
    assert mrml.heatmap_color_node(scene) is display.GetColorNode()  # reused, not duplicated


def test_ijk_to_ras_applies_the_parent_transform(scene):
    image = synthetic_spine()
    volume = mrml.volume_node_from_image(scene, image, "volume")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    matrix = vtk.vtkMatrix4x4()
    matrix.SetElement(0, 3, 10.0)
    transform.SetMatrixTransformToParent(matrix)
    volume.SetAndObserveTransformNodeID(transform.GetID())
    np.testing.assert_allclose(mrml.ijk_to_ras(volume, (0, 0, 0)), ras_of_index(volume, (0, 0, 0)) + [10, 0, 0])


# --- the Logic's path: MRML -> Segmenter.segment -> MRML ------------------------------------------------------


@pytest.fixture(scope="module")
def segmenter(tiny_models):
    from SpineSegDiffLib.inference.pipeline import Segmenter

    return Segmenter(models_dir=tiny_models, device="cpu")


@pytest.fixture(scope="module")
def options():
    from SpineSegDiffLib.options import SegmentOptions

    return SegmentOptions(**TINY_OPTIONS)


def segment_volume_node(scene, volume, segmenter, options, progress=None):
    """What the Slicer batch script does per volume: node -> core -> nodes (the module uses the worker)."""
    result = segmenter.segment(logic.image_for_volume_node(volume), options, progress)
    return logic.add_result_nodes(scene, volume, result.labels, result.uncertainty), result


@pytest.fixture(scope="module")
def logic_run(segmenter, options):
    scene = slicer.vtkMRMLScene()
    volume = mrml.volume_node_from_image(scene, synthetic_spine(direction=oblique_direction()), "case 1")
    before = scene.GetNumberOfNodes()
    nodes, result = segment_volume_node(scene, volume, segmenter, options)
    return scene, volume, nodes, result, before


def test_logic_path_adds_one_segmentation_and_one_heatmap(logic_run):
    scene, volume, nodes, _result, before = logic_run
    assert nodes.segmentation.GetName() == "case 1" + roles.NAME_SUFFIXES["segmentation"]
    assert nodes.heatmap.GetName() == "case 1" + roles.NAME_SUFFIXES["uncertainty"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 2
    assert scene.GetNumberOfNodes() > before
    assert nodes.segmentation.GetNodeReference(
        nodes.segmentation.GetReferenceImageGeometryReferenceRole()) is volume


def test_logic_path_segments_match_the_core_labels_on_the_input_grid(logic_run):
    scene, volume, nodes, result, _ = logic_run
    assert_segments_match_table(nodes.segmentation)
    core_labels = sitk.GetArrayViewFromImage(result.labels)
    assert core_labels.shape == slicer.util.arrayFromVolume(volume).shape
    np.testing.assert_array_equal(mrml.segmentation_to_labels(scene, nodes.segmentation, volume), core_labels)


def test_logic_path_heatmap_is_the_core_heatmap_on_the_input_grid(logic_run):
    _scene, volume, nodes, result, _ = logic_run
    dims, matrix = node_geometry(nodes.heatmap)
    expected_dims, expected_matrix = node_geometry(volume)
    assert dims == expected_dims
    np.testing.assert_allclose(matrix, expected_matrix, atol=1e-9)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(nodes.heatmap),
                               sitk.GetArrayViewFromImage(result.uncertainty))


def test_review_regions_come_from_the_nodes_with_their_ras_centres(logic_run, tmp_path):
    """The worker's review of the nodes (as after Refresh), loaded with RAS centres on the input grid."""
    from SpineSegDiffLib.apps.worker import REVIEW_REGIONS, write_review

    scene, volume, nodes, result, _ = logic_run
    cache = logic.ReviewCache()
    cache.load(nodes, write_review(*logic.write_review_input(scene, nodes, tmp_path), tmp_path / "review.json"))
    regions = cache.regions(nodes, threshold=0.1)
    assert 1 <= len(regions) <= REVIEW_REGIONS
    scores = [region.score for region, _ in regions]
    assert scores == sorted(scores, reverse=True)
    heatmap = sitk.GetArrayViewFromImage(result.uncertainty)
    for region, ras in regions:
        i, j, k = (int(round(c)) for c in region.centroid_ijk)
        assert 0 <= k < heatmap.shape[0] and 0 <= j < heatmap.shape[1] and 0 <= i < heatmap.shape[2]
        np.testing.assert_allclose(ras, ras_of_index(volume, region.centroid_ijk), atol=1e-6)
        assert region.unit == "mm2"  # central mode: one processed slice


def test_processed_slice_ras_lies_on_the_processed_slice(logic_run):
    _scene, _volume, nodes, result, _ = logic_run
    ras = logic.processed_slice_ras(nodes.heatmap, result.slice_indices[0], result.geometry.sagittal_axis)
    lps = [-ras[0], -ras[1], ras[2]]
    index = result.labels.TransformPhysicalPointToContinuousIndex(lps)
    assert index[result.geometry.sagittal_axis] == pytest.approx(result.slice_indices[0], abs=1e-6)
    assert np.any(sitk.GetArrayViewFromImage(result.uncertainty) > 0)


# --- failures leave the scene as it was -------------------------------------------------------------------------


def test_cancel_from_the_progress_callback_leaves_the_scene_unchanged(segmenter, options, scene):
    volume = mrml.volume_node_from_image(scene, synthetic_spine(), "volume")
    before = scene.GetNumberOfNodes()

    def cancel(stage: str, fraction: float) -> None:
        raise Cancelled()

    with pytest.raises(Cancelled):
        segment_volume_node(scene, volume, segmenter, options, progress=cancel)
    assert scene.GetNumberOfNodes() == before


def test_constant_volume_is_refused_and_leaves_the_scene_unchanged(segmenter, options, scene):
    constant = sitk.Image([16, 64, 64], sitk.sitkFloat32) + 7.0
    volume = mrml.volume_node_from_image(scene, constant, "blank")
    before = scene.GetNumberOfNodes()
    with pytest.raises(SpineSegDiffError, match="constant"):
        segment_volume_node(scene, volume, segmenter, options)
    assert scene.GetNumberOfNodes() == before


def test_failure_while_adding_results_removes_the_nodes_already_made(logic_run, scene, monkeypatch):
    _scene, _volume, _nodes, result, _ = logic_run
    volume = mrml.volume_node_from_image(scene, mrml.image_from_volume_node(_volume), "volume")
    before = scene.GetNumberOfNodes()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mrml, "heatmap_to_volume_node", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        logic.add_result_nodes(scene, volume, result.labels, result.uncertainty)
    assert scene.GetNumberOfNodes() == before
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 0


def test_make_options_maps_zero_to_the_preset_default():
    options = logic.make_options(mode="slices", preset="fast", device="cpu", samples=0, steps=3, seed=4)
    chosen = (options.mode, options.preset, options.samples, options.steps, options.seed)
    assert chosen == ("slices", "fast", None, 3, 4)
    with pytest.raises(SpineSegDiffError, match="unknown mode"):
        logic.make_options(mode="volumetric")


def test_labels_survive_a_deleted_segment(scene):
    image = synthetic_spine()
    volume = mrml.volume_node_from_image(scene, image, "volume")
    labels = synthetic_labels(image)
    node = mrml.labels_to_segmentation_node(scene, labels, volume, "result", closed_surface=False)
    node.GetSegmentation().RemoveSegment("VB")
    expected = sitk.GetArrayFromImage(labels)
    expected[expected == 2] = 0
    np.testing.assert_array_equal(mrml.segmentation_to_labels(scene, node, volume), expected)
    for key in ("SC", "IVD"):
        node.GetSegmentation().RemoveSegment(key)
    assert not mrml.segmentation_to_labels(scene, node, volume).any()
