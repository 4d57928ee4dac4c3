"""Thick-slice re-acquisition used to measure generalisation to clinical 2D TSE series."""

import numpy as np
import SimpleITK as sitk
from conftest import synthetic_spine

from SpineSegDiffTraining.thick_slices import simulate_thick_slices, slab_centres


def _volume(slices: int = 11):
    image = synthetic_spine(size=(40, 48, slices), spacing=(0.9, 0.9, 1.0))
    array = sitk.GetArrayFromImage(image)
    array[:] = np.arange(slices, dtype=np.float32)[:, None, None]  # value = slice index (axis 2 = sagittal)
    ramp = sitk.GetImageFromArray(array)
    ramp.CopyInformation(image)
    mask = sitk.GetImageFromArray(np.broadcast_to(np.arange(slices, dtype=np.uint8)[:, None, None], array.shape).copy())
    mask.CopyInformation(image)
    return ramp, mask


def test_slab_centres_are_symmetric_about_the_central_slice():
    assert slab_centres(11, 3) == [2, 5, 8]
    assert slab_centres(18, 5) == [4, 9, 14]
    centres = slab_centres(30, 4)
    assert centres[len(centres) // 2] == 15


def test_thick_slices_average_the_slab_and_keep_the_centre_labels_and_geometry():
    image, mask = _volume()
    thick, thick_mask = simulate_thick_slices(image, mask, 3)
    values = sitk.GetArrayFromImage(thick)[:, 0, 0]
    np.testing.assert_allclose(values, [2, 5, 8], atol=1e-5)  # box average of slices c-1..c+1 of a ramp
    assert list(sitk.GetArrayFromImage(thick_mask)[:, 0, 0]) == [2, 5, 8]
    assert thick.GetSpacing()[2] == 3.0 and thick.GetSpacing()[:2] == image.GetSpacing()[:2]
    np.testing.assert_allclose(thick.TransformIndexToPhysicalPoint((0, 0, 1)),
                               image.TransformIndexToPhysicalPoint((0, 0, 5)))
    assert thick_mask.GetPixelID() == mask.GetPixelID()


def test_even_thickness_uses_half_weight_edges_and_one_mm_is_unchanged():
    image, mask = _volume(12)
    thick, _ = simulate_thick_slices(image, mask, 4)
    central = sitk.GetArrayFromImage(thick)[1, 0, 0]
    assert central == np.float32(6.0)  # (0.5*4 + 5 + 6 + 7 + 0.5*8) / 4
    same, same_mask = simulate_thick_slices(image, mask, 1)
    assert same is image and same_mask is mask
