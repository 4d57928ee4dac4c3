"""The levels of a result as Slicer nodes under real compiled MRML (slicer-core): one segment per level,
one markups line per measured length, the level names as points, and re-runs that replace them."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (compiled MRML) is not installed", allow_module_level=True)

import vtk  # noqa: E402
from test_measurements import spine_case  # noqa: E402

from SpineSegDiffSlicer import levels_mrml, mrml, roles  # noqa: E402


@pytest.fixture(scope="module")
def case():
    assessment, level_labels = spine_case()
    return {"slice_index": 2, "sagittal_axis": 2, **assessment}, level_labels


@pytest.fixture
def scene():
    scene = slicer.vtkMRMLScene()
    scene.AddNode(slicer.vtkMRMLSelectionNode())  # units for the markups measurements
    return scene


@pytest.fixture
def volume(scene, case):
    return mrml.volume_node_from_image(scene, sitk.Cast(case[1], sitk.sitkFloat32), "T2")


def segmented(report: dict) -> list[dict]:
    return [row for row in levels_mrml.level_rows(report) if row.get("label_value")]


def test_one_segment_per_level_named_coded_and_on_its_voxels(scene, volume, case):
    report, level_labels = case
    nodes = levels_mrml.load_levels(scene, volume, report, level_labels)
    segmentation = nodes.segmentation.GetSegmentation()
    rows = segmented(report)
    assert segmentation.GetNumberOfSegments() == len(rows) == 9
    for row in rows:
        segment = segmentation.GetSegment(levels_mrml.segment_id(row))
        assert segment.GetName() == row["name"]
        entry = vtk.reference("")
        assert segment.GetTag("TerminologyEntry", entry)
        meaning = str(entry).split("~")[2].split("^")[2]
        expected = {"S1": "Sacrum", "L4": "L4 vertebra"}.get(row["name"], meaning)
        assert meaning == expected
        if row["kind"] == "disc":
            assert meaning == "Intervertebral disc"
    l4 = segmentation.GetSegment("vertebra_L4")
    assert l4.GetLabelValue() == next(r["label_value"] for r in rows if r["name"] == "L4")
    assert nodes.segmentation.GetNodeReference(roles.INPUT_ROLE) is volume


def test_a_line_per_measured_length_with_the_reported_length(scene, volume, case):
    report, level_labels = case
    lines = levels_mrml.load_levels(scene, volume, report, level_labels).lines
    expected = {(row["name"], name): row[f"{name}_mm"] for row in levels_mrml.level_rows(report)
                for name in row.get("lines_lps_mm", {})}
    assert set(lines) == set(expected) and len(lines) == 9 * 4  # 3 heights + depth or canal
    for key, node in lines.items():
        assert node.GetName() == f"{key[0]} {key[1].replace('_', ' ')}"
        assert node.GetNumberOfControlPoints() == 2 and not node.GetLocked()
        assert node.GetMeasurement("length").GetValue() == pytest.approx(expected[key], abs=0.06)
    hierarchy = mrml.subject_hierarchy(scene)
    folder = hierarchy.GetItemParent(hierarchy.GetItemByDataNode(next(iter(lines.values()))))
    assert hierarchy.GetItemName(folder) == "T2 SpineSegDiff measurements"


def test_level_names_are_points_at_the_level_centres_in_ras(scene, volume, case):
    report, level_labels = case
    names = levels_mrml.load_levels(scene, volume, report, level_labels).names
    rows = levels_mrml.level_rows(report)
    labels = [names.GetNthControlPointLabel(i) for i in range(names.GetNumberOfControlPoints())]
    assert labels == [r["name"] for r in rows]
    l4 = next(r for r in rows if r["name"] == "L4")
    x, y, z = l4["centroid_lps_mm"]
    assert levels_mrml.level_centroid_ras(report, "L4") == pytest.approx((-x, -y, z))
    position = np.array(names.GetNthControlPointPosition(rows.index(l4)))
    assert position == pytest.approx(np.array([-x, -y, z]), abs=1e-3)
    # the point lies on the L4 voxels of the level labelmap (through Slicer's own RAS geometry)
    ijk = np.linalg.inv(slicer.util.arrayFromVTKMatrix(ijk_to_ras(volume))) @ np.append(position, 1.0)
    array = sitk.GetArrayFromImage(level_labels)
    assert array[tuple(np.round(ijk[2::-1]).astype(int))] == l4["label_value"]


def ijk_to_ras(volume) -> vtk.vtkMatrix4x4:
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return matrix


def test_a_second_run_replaces_the_levels_nodes_and_new_nodes_keeps_them(scene, volume, case):
    report, level_labels = case
    first = levels_mrml.load_levels(scene, volume, report, level_labels)
    second = levels_mrml.load_levels(scene, volume, report, level_labels)
    assert second.segmentation is first.segmentation and second.names is first.names
    count = len(first.lines)
    assert scene.GetNodesByClass("vtkMRMLMarkupsLineNode").GetNumberOfItems() == count
    levels_mrml.load_levels(scene, volume, report, level_labels, new_nodes=True)
    assert scene.GetNodesByClass("vtkMRMLMarkupsLineNode").GetNumberOfItems() == 2 * count
    assert scene.GetNodesByClass("vtkMRMLSegmentationNode").GetNumberOfItems() == 2


def test_a_report_without_levels_adds_no_levels_nodes(scene, volume):
    nodes = levels_mrml.load_levels(scene, volume, {"vertebrae": [], "discs": []}, None)
    assert nodes == levels_mrml.LevelNodes(None, None, {}, None)


def test_moving_a_line_updates_the_table_and_what_depends_on_it(scene, volume, case):
    report, level_labels = case
    nodes = levels_mrml.load_levels(scene, volume, report, level_labels)
    table, line = nodes.table.GetTable(), nodes.lines[("L4/L5", "anterior_height")]
    row = levels_mrml.table_row(table, "L4/L5")
    columns = ("Anterior height (mm)", "Mean height (mm)", "Height index")
    before = {c: levels_mrml.number(table, c, row) for c in columns}
    untouched = levels_mrml.number(table, "Mean height (mm)", levels_mrml.table_row(table, "L3/L4"))
    start, end = np.array(line.GetNthControlPointPosition(0)), np.array(line.GetNthControlPointPosition(1))
    direction = (end - start) / np.linalg.norm(end - start)
    line.SetNthControlPointPosition(1, *(end + 3.0 * direction))  # the reader stretches it by 3 mm
    after = {c: levels_mrml.number(table, c, row) for c in before}
    assert after["Anterior height (mm)"] == pytest.approx(before["Anterior height (mm)"] + 3.0, abs=0.06)
    assert after["Mean height (mm)"] == pytest.approx(before["Mean height (mm)"] + 1.0, abs=0.06)
    depth = levels_mrml.number(table, "Depth (mm)", levels_mrml.table_row(table, "L4"))
    assert after["Height index"] == pytest.approx(after["Mean height (mm)"] / depth, abs=1e-3)
    assert table.GetColumnByName("Edited in Slicer").GetValue(row) == "anterior height"
    assert levels_mrml.number(table, "Mean height (mm)", levels_mrml.table_row(table, "L3/L4")) == untouched


def test_moving_the_dural_sac_line_updates_the_report_line(scene, volume, case):
    report, level_labels = case
    nodes = levels_mrml.load_levels(scene, volume, report, level_labels)
    table = nodes.table.GetTable()
    disc = next(d for d in report["discs"] if "dural_sac_ap_diameter" in d.get("lines_lps_mm", {}))
    row, line = levels_mrml.table_row(table, disc["name"]), nodes.lines[(disc["name"], "dural_sac_ap_diameter")]
    reading = table.GetColumnByName("Report line")
    assert reading.GetValue(row) == disc["reading"] and "dural sac" in disc["reading"]
    start, end = np.array(line.GetNthControlPointPosition(0)), np.array(line.GetNthControlPointPosition(1))
    line.SetNthControlPointPosition(1, *(start + (end - start) * 2.0))  # the reader doubles it
    edited = levels_mrml.number(table, "Dural sac AP diameter (mm)", row)
    assert edited == pytest.approx(2 * disc["dural_sac_ap_diameter_mm"], abs=0.2)
    assert reading.GetValue(row).endswith(f"dural sac {edited:.1f} mm AP")


def test_re_runs_leave_one_table_observer_per_line_and_edits_still_update_the_table(scene, volume, case,
                                                                                   monkeypatch):
    report, level_labels = case
    first = levels_mrml.load_levels(scene, volume, report, level_labels)
    second = levels_mrml.load_levels(scene, volume, report, level_labels)
    levels_mrml.follow_line_edits(second.table, second.lines)  # a run that reuses the same line nodes
    calls = []
    apply = levels_mrml.apply_line_length
    monkeypatch.setattr(levels_mrml, "apply_line_length",
                        lambda *arguments: (calls.append(arguments[1:3]), apply(*arguments)))
    key = ("L4/L5", "anterior_height")
    old, line = first.lines[key], second.lines[key]
    assert old.GetScene() is None and line.GetScene() is scene
    table = second.table.GetTable()
    row = levels_mrml.table_row(table, "L4/L5")
    before = levels_mrml.number(table, "Anterior height (mm)", row)

    def stretch(node, mm: float) -> None:
        start, end = np.array(node.GetNthControlPointPosition(0)), np.array(node.GetNthControlPointPosition(1))
        node.SetNthControlPointPosition(1, *(end + mm * (end - start) / np.linalg.norm(end - start)))

    stretch(old, 5.0)  # the replaced line no longer feeds the table
    assert calls == [] and levels_mrml.number(table, "Anterior height (mm)", row) == before
    stretch(line, 3.0)
    assert calls == [key], "exactly one observer on the line after two runs and a repeated follow"
    assert levels_mrml.number(table, "Anterior height (mm)", row) == pytest.approx(before + 3.0, abs=0.06)
    assert table.GetColumnByName("Edited in Slicer").GetValue(row) == "anterior height"
    moved = slicer.vtkMRMLMarkupsNode.PointModifiedEvent
    assert not old.HasObserver(moved) and line.HasObserver(moved)  # slicer-core adds no observer of its own
    assert old not in levels_mrml._line_observers and line in levels_mrml._line_observers


def test_lines_removed_by_the_reader_are_no_longer_followed(scene, volume, case):
    report, level_labels = case
    nodes = levels_mrml.load_levels(scene, volume, report, level_labels)
    line = nodes.lines[("L4/L5", "anterior_height")]
    scene.RemoveNode(line)
    levels_mrml.forget_removed_lines()  # also the first step of every follow_line_edits
    assert line not in levels_mrml._line_observers
    assert not line.HasObserver(slicer.vtkMRMLMarkupsNode.PointModifiedEvent)
    assert all(node.GetScene() is not None for node in levels_mrml._line_observers)
