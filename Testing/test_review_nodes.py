"""Review list and result nodes under real compiled MRML (slicer-core): matched by segment ID, computed once per
result, and the same output nodes updated by a second run on the same volume."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (compiled MRML) is not installed", allow_module_level=True)

from conftest import synthetic_spine  # noqa: E402

from SpineSegDiffLib import review  # noqa: E402
from SpineSegDiffLib.apps.worker import write_review  # noqa: E402
from SpineSegDiffSlicer import logic, mrml  # noqa: E402


def result_images(image: sitk.Image, shift: int = 0) -> tuple[sitk.Image, sitk.Image]:
    """Labels with one structure each, and a heatmap with a doubtful patch on the vertebra (value 2)."""
    labels = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    labels[2:5, 10:30, 10:20] = 1
    labels[2:5, 40 + shift:50 + shift, 12:22] = 2
    labels[6, 55:65, 30:40] = 3
    heatmap = np.zeros(labels.shape, np.float32)
    heatmap[2:5, 40 + shift:46 + shift, 12:22] = 0.8  # doubtful part of the vertebra
    heatmap[6, 55:57, 30:32] = 0.3  # faint spot on the disc
    return tuple(_like(array, image) for array in (labels, heatmap))


def _like(array: np.ndarray, image: sitk.Image) -> sitk.Image:
    result = sitk.GetImageFromArray(array)
    result.CopyInformation(image)
    return result


def write_worker_files(folder, labels: sitk.Image, heatmap: sitk.Image) -> dict[str, str]:
    """The files a worker result names (``labels``, ``uncertainty``)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"labels": str(folder / "labels.nrrd"), "uncertainty": str(folder / "uncertainty.nrrd")}
    sitk.WriteImage(labels, files["labels"])
    sitk.WriteImage(heatmap, files["uncertainty"])
    return files


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture
def first_result(scene, tmp_path):
    image = synthetic_spine()
    volume = mrml.volume_node_from_image(scene, image, "case")
    nodes = logic.load_result_nodes(scene, volume, write_worker_files(tmp_path / "run1", *result_images(image)),
                                    closed_surface=False)
    return volume, nodes, image


def test_renamed_segments_keep_their_labels_and_the_review(scene, first_result, tmp_path):
    volume, nodes, image = first_result
    expected = sitk.GetArrayFromImage(result_images(image)[0])
    for index, new_name in enumerate(("Canal (checked)", "Bone", "Disc L5-S1")):
        nodes.segmentation.GetSegmentation().GetNthSegment(index).SetName(new_name)
    np.testing.assert_array_equal(mrml.segmentation_to_labels(scene, nodes.segmentation, volume), expected)
    regions = reviewed_by_the_worker(scene, nodes, tmp_path).regions(nodes, threshold=0.5)
    assert [region.structure_key for region, _ras in regions] == ["VB"]


def reviewed_by_the_worker(scene, nodes, folder) -> logic.ReviewCache:
    """What the module does on Refresh: export the segments, let the worker's code compute, load its file."""
    labels_path, heatmap_path = logic.write_review_input(scene, nodes, folder / "review-input")
    cache = logic.ReviewCache()
    cache.load(nodes, write_review(labels_path, heatmap_path, folder / "review" / "review.json"))
    return cache


def test_segments_swapped_by_name_are_still_matched_by_id(scene, first_result):
    volume, nodes, image = first_result
    segmentation = nodes.segmentation.GetSegmentation()
    spinal_canal, vertebrae = segmentation.GetSegment("SC").GetName(), segmentation.GetSegment("VB").GetName()
    segmentation.GetSegment("SC").SetName(vertebrae)
    segmentation.GetSegment("VB").SetName(spinal_canal)
    expected = sitk.GetArrayFromImage(result_images(image)[0])
    np.testing.assert_array_equal(mrml.segmentation_to_labels(scene, nodes.segmentation, volume), expected)


def test_a_second_run_on_the_same_volume_updates_the_same_nodes(scene, first_result, tmp_path):
    volume, nodes, image = first_result
    before = scene.GetNumberOfNodes()
    ids = (nodes.segmentation.GetID(), nodes.heatmap.GetID())
    labels, heatmap = result_images(image, shift=20)
    again = logic.load_result_nodes(scene, volume, write_worker_files(tmp_path / "run2", labels, heatmap),
                                    closed_surface=False)
    assert (again.segmentation.GetID(), again.heatmap.GetID()) == ids
    assert scene.GetNumberOfNodes() == before
    np.testing.assert_array_equal(mrml.segmentation_to_labels(scene, again.segmentation, volume),
                                  sitk.GetArrayFromImage(labels))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(again.heatmap), sitk.GetArrayFromImage(heatmap))
    assert again.heatmap.GetDisplayNode().GetColorNode().GetName() == mrml.HEATMAP_COLOR_NAME


def test_new_output_nodes_option_and_other_volumes_add_nodes(scene, first_result, tmp_path):
    volume, nodes, image = first_result
    files = write_worker_files(tmp_path / "run2", *result_images(image))
    fresh = logic.load_result_nodes(scene, volume, files, closed_surface=False, new_nodes=True)
    assert fresh.segmentation.GetID() != nodes.segmentation.GetID()
    other = mrml.volume_node_from_image(scene, image, "other case")
    assert logic.previous_result_nodes(scene, other) is None
    theirs = logic.load_result_nodes(scene, other, files, closed_surface=False)
    assert theirs.heatmap.GetID() not in (nodes.heatmap.GetID(), fresh.heatmap.GetID())
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 3


def test_slider_steps_only_pick_lists_and_the_gui_side_never_computes(scene, first_result, tmp_path, monkeypatch):
    _volume, nodes, _image = first_result
    cache = reviewed_by_the_worker(scene, nodes, tmp_path)
    monkeypatch.setattr(review.ndimage, "label", lambda *a, **k: pytest.fail("regions computed on the GUI side"))
    monkeypatch.setattr(mrml, "segmentation_to_labels", lambda *a, **k: pytest.fail("segments exported again"))
    shown = {threshold: cache.regions(nodes, threshold) for threshold in (0.25, 0.1, 0.9, 0.5, 0.05)}
    assert [r.structure_key for r, _ in shown[0.25]] == ["VB", "IVD"]
    assert [r.structure_key for r, _ in shown[0.5]] == ["VB"] and shown[0.9] == []
    ras = shown[0.5][0][1]
    assert ras == pytest.approx(mrml.ijk_to_ras(nodes.heatmap, shown[0.5][0][0].centroid_ijk))
    cache.invalidate()  # a new result: nothing is listed until the worker's regions are loaded
    assert cache.regions(nodes, 0.5) == []


def test_regions_survive_the_json_round_trip():
    rng = np.random.default_rng(2)
    heatmap = rng.random((3, 20, 20)).astype(np.float32)
    labels = rng.integers(0, 4, heatmap.shape).astype(np.uint8)
    found = review.regions_by_level(heatmap, labels, (1.0, 1.0, 3.0), max_regions=4)
    assert review.regions_from_dict(review.regions_to_dict(found)) == found


def test_levels_match_a_direct_computation_at_each_threshold():
    rng = np.random.default_rng(1)
    heatmap = rng.random((4, 30, 30)).astype(np.float32)
    labels = rng.integers(0, 4, heatmap.shape).astype(np.uint8)
    levels = review.regions_by_level(heatmap, labels, (1.0, 1.0, 3.0), max_regions=5)
    for threshold in (0.05, 0.42, 0.8, 1.0):
        level = max(x for x in review.REVIEW_LEVELS if x <= threshold + 1e-9)
        assert levels.at(threshold) == review.uncertain_regions(heatmap, labels, (1.0, 1.0, 3.0), level, 5)
