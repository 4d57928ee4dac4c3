import numpy as np
import pytest
import SimpleITK as sitk
from conftest import oblique_direction, synthetic_spine

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.inference.preprocess import (
    MODEL_SIZE,
    from_model_space,
    labels_to_model_space,
    sagittal_axis_of,
    to_model_space,
)


def _blob_labels(image: sitk.Image, axis: int, index: int) -> sitk.Image:
    """Labels 1..3 in rectangles on one sagittal slice of ``image``."""
    array = np.zeros(image.GetSize()[::-1], np.uint8)
    numpy_axis = 2 - axis
    plane = [slice(None)] * 3
    plane[numpy_axis] = index
    view = array[tuple(plane)]
    h, w = view.shape
    view[h // 5 : h // 2, w // 5 : w // 2] = 1
    view[h // 2 : 4 * h // 5, w // 4 : w // 2] = 2
    view[h // 3 : 2 * h // 3, w // 2 : 3 * w // 4] = 3
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    return labels


def _round_trip(image: sitk.Image):
    _, geometry = to_model_space(image, "central")
    axis = geometry.sagittal_axis
    labels = _blob_labels(image, axis, geometry.slice_indices[0])
    model = labels_to_model_space(labels, geometry)
    back = from_model_space(model, geometry, sitk.sitkNearestNeighbor)
    return labels, back, geometry


def test_exact_round_trip_at_model_resolution_oblique():
    image = synthetic_spine(size=(120, 100, 9), spacing=(1.0, 1.0, 4.0), direction=oblique_direction(15))
    labels, back, geometry = _round_trip(image)
    assert back.GetSize() == image.GetSize()
    assert back.GetDirection() == image.GetDirection() and back.GetOrigin() == image.GetOrigin()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(labels))


@pytest.mark.parametrize("degrees", [0.0, 20.0])
def test_round_trip_anisotropic_lands_on_the_same_voxels(degrees):
    image = synthetic_spine(size=(130, 150, 11), spacing=(0.8, 0.7, 3.3), direction=oblique_direction(degrees))
    labels, back, _ = _round_trip(image)
    a, b = sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(back)
    for value in (1, 2, 3):
        dice = 2 * np.sum((a == value) & (b == value)) / (np.sum(a == value) + np.sum(b == value))
        assert dice > 0.95


def test_only_the_processed_slice_is_filled():
    image = synthetic_spine()
    labels, back, geometry = _round_trip(image)
    array = sitk.GetArrayFromImage(back)
    filled = np.flatnonzero(array.reshape(array.shape[0], -1).any(1))
    axis = geometry.sagittal_axis
    assert axis == 2 and array.shape[2 - axis] == image.GetSize()[axis]
    # the sagittal axis is SimpleITK axis 2 -> NumPy axis 0
    assert filled.tolist() == [geometry.slice_indices[0]]


def test_sagittal_axis_comes_from_the_direction():
    assert sagittal_axis_of(synthetic_spine()) == 2
    lps_sagittal = synthetic_spine(direction=(0, 0, 1, 1, 0, 0, 0, 1, 0))
    assert sagittal_axis_of(lps_sagittal) == 2
    assert sagittal_axis_of(synthetic_spine(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))) == 0


def test_explicit_slice_index_is_honoured_for_flipped_axes():
    for direction in ((0, 0, -1, 1, 0, 0, 0, -1, 0), (0, 0, 1, 1, 0, 0, 0, -1, 0)):
        image = synthetic_spine(direction=direction)
        for index in (0, 3, 11):  # axis 2 has 12 slices
            _, geometry = to_model_space(image, index)
            assert geometry.slice_indices == (index,)


def test_all_slices_and_intensity_scale():
    image = synthetic_spine()
    slices, geometry = to_model_space(image, "all")
    assert slices.shape == (12, MODEL_SIZE, MODEL_SIZE)
    assert sorted(geometry.slice_indices) == list(range(12))
    assert slices.min() >= 0 and slices.max() <= 255


def test_thick_axial_volume_is_refused():
    axial = synthetic_spine(size=(96, 80, 20), spacing=(0.8, 0.8, 5.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    with pytest.raises(SpineSegDiffError, match="axial or coronal"):
        to_model_space(axial)


def test_isotropic_axial_volume_is_reformatted():
    axial = synthetic_spine(size=(60, 80, 70), spacing=(1.0, 1.0, 1.0), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    slices, geometry = to_model_space(axial)
    assert slices.shape == (1, MODEL_SIZE, MODEL_SIZE) and geometry.sagittal_axis == 0
