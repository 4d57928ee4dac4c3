"""The report's per-level assessment as a levels table under real compiled MRML (slicer-core): one row per
level bottom-up, lengths in mm in named columns, and the same table updated by a second run."""

from __future__ import annotations

import math

import numpy as np
import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (compiled MRML) is not installed", allow_module_level=True)

from test_levels import SC, synthetic_slice  # noqa: E402

from SpineSegDiffLib.anatomy.assessment import assess_slice  # noqa: E402
from SpineSegDiffSlicer import levels_mrml, roles  # noqa: E402


@pytest.fixture(scope="module")
def report() -> dict:
    """A report's levels for a synthetic spine (sacrum, 4 lumbar bodies, 10 mm discs at 0.5 mm pixels),
    with a grade on L4/L5 as the grading model would give it."""
    labels, image = synthetic_slice(levels=4, body=25, disc=10, sacrum=True)
    heatmap = np.full(labels.shape, 0.1, np.float32)
    result = assess_slice(image, labels, heatmap, spacing_mm=0.5)
    disc = next(d for d in result["discs"] if d["name"] == "L4/L5")
    disc.update(pfirrmann_grade=3, pfirrmann_probabilities=[0.1, 0.2, 0.4, 0.2, 0.1], narrowing_probability=0.7)
    return {"slice_index": 3, "sagittal_axis": 0, **result}


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture
def volume(scene):
    return scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "T2")


def column(node, name: str) -> list:
    array = node.GetTable().GetColumnByName(name)
    assert array is not None, name
    return [array.GetValue(i) for i in range(array.GetNumberOfValues())]


def tables(scene) -> int:
    return scene.GetNodesByClass("vtkMRMLTableNode").GetNumberOfItems()


def test_table_has_one_row_per_level_bottom_up_with_the_reported_values(scene, volume, report):
    node = levels_mrml.update_levels_table(scene, volume, report)
    assert node.GetName() == "T2 SpineSegDiff levels"
    assert node.GetAttribute(roles.ROLE_ATTRIBUTE) == levels_mrml.LEVELS_ROLE
    assert node.GetNodeReference(roles.INPUT_ROLE) is volume
    names = [title for title, _ in levels_mrml.TEXT_COLUMNS + levels_mrml.NUMBER_COLUMNS]
    assert [node.GetColumnName(i) for i in range(node.GetNumberOfColumns())] == names
    assert column(node, "Level") == ["S1", "L5/S1", "L5", "L4/L5", "L4", "L3/L4", "L3", "L2/L3", "L2"]
    assert column(node, "Kind") == ["vertebra", "disc"] * 4 + ["vertebra"]
    assert column(node, "From bottom") == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    by_name = dict(zip(column(node, "Level"), range(node.GetNumberOfRows())))
    for disc in report["discs"]:
        row = by_name[disc["name"]]
        assert column(node, "Middle height (mm)")[row] == disc["middle_height_mm"]
        assert column(node, "Middle height (mm)")[row] == pytest.approx(5.0, abs=0.5)  # 10 px at 0.5 mm
        assert column(node, "Mean uncertainty")[row] == pytest.approx(0.1)
    grades = column(node, "Pfirrmann grade")
    assert grades[by_name["L4/L5"]] == 3 and column(node, "Narrowing probability")[by_name["L4/L5"]] == 0.7
    assert math.isnan(grades[by_name["L5/S1"]])  # not graded
    assert math.isnan(column(node, "Depth (mm)")[by_name["L5/S1"]])  # a disc has no depth


def test_a_second_run_updates_the_same_table(scene, volume, report):
    first = levels_mrml.update_levels_table(scene, volume, report)
    fewer = {**report, "vertebrae": report["vertebrae"][:2], "discs": report["discs"][:1]}
    second = levels_mrml.update_levels_table(scene, volume, fewer)
    assert second is first and tables(scene) == 1
    assert column(second, "Level") == ["S1", "L5/S1", "L5"]
    other = levels_mrml.update_levels_table(scene, volume, report, new_node=True)
    assert other is not first and tables(scene) == 2


def test_a_report_without_levels_adds_nothing(scene, volume):
    assert levels_mrml.update_levels_table(scene, volume, {"slice_index": None}) is None
    assert tables(scene) == 0


def test_the_module_levels_list_shows_heights_index_grade_and_unsegmented_levels(report):
    rows = levels_mrml.summary_rows(report)
    assert [r[0] for r in rows] == [r["name"] for r in levels_mrml.level_rows(report)]
    l4_l5 = rows[[r[0] for r in rows].index("L4/L5")]
    disc = next(d for d in report["discs"] if d["name"] == "L4/L5")
    assert l4_l5 == ("L4/L5", f"{disc['mean_height_mm']:.1f}", f"{disc['height_index']:.2f}", "3 (40%)",
                     f"{disc['mean_uncertainty']:.2f}")
    missing = {**report, "discs": [{**report["discs"][0], "segmented": False, "mean_height_mm": None}]}
    assert levels_mrml.summary_rows(missing)[1][:2] == (f"{report['discs'][0]['name']} (not segmented)", "-")


def test_recomputing_an_unedited_table_gives_the_reports_mean_heights_and_height_indices(report):
    from SpineSegDiffLib.anatomy import report as level_report

    assert levels_mrml.level_report is level_report and levels_mrml.NUMBER_COLUMNS is level_report.TABLE_COLUMNS
    table = levels_mrml.levels_table(report)
    for key in ("mean_height_mm", "height_index"):  # the recomputation really writes these cells
        title = levels_mrml.TITLES[key]
        for i in range(table.GetNumberOfRows()):
            table.GetColumnByName(title).SetValue(i, -1.0)
    levels_mrml.recompute_disc_relations(table)
    for disc in report["discs"]:
        row = levels_mrml.table_row(table, disc["name"])
        assert levels_mrml.number(table, "Mean height (mm)", row) == disc["mean_height_mm"]
        assert levels_mrml.number(table, "Height index", row) == disc["height_index"]


def test_a_measure_not_taken_is_nan_with_its_reason_in_the_table(scene, volume):
    from SpineSegDiffLib.anatomy.conventions import NO_DURAL_SAC, reasons_text

    labels, image = synthetic_slice(levels=4, body=25, disc=10, sacrum=True)
    labels[200:240][labels[200:240] == SC] = 0  # no dural sac behind L4/L5 (rows 215..225)
    result = assess_slice(image, labels, np.full(labels.shape, 0.1, np.float32))
    disc = next(d for d in result["discs"] if d["name"] == "L4/L5")
    assert disc["dural_sac_ap_diameter_mm"] is None and disc["not_measured"]["dural_sac_ap_diameter_mm"] == NO_DURAL_SAC
    node = levels_mrml.update_levels_table(scene, volume, result)
    row = column(node, "Level").index("L4/L5")
    assert math.isnan(column(node, "Dural sac AP diameter (mm)")[row])
    assert column(node, "Not measured")[row] == reasons_text(disc["not_measured"])
    assert column(node, "Not measured")[column(node, "Level").index("L4")] == ""
