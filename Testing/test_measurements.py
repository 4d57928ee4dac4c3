"""Measurements on synthetic slices with known sizes (1 mm pixels): exact within a pixel."""

import numpy as np
import pytest
from test_levels import SC, synthetic_slice

from SpineSegDiffLib.anatomy.conventions import NOT_MEASURED, body_not_segmented, meyerding_grade
from SpineSegDiffLib.anatomy.levels import find_levels
from SpineSegDiffLib.anatomy.measurements import measure_levels


@pytest.fixture
def measured():
    labels, image = synthetic_slice(levels=4, body=25, disc=10)
    labels[labels == SC] = 0
    labels[:300, 140:152] = SC  # canal 12 mm deep, 5 mm behind the bodies (columns 100..134)
    heatmap = np.zeros(labels.shape, np.float32)
    heatmap[labels == 3] = 0.25
    levels = find_levels(labels, image)
    return levels, measure_levels(levels, labels, heatmap)


def test_disc_heights_depths_and_canal(measured):
    _, result = measured
    discs, vertebrae = result["discs"], result["vertebrae"]
    assert [d["name"] for d in discs] == ["L5/S1", "L4/L5", "L3/L4", "L2/L3"]
    for disc in discs:
        for key in ("anterior_height_mm", "middle_height_mm", "posterior_height_mm"):
            assert abs(disc[key] - 10) <= 1
        assert abs(disc["dural_sac_ap_diameter_mm"] - 12) <= 1
        assert disc["mean_uncertainty"] == pytest.approx(0.25)
        assert abs(disc["height_index"] - 10 / 35) < 0.03
    for vertebra in vertebrae:
        assert abs(vertebra["middle_height_mm"] - 25) <= 1 and abs(vertebra["depth_mm"] - 35) <= 1
        assert vertebra["mean_uncertainty"] == pytest.approx(0.0)


def test_wedge_disc_has_different_anterior_and_posterior_heights():
    labels, image = synthetic_slice(levels=4, body=25, disc=10)
    wedge_rows = slice(300 - 10 - 4, 300 - 10)
    labels[wedge_rows, 100:110] = 3  # 14 mm anteriorly, 10 mm posteriorly (L5/S1)
    labels[wedge_rows, 110:135] = 0
    result = measure_levels(find_levels(labels, image), labels)
    disc = result["discs"][0]
    assert disc["anterior_height_mm"] > disc["posterior_height_mm"] + 2


def shifted(labels: np.ndarray, rows: slice, shift: int) -> np.ndarray:
    """``labels`` with the vertebral body in ``rows`` (columns 100..134) moved ``shift`` pixels anterior."""
    body = labels[rows, 100:135].copy()
    labels[rows, 100 - shift:135] = 0
    labels[rows, 100 - shift:135 - shift] = body
    return labels


def test_slip_of_a_shifted_vertebra():
    labels, image = synthetic_slice(levels=4, body=25, disc=10)
    labels = shifted(labels, slice(300 - 10 - 25 - 10 - 25, 300 - 10 - 25 - 10), 6)  # L4 moved 6 mm anterior
    result = measure_levels(find_levels(labels, image), labels)
    l4_l5 = next(d for d in result["discs"] if d["name"] == "L4/L5")
    assert abs(l4_l5["slip_mm"] - 6) <= 1
    assert abs(l4_l5["slip_percent"] - 100 * 6 / 35) <= 3
    assert l4_l5["meyerding_grade"] == 1 and l4_l5["slip_reference"] == "L5 superior endplate"
    l5_s1 = next(d for d in result["discs"] if d["name"] == "L5/S1")
    assert l5_s1["slip_mm"] == 0 and l5_s1["meyerding_grade"] == 0  # on the disc's lower surface: no sacrum here
    assert l5_s1["slip_reference"].startswith("S1 superior endplate, taken as the L5/S1 disc's lower surface")


def test_slip_at_l5_s1_without_a_sacrum_is_measured_on_the_disc_floor():
    labels, image = synthetic_slice(levels=4, body=25, disc=10)
    labels = shifted(labels, slice(300 - 10 - 25, 300 - 10), 10)  # L5 moved 10 mm anterior over the L5/S1 disc
    l5_s1 = measure_levels(find_levels(labels, image), labels)["discs"][0]
    assert l5_s1["name"] == "L5/S1"
    assert abs(l5_s1["slip_mm"] - 10) <= 1 and abs(l5_s1["slip_percent"] - 100 * 10 / 35) <= 3
    assert l5_s1["meyerding_grade"] == 2


def test_slip_beyond_a_whole_endplate_is_refused_with_its_reason():
    labels, image = synthetic_slice(levels=4, body=25, disc=10)
    labels = shifted(labels, slice(300 - 10 - 25 - 10 - 25, 300 - 10 - 25 - 10), 40)  # L4 entirely in front of L5
    disc = next(d for d in measure_levels(find_levels(labels, image), labels)["discs"] if d["name"] == "L4/L5")
    for key in ("slip_mm", "slip_percent", "meyerding_grade", "slip_reference"):
        assert disc[key] is None and disc[NOT_MEASURED][key].startswith("implausible slip")


def test_slip_without_the_body_below_says_why():
    labels, image = synthetic_slice(levels=4, body=25, disc=10)
    labels[300 - 10 - 25 - 10 - 25:300 - 10 - 25 - 10, 100:135] = 0  # L4 body not segmented
    discs = {d["name"]: d for d in measure_levels(find_levels(labels, image), labels)["discs"]}
    assert discs["L3/L4"]["slip_mm"] is None and discs["L3/L4"]["meyerding_grade"] is None
    assert discs["L3/L4"][NOT_MEASURED]["slip_percent"] == body_not_segmented("below", "L4")
    assert discs["L4/L5"][NOT_MEASURED]["slip_percent"] == body_not_segmented("above", "L4")
    assert discs["L5/S1"]["slip_mm"] == 0


@pytest.mark.parametrize(("percent", "grade"), [(None, None), (-30.0, 0), (9.9, 0), (10.0, 1), (25.0, 1),
                                                  (25.1, 2), (50.0, 2), (74.0, 3), (99.0, 4)])
def test_meyerding_grade(percent, grade):
    assert meyerding_grade(percent) == grade


SAGITTAL_DIRECTION = (0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
"""Index axes: i posterior, j inferior, k left (LPS): a typical sagittal acquisition."""


def spine_case(spacing=(0.8, 0.8, 4.0)):
    """A sagittal input volume with a synthetic spine on its central slice, mapped as the pipeline maps it.

    Returns ``(assessment, level_labels)``: the report's levels with patient coordinates, and the level
    labelmap on the input grid."""
    import SimpleITK as sitk

    from SpineSegDiffLib.anatomy.assessment import assess_levels
    from SpineSegDiffLib.inference.preprocess import from_model_space, model_point_to_patient, to_model_space

    volume = sitk.Image([400, 400, 5], sitk.sitkFloat32)
    volume.SetSpacing(spacing)
    volume.SetOrigin((-12.0, -40.0, 95.0))
    volume.SetDirection(SAGITTAL_DIRECTION)
    images, geometry = to_model_space(volume + 1.0)
    labels, image = synthetic_slice(levels=4, body=25, disc=10, sacrum=True)
    levels = find_levels(labels, image)
    to_patient = lambda row, column: model_point_to_patient(geometry.model_grid, 0, row, column)  # noqa: E731
    assessment = assess_levels(levels, image, labels, None, None, 1.0, to_patient)
    level_labels = from_model_space(levels.instances[None].astype(np.uint8), geometry, sitk.sitkNearestNeighbor)
    return assessment, level_labels


def test_points_in_patient_coordinates_fall_on_their_level_and_keep_their_lengths():
    assessment, level_labels = spine_case()
    entries = assessment["vertebrae"] + assessment["discs"]
    assert all(e["label_value"] for e in entries)
    for entry in entries:
        index = level_labels.TransformPhysicalPointToIndex(entry["centroid_lps_mm"])
        assert level_labels[index] == entry["label_value"], entry["name"]
        for name, (start, end) in entry["lines_lps_mm"].items():
            length = float(np.linalg.norm(np.subtract(end, start)))
            assert length == pytest.approx(entry[f"{name}_mm"], abs=0.06), (entry["name"], name)
            assert start[0] == pytest.approx(end[0])  # in the processed sagittal plane
            if name.endswith("height"):
                middle = level_labels.TransformPhysicalPointToIndex(tuple(np.add(start, end) / 2))
                assert level_labels[middle] == entry["label_value"]
