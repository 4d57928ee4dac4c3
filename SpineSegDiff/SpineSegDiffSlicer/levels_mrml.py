"""The report's per-level assessment as a Slicer table: one row per vertebra and disc, bottom-up.

The rows come from the report's ``"vertebrae"`` and ``"discs"`` lists (see
``SpineSegDiffLib.measurements.measure_levels`` and ``SpineSegDiffLib.assessment.assess_slice``);
lengths are in mm as the report gives them, and a value the report leaves out (a level that was not
segmented, a grade without the grading model) is NaN. The table node is marked with
:data:`~.logic.ROLE_ATTRIBUTE` ``levels`` and references its input volume, so a re-run on the same
volume updates it instead of adding another.
"""

from __future__ import annotations

import math

import vtk

from .logic import INPUT_ROLE, ROLE_ATTRIBUTE

LEVELS_ROLE = "levels"
TABLE_SUFFIX = " SpineSegDiff levels"
TEXT_COLUMNS = (("Level", "name"), ("Kind", "kind"))
NUMBER_COLUMNS = (
    ("From bottom", "from_bottom"),
    ("Anterior height (mm)", "anterior_height_mm"),
    ("Middle height (mm)", "middle_height_mm"),
    ("Posterior height (mm)", "posterior_height_mm"),
    ("Mean height (mm)", "mean_height_mm"),
    ("Depth (mm)", "depth_mm"),
    ("Height index", "height_index"),
    ("Canal AP diameter (mm)", "canal_ap_diameter_mm"),
    ("Slip (mm)", "slip_mm"),
    ("Slip (%)", "slip_percent"),
    ("Pfirrmann grade", "pfirrmann_grade"),
    ("Narrowing probability", "narrowing_probability"),
    ("Mean uncertainty", "mean_uncertainty"),
)
"""``(column name, report key)``; units are part of the column names."""


def level_rows(report: dict) -> list[dict]:
    """The report's vertebrae and discs, bottom-up (S1, L5/S1, L5, L4/L5, ...), each with its ``kind``."""
    vertebrae = [{**v, "kind": "vertebra"} for v in report.get("vertebrae") or []]
    discs = [{**d, "kind": "disc"} for d in report.get("discs") or []]
    # vertebra n sits above disc n (disc n lies between vertebrae n - 1 and n)
    return sorted(vertebrae + discs, key=lambda row: 2 * row["from_bottom"] - (row["kind"] == "disc"))


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
            column.InsertNextValue(str(row.get(key, "")))
        table.AddColumn(column)
    for title, key in NUMBER_COLUMNS:
        column = vtk.vtkDoubleArray()
        column.SetName(title)
        for row in rows:
            column.InsertNextValue(_number(row.get(key)))
        table.AddColumn(column)
    return table


def find_levels_table(scene, volume_node):
    """The levels table of the last result made from ``volume_node``, or None."""
    for node in _table_nodes(scene):
        if node.GetAttribute(ROLE_ATTRIBUTE) == LEVELS_ROLE and node.GetNodeReference(INPUT_ROLE) is volume_node:
            return node
    return None


def _table_nodes(scene) -> list:
    nodes = scene.GetNodesByClass("vtkMRMLTableNode")
    return [nodes.GetItemAsObject(i) for i in range(nodes.GetNumberOfItems())]


def update_levels_table(scene, volume_node, report: dict, new_node: bool = False):
    """The report's levels in the volume's levels table (updated in place unless ``new_node``), or None when
    the report has no levels (an existing table is then left as it is)."""
    if not (report.get("vertebrae") or report.get("discs")):
        return None
    node = None if new_node else find_levels_table(scene, volume_node)
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", volume_node.GetName() + TABLE_SUFFIX)
        node.SetAttribute(ROLE_ATTRIBUTE, LEVELS_ROLE)
        node.SetNodeReferenceID(INPUT_ROLE, volume_node.GetID())
    node.SetAndObserveTable(levels_table(report))
    node.SetUseColumnNameAsColumnHeader(True)
    node.SetLocked(True)
    return node
