"""Ranking of uncertain regions for review (pure NumPy/SciPy)."""

from __future__ import annotations

import numpy as np
import pytest

from SpineSegDiffLib.review import BACKGROUND_KEY, Region, planar_axis, uncertain_regions, voxel_measure

SPACING = (0.5, 1.0, 4.0)  # SimpleITK order (i, j, k): NumPy axis 0 has 4 mm, axis 2 has 0.5 mm


def volume_with_two_regions():
    heatmap = np.zeros((3, 40, 40), np.float32)
    labels = np.zeros(heatmap.shape, np.uint8)
    heatmap[:, 2:12, 2:12] = 0.6  # large, moderately uncertain, on the vertebra
    labels[:, 2:12, 2:10] = 2
    heatmap[:, 30:32, 30:32] = 0.95  # small, very uncertain, in the background
    return heatmap, labels


def test_regions_are_ranked_by_mean_uncertainty_times_size():
    heatmap, labels = volume_with_two_regions()
    regions = uncertain_regions(heatmap, labels, SPACING, threshold=0.5)
    assert [r.structure_key for r in regions] == ["VB", BACKGROUND_KEY]
    large, small = regions
    assert large.voxel_count == 300 and large.unit == "mm3"
    assert large.size_mm == pytest.approx(300 * 0.5 * 1.0 * 4.0)
    assert large.mean_uncertainty == pytest.approx(0.6)
    assert large.centroid_ijk == pytest.approx((6.5, 6.5, 1.0))
    assert small.score < large.score


def test_threshold_and_max_regions_limit_the_list():
    heatmap, labels = volume_with_two_regions()
    assert [r.mean_uncertainty for r in uncertain_regions(heatmap, labels, SPACING, threshold=0.9)] == [0.95]
    assert len(uncertain_regions(heatmap, labels, SPACING, threshold=0.5, max_regions=1)) == 1
    assert uncertain_regions(heatmap, labels, SPACING, threshold=0.99) == []
    assert uncertain_regions(heatmap, labels, SPACING, min_voxels=20)[0].structure_key == "VB"


def test_central_slice_heatmaps_are_measured_in_square_millimetres():
    heatmap = np.zeros((5, 30, 30), np.float32)
    heatmap[2, 5:15, 5:10] = 0.8  # only the processed slice carries uncertainty
    labels = np.zeros(heatmap.shape, np.uint8)
    labels[2, 5:15, 5:10] = 3
    assert planar_axis(heatmap) == 0
    (region,) = uncertain_regions(heatmap, labels, SPACING)
    assert region.unit == "mm2" and region.structure_key == "IVD"
    assert region.size_mm == pytest.approx(50 * 0.5 * 1.0)


def test_region_is_attributed_to_the_structure_it_overlaps_most():
    heatmap = np.zeros((1, 10, 10), np.float32)
    heatmap[0, :, 2:8] = 1.0
    labels = np.zeros(heatmap.shape, np.uint8)
    labels[0, :, 2:4] = 1
    labels[0, :, 4:8] = 3
    (region,) = uncertain_regions(heatmap, labels, (1.0, 1.0, 1.0))
    assert region.structure_key == "IVD"


def test_region_is_immutable_and_shapes_must_match():
    region = Region("SC", 1.0, 0.5, (0.0, 0.0, 0.0), 1)
    with pytest.raises(AttributeError):
        region.size_mm = 2.0
    with pytest.raises(ValueError, match="same shape"):
        uncertain_regions(np.zeros((2, 3, 4)), np.zeros((2, 3, 5)), (1, 1, 1))


def test_voxel_measure_uses_simpleitk_spacing_order():
    assert voxel_measure(SPACING, None) == (2.0, "mm3")
    assert voxel_measure(SPACING, 0) == (0.5, "mm2")
    assert voxel_measure(SPACING, 2) == (4.0, "mm2")
