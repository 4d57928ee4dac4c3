"""The report's per-level assessment in Slicer: a table (one row per vertebra and disc, bottom-up), one
segment per level, the measurement lines as markups lines, and the level names as labelled points.

The rows come from the report's ``"vertebrae"`` and ``"discs"`` lists (see ``SpineSegDiffLib.anatomy.report``:
the kinds, their order and structures, the table's number columns and the mean height and height index formulas);
lengths are in mm as the report gives them, and a value the report leaves out (a level that was not
segmented, a grade without the grading model) or gives as null is NaN; the "Not measured" column says why each
null measure is null (the report's ``not_measured``). Every node made here is marked with
:data:`~.logic.ROLE_ATTRIBUTE` and references its input volume, so a re-run on the same volume updates
(or replaces) the previous result's nodes instead of adding more.

Points come from the report in patient coordinates (``centroid_lps_mm``, ``lines_lps_mm``: LPS, as DICOM
and ITK use) and become RAS here. The level labelmap (``<stem>_level_labels.nii.gz``) holds each level's
``label_value`` on the input grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk
import slicer
import vtk

from SpineSegDiffLib.anatomy import report as level_report
from SpineSegDiffLib.anatomy.conventions import NOT_MEASURED, reasons_text
from SpineSegDiffLib.anatomy.reading import READING, with_dural_sac
from SpineSegDiffLib.anatomy.report import DISC, HEIGHT_KEYS, TABLE_COLUMNS, VERTEBRA, level_terminology, structure_of

from . import mrml
from .roles import INPUT_ROLE, ROLE_ATTRIBUTE

LEVELS_ROLE = "levels"
LEVEL_SEGMENTS_ROLE = "level segments"
MEASUREMENT_ROLE = "measurement"
LEVEL_NAMES_ROLE = "level names"
TABLE_SUFFIX = " SpineSegDiff levels"
SEGMENTATION_SUFFIX = " SpineSegDiff level segments"
MEASUREMENTS_FOLDER_SUFFIX = " SpineSegDiff measurements"
NAMES_SUFFIX = " SpineSegDiff level names"
ALTERNATE_SHADE = 0.75
"""Every other level of a structure is drawn this much darker, so that neighbours stand apart."""
TEXT_COLUMNS = (("Level", "name"), ("Kind", "kind"), ("Report line", READING), ("Edited in Slicer", "edited"),
                ("Not measured", NOT_MEASURED))
NUMBER_COLUMNS = TABLE_COLUMNS
"""``(column name, report key)``; units are part of the column names."""
TITLES = {key: title for title, key in TEXT_COLUMNS + NUMBER_COLUMNS}
"""Column name of each report key."""
LINE_COLUMNS = {key[: -len("_mm")]: title for title, key in NUMBER_COLUMNS if key.endswith("_mm")}
"""Table column of each measurement line (``"anterior_height"`` -> ``"Anterior height (mm)"``)."""


def level_rows(report: dict) -> list[dict]:
    """The report's vertebrae and discs, bottom-up (S1, L5/S1, L5, L4/L5, ...), each with its ``kind``."""
    return level_report.level_rows(report)


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def levels_table(report: dict) -> vtk.vtkTable:
    """A ``vtkTable`` with the columns :data:`TEXT_COLUMNS` + :data:`NUMBER_COLUMNS` and one row per level."""
    rows = level_rows(report)
    table = vtk.vtkTable()
    for title, key in TEXT_COLUMNS:
        column = vtk.vtkStringArray()
        column.SetName(title)
        for row in rows:
            value = row.get(key, "")
            column.InsertNextValue(reasons_text(value) if isinstance(value, dict) else str(value))
        table.AddColumn(column)
    for title, key in NUMBER_COLUMNS:
        column = vtk.vtkDoubleArray()
        column.SetName(title)
        for row in rows:
            column.InsertNextValue(_number(row.get(key)))
        table.AddColumn(column)
    return table


def update_levels_table(scene, volume_node, report: dict, new_node: bool = False):
    """The report's levels in the volume's levels table (updated in place unless ``new_node``), or None when
    the report has no levels (an existing table is then left as it is)."""
    if not level_report.kind_entries(report):
        return None
    node = None if new_node else previous_node(scene, volume_node, LEVELS_ROLE, "vtkMRMLTableNode")
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", volume_node.GetName() + TABLE_SUFFIX)
        mark(node, LEVELS_ROLE, volume_node)
    node.SetAndObserveTable(levels_table(report))
    node.SetUseColumnNameAsColumnHeader(True)
    node.SetLocked(True)
    return node


@dataclass(frozen=True)
class LevelNodes:
    """What one run adds for the levels: the table, the per-level segments, the measurement lines
    (``{(level name, measurement): line node}``) and the labelled level points."""

    table: Any
    segmentation: Any
    lines: dict
    names: Any


def ras(point_lps) -> tuple[float, float, float]:
    """A report point (LPS, mm) in RAS."""
    x, y, z = (float(v) for v in point_lps)
    return -x, -y, z


def level_entries(report: dict) -> list[dict]:
    """The report's levels bottom-up (see :func:`level_rows`) that were segmented."""
    return [row for row in level_rows(report) if row.get("label_value")]


def level_color(row: dict) -> tuple[float, float, float]:
    """The structure's colour, darker for every other level."""
    color = np.array(structure_of(row["kind"]).color)
    return tuple(float(c) for c in (color * (ALTERNATE_SHADE if row["from_bottom"] % 2 else 1.0)))


def segment_id(row: dict) -> str:
    """``vertebra_L4``, ``disc_L4-L5``: stable across runs, no path separators."""
    return f"{row['kind']}_{row['name'].replace('/', '-')}"


def nodes_with_role(scene, volume_node, role: str, class_name: str = "vtkMRMLNode") -> list:
    """Nodes of ``class_name`` marked with ``role`` that reference ``volume_node``."""
    nodes = scene.GetNodesByClass(class_name)
    found = [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]
    return [node for node in found
            if node.GetAttribute(ROLE_ATTRIBUTE) == role and node.GetNodeReference(INPUT_ROLE) is volume_node]


def previous_node(scene, volume_node, role: str, class_name: str):
    """The node of the last result made from ``volume_node`` with this role, or None."""
    found = nodes_with_role(scene, volume_node, role, class_name)
    return found[0] if found else None


def mark(node, role: str, volume_node) -> None:
    """Tag a result node with its role and input volume; place it under the volume's transform if it has a place."""
    node.SetAttribute(ROLE_ATTRIBUTE, role)
    node.SetNodeReferenceID(INPUT_ROLE, volume_node.GetID())
    if node.IsA("vtkMRMLTransformableNode"):
        mrml.place_like(node, volume_node)


def update_level_segmentation(scene, volume_node, level_labels: sitk.Image, report: dict, new_node: bool = False):
    """One segment per segmented level (named, coded with :func:`~SpineSegDiffLib.anatomy.report.level_terminology`,
    coloured by structure) from the level labelmap; None when the report names no level."""
    rows = level_entries(report)
    if not rows:
        return None
    node = None if new_node else previous_node(scene, volume_node, LEVEL_SEGMENTS_ROLE, "vtkMRMLSegmentationNode")
    if node is None:
        mrml.segmentations_logic(scene)
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode",
                                       scene.GenerateUniqueName(volume_node.GetName() + SEGMENTATION_SUFFIX))
        node.CreateDefaultDisplayNodes()
        node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        mark(node, LEVEL_SEGMENTS_ROLE, volume_node)
    segments = [(row["label_value"], segment_id(row), row["name"], level_color(row),
                 level_terminology(row["kind"], row["name"])) for row in rows]
    mrml.replace_labelled_segments(node, level_labels, segments)
    node.GetDisplayNode().SetVisibility3D(False)
    return node


def update_measurement_lines(scene, volume_node, report: dict, new_nodes: bool = False) -> dict:
    """A markups line per measured length (``lines_lps_mm``), named "<level> <measurement>" and filed in a
    subject hierarchy folder; a re-run replaces the previous run's lines. Returns ``{(level, measurement): node}``."""
    if not new_nodes:
        for node in nodes_with_role(scene, volume_node, MEASUREMENT_ROLE, "vtkMRMLMarkupsLineNode"):
            stop_following_line(node)
            scene.RemoveNode(node)
    hierarchy = mrml.subject_hierarchy(scene)
    folder = None
    lines = {}
    for row in level_rows(report):
        for measurement, points in (row.get("lines_lps_mm") or {}).items():
            if folder is None:
                folder = measurements_folder(hierarchy, volume_node)
            node = add_line(scene, volume_node, f"{row['name']} {measurement.replace('_', ' ')}", points, row)
            mrml.file_under(hierarchy, node, folder)
            lines[(row["name"], measurement)] = node
    return lines


def measurements_folder(hierarchy, volume_node) -> int:
    """The subject hierarchy folder for the volume's measurement lines (made once, then reused)."""
    name = volume_node.GetName() + MEASUREMENTS_FOLDER_SUFFIX
    folder = hierarchy.GetItemChildWithName(hierarchy.GetSceneItemID(), name)
    return folder or hierarchy.CreateFolderItem(hierarchy.GetSceneItemID(), name)


def add_line(scene, volume_node, name: str, points_lps, row: dict):
    """One unlocked markups line (the reader may move its ends; Slicer re-measures it) without labels in the views."""
    node = scene.AddNewNodeByClass("vtkMRMLMarkupsLineNode", name)
    node.CreateDefaultDisplayNodes()
    for point in points_lps:
        node.AddControlPoint(*ras(point))
    display = node.GetDisplayNode()
    display.SetSelectedColor(*level_color(row))
    display.SetPropertiesLabelVisibility(False)
    display.SetPointLabelsVisibility(False)
    mark(node, MEASUREMENT_ROLE, volume_node)
    return node


def update_level_names(scene, volume_node, report: dict, new_node: bool = False):
    """A locked point list with one labelled point per level at its centroid ("L4", "L4/L5"), or None."""
    rows = [row for row in level_rows(report) if row.get("centroid_lps_mm")]
    if not rows:
        return None
    node = None if new_node else previous_node(scene, volume_node, LEVEL_NAMES_ROLE, "vtkMRMLMarkupsFiducialNode")
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", volume_node.GetName() + NAMES_SUFFIX)
        node.CreateDefaultDisplayNodes()
        mark(node, LEVEL_NAMES_ROLE, volume_node)
    node.RemoveAllControlPoints()
    for row in rows:
        node.AddControlPoint(*ras(row["centroid_lps_mm"]), row["name"])
    node.SetLocked(True)
    return node


def load_levels(scene, volume_node, report: dict, level_labels: sitk.Image | None,
                new_nodes: bool = False) -> LevelNodes:
    """Every levels node of one result (see the module docstring); parts the report lacks are None / empty."""
    table = update_levels_table(scene, volume_node, report, new_node=new_nodes)
    segmentation = (update_level_segmentation(scene, volume_node, level_labels, report, new_node=new_nodes)
                    if level_labels is not None else None)
    lines = update_measurement_lines(scene, volume_node, report, new_nodes=new_nodes)
    if table is not None:
        follow_line_edits(table, lines)
    names = update_level_names(scene, volume_node, report, new_node=new_nodes)
    return LevelNodes(table, segmentation, lines, names)


_line_observers: dict = {}
"""``{line node: observer tag}`` of the ``PointModifiedEvent`` observers added by :func:`follow_line_edits`, so
that a line is never observed twice and an observer goes with the line it watches. Keyed by the node itself,
not its ID (IDs repeat across scenes); holding the node keeps that key unique. An entry is dropped when its
line is replaced by a re-run (:func:`update_measurement_lines`), followed again, or found out of its scene
(deleted by the reader, scene closed) at the next :func:`follow_line_edits`."""


def stop_following_line(node) -> None:
    """Remove the observer :func:`follow_line_edits` put on ``node``, if any."""
    tag = _line_observers.pop(node, None)
    if tag is not None:
        node.RemoveObserver(tag)


def forget_removed_lines() -> None:
    """Stop following every line that has left its scene."""
    for node in [node for node in _line_observers if node.GetScene() is None]:
        stop_following_line(node)


def follow_line_edits(table_node, lines: dict) -> None:
    """Keep the table in step with the reader: when a measurement line is moved, its length replaces the
    measured value, the disc's mean height and height indices are recomputed (and its report line's dural sac
    diameter), and the row's "Edited in Slicer" cell names what was changed. Slip and grades are left as measured.

    Each line has at most one such observer: one added earlier (by a previous run on the same line node) is
    removed first, and so are those of lines no longer in a scene."""
    forget_removed_lines()
    for (level, measurement), node in lines.items():
        stop_following_line(node)
        if measurement in LINE_COLUMNS:
            _line_observers[node] = node.AddObserver(
                slicer.vtkMRMLMarkupsNode.PointModifiedEvent,
                lambda line, event, level=level, measurement=measurement:
                apply_line_length(table_node, level, measurement, line.GetLineLengthWorld()))


def apply_line_length(table_node, level: str, measurement: str, length_mm: float) -> None:
    """Write one edited length into the table and update what depends on it (see :func:`follow_line_edits`)."""
    table = table_node.GetTable()
    row = table_row(table, level)
    if row is None:
        return
    set_number(table, LINE_COLUMNS[measurement], row, round(length_mm, 1))
    if measurement == "dural_sac_ap_diameter":
        reading = table.GetColumnByName(TITLES[READING])
        reading.SetValue(row, with_dural_sac(reading.GetValue(row), round(length_mm, 1)))
    edited = table.GetColumnByName("Edited in Slicer")
    done = [e for e in edited.GetValue(row).split(", ") if e]
    label = measurement.replace("_", " ")
    edited.SetValue(row, ", ".join(done + ([label] if label not in done else [])))
    recompute_disc_relations(table)
    table.Modified()
    table_node.Modified()


def table_row(table: vtk.vtkTable, level: str) -> int | None:
    names = table.GetColumnByName("Level")
    return next((i for i in range(names.GetNumberOfValues()) if names.GetValue(i) == level), None)


def set_number(table: vtk.vtkTable, column: str, row: int, value: float) -> None:
    table.GetColumnByName(column).SetValue(row, value)


def number(table: vtk.vtkTable, column: str, row: int) -> float:
    return float(table.GetColumnByName(column).GetValue(row))


def recompute_disc_relations(table: vtk.vtkTable) -> None:
    """Every disc's mean height (of its three heights) and height index (mean height / depth of the body
    above, the vertebra with the same ``from_bottom``), with the formulas of :mod:`SpineSegDiffLib.anatomy.report`
    (NaN where the report would give None)."""
    kinds, numbers = table.GetColumnByName(TITLES["kind"]), table.GetColumnByName(TITLES["from_bottom"])
    depths = {numbers.GetValue(i): number(table, TITLES["depth_mm"], i)
              for i in range(table.GetNumberOfRows()) if kinds.GetValue(i) == VERTEBRA}
    for row in (i for i in range(table.GetNumberOfRows()) if kinds.GetValue(i) == DISC):
        mean = level_report.mean_height([number(table, TITLES[key], row) for key in HEIGHT_KEYS])
        set_number(table, TITLES["mean_height_mm"], row, mean)
        index = level_report.height_index(mean, depths.get(numbers.GetValue(row)))
        set_number(table, TITLES["height_index"], row, math.nan if index is None else index)


def level_centroid_ras(report: dict, name: str) -> tuple[float, float, float] | None:
    """RAS centre of the level called ``name`` (to jump the views there), or None."""
    row = next((r for r in level_rows(report) if r["name"] == name and r.get("centroid_lps_mm")), None)
    return ras(row["centroid_lps_mm"]) if row else None


def summary_rows(report: dict) -> list[tuple[str, str, str, str, str]]:
    """The module's levels list, bottom-up: level, middle height (vertebra) or mean height (disc) in mm, disc
    height index, Pfirrmann grade with its (calibrated) probability or "uncertain" with the top probability when the
    grader abstained, mean uncertainty; "-" where a value does not apply (or grading was refused)."""

    def text(value, fmt: str = "{}") -> str:
        return "-" if value is None else fmt.format(value)

    rows = []
    for row in level_rows(report):
        height = row.get("mean_height_mm") if row["kind"] == DISC else row.get("middle_height_mm")
        grade, probabilities = row.get("pfirrmann_grade"), row.get("pfirrmann_probabilities")
        graded = f"{'uncertain' if grade is None else grade} ({max(probabilities):.0%})" if probabilities else "-"
        name = row["name"] if row.get("segmented", True) else f"{row['name']} (not segmented)"
        rows.append((name, text(height, "{:.1f}"), text(row.get("height_index"), "{:.2f}"), graded,
                     text(row.get("mean_uncertainty"), "{:.2f}")))
    return rows
