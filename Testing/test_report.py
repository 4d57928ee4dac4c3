"""The level report module: the one place for the level kinds, their structures and order, the entry fields and
derived measures, the report's JSON and both CSV files; checked on the levels of a real run (the pipeline's own
assessment of the bundled sample's reference segmentation)."""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO

from SpineSegDiffLib.anatomy import measurements, report
from SpineSegDiffLib.anatomy.conventions import NOT_SEGMENTED
from SpineSegDiffLib.anatomy.report import (
    DISC,
    KINDS,
    LEVELS_CSV,
    SLICES_CSV,
    VERTEBRA,
    LevelEntry,
    LevelReport,
    flat,
    level_rows,
    structure_of,
    write_levels_csv,
    write_slice_levels_csv,
)
from SpineSegDiffLib.labels import by_key

SAMPLE = REPO / "Resources" / "Samples" / "spider_t2_sample"
LIB = REPO / "SpineSegDiff" / "SpineSegDiffLib"
READERS = [LIB / "outputs" / "dicom_seg.py", LIB / "outputs" / "preview.py", LIB / "labels.py",
           LIB / "anatomy" / "volume_levels.py", LIB / "anatomy" / "measurements.py", LIB / "anatomy" / "assessment.py",
           REPO / "SpineSegDiff" / "SpineSegDiffSlicer" / "levels_mrml.py"]
"""The modules that used to hold their own copy of the kinds, their structures, order or CSV rules."""
HEAD = ["name", "from_bottom", "segmented", "label_value"]
VERTEBRA_KEYS = [*HEAD, "anterior_height_mm", "middle_height_mm", "posterior_height_mm", "depth_mm", "mean_uncertainty",
                 "centroid_lps_mm", "lines_lps_mm", "not_measured"]
DISC_KEYS = [*HEAD, "anterior_height_mm", "middle_height_mm", "posterior_height_mm", "mean_height_mm",
             "dural_sac_ap_diameter_mm", "mean_uncertainty", "height_index", "slip_mm", "slip_percent",
             "meyerding_grade", "slip_reference", "pfirrmann_grade", "pfirrmann_probabilities", "narrowing_probability",
             "modic_probability", "reading", "centroid_lps_mm", "lines_lps_mm", "not_measured"]
"""A report entry's keys, in order (``not_measured``, why a null measure is null, last)."""
LEVELS_HEADER = ("structure,name,from_bottom,segmented,label_value,anterior_height_mm,middle_height_mm,"
                 "posterior_height_mm,depth_mm,mean_uncertainty,centroid_lps_mm,mean_height_mm,dural_sac_ap_diameter_mm,"
                 "height_index,slip_mm,slip_percent,meyerding_grade,slip_reference,pfirrmann_grade,"
                 "pfirrmann_probabilities,narrowing_probability,modic_probability_experimental,reading,not_measured")
SLICES_HEADER = ("slice_index,model_slice,name,kind,from_bottom,segmented,label_value,anterior_height_mm,"
                 "middle_height_mm,posterior_height_mm,mean_height_mm,dural_sac_ap_diameter_mm,mean_uncertainty,"
                 "height_index,slip_mm,slip_percent,meyerding_grade,slip_reference,reading,depth_mm,not_measured")


@pytest.fixture(scope="module")
def run():
    """The levels part of a real run: the pipeline's ``_assess`` (central slice assessed with the bundled grader
    and mapped to patient coordinates, levels tracked and measured through every slice) on the sample's reference
    labels in model space."""
    from SpineSegDiffLib.anatomy.grading import DiscGrader
    from SpineSegDiffLib.inference.pipeline import Segmenter
    from SpineSegDiffLib.inference.preprocess import labels_to_model_space, to_model_space
    from SpineSegDiffLib.modelset.model_set import open_models

    image, geometry = to_model_space(sitk.ReadImage(str(SAMPLE / "image.nii.gz")), "all")
    labels = labels_to_model_space(sitk.Cast(sitk.ReadImage(str(SAMPLE / "mask.nii.gz")), sitk.sitkUInt8), geometry)
    result = SimpleNamespace(model_image=image, model_labels=labels, geometry=geometry,
                             model_uncertainty=np.linspace(0, 1, labels.size, dtype=np.float32).reshape(labels.shape),
                             slice_indices=geometry.slice_indices, slice_levels=None)
    grader = DiscGrader(open_models(REPO / "Resources" / "Models").grader)
    Segmenter._assess(SimpleNamespace(grader=grader), result)
    return result


def test_each_kind_has_one_structure_report_list_and_code():
    assert [(k.name, k.group, k.structure) for k in KINDS] == [(VERTEBRA, "vertebrae", by_key("VB")),
                                                               (DISC, "discs", by_key("IVD"))]
    assert structure_of(DISC).color == by_key("IVD").color
    assert report.level_terminology(DISC, "L4/L5") == by_key("IVD").terminology
    assert report.level_terminology(VERTEBRA, "C3") == by_key("VB").terminology
    with pytest.raises(ValueError, match="kind"):
        structure_of("rib")


def test_levels_are_ordered_from_the_sacrum_up():
    levels = {"vertebrae": [{"name": n, "from_bottom": i} for i, n in enumerate(("S1", "L5", "L4"))],
              "discs": [{"name": n, "from_bottom": i} for i, n in ((1, "L5/S1"), (2, "L4/L5"))]}
    assert [row["name"] for row in level_rows(levels)] == ["S1", "L5/S1", "L5", "L4/L5", "L4"]
    assert [row["kind"] for row in level_rows(levels)] == [VERTEBRA, DISC] * 2 + [VERTEBRA]
    assert [report.bottom_up_position(r["kind"], r["from_bottom"]) for r in level_rows(levels)] == list(range(5))


def string_constants(path: Path) -> set[str]:
    """The string literals of a module's code (docstrings left out)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                  and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings}


@pytest.mark.parametrize("path", READERS, ids=lambda p: p.name)
def test_modules_reading_levels_hold_no_copy_of_kinds_order_or_csv_rules(path):
    copies = {"vertebra", "disc", "vertebrae", "discs", "structure", ";"}
    assert not string_constants(path) & (copies if path.name == "labels.py" else copies | {"VB", "IVD"})
    defined = {node.name for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.FunctionDef)}
    assert not defined & {"flat", "bottom_up_position", "write_levels_csv", "write_slice_levels_csv", "level_kind"}


def test_a_real_runs_levels_round_trip_exactly(run):
    levels = run.levels
    assert list(levels) == ["naming_uncertain", "naming_reasons", "naming_rules", "vertebrae", "discs"]
    typed = LevelReport.from_dict(levels)
    assert typed.to_dict() == levels
    assert json.dumps(typed.to_dict()) == json.dumps(levels)  # same keys in the same order, same values
    assert LevelReport.from_dict(json.loads(json.dumps(levels))).to_dict() == json.loads(json.dumps(levels))
    assert len(typed.discs) >= 5 and all(d.graded and d.in_patient for d in typed.discs)
    for key, expected in (("vertebrae", VERTEBRA_KEYS), ("discs", DISC_KEYS)):
        assert all(list(entry) == expected for entry in levels[key] if entry["segmented"])
    assert [e.name for e in typed.bottom_up()] == [r["name"] for r in level_rows(levels)]


def test_entries_of_levels_not_segmented_report_what_they_always_did():
    vertebra = LevelEntry(VERTEBRA, "L3", 3, centroid=(1.0, 2.0)).in_patient_space(lambda r, c: (0.0, r, c))
    disc = LevelEntry(DISC, "L3/L4", 3, centroid=(1.0, 2.0)).with_grades(None)
    assert list(vertebra.to_dict()) == [*HEAD, "mean_uncertainty", "centroid_lps_mm", "lines_lps_mm", "not_measured"]
    assert vertebra.to_dict()["centroid_lps_mm"] == [0.0, 1.0, 2.0] and vertebra.to_dict()["segmented"] is False
    assert list(disc.to_dict()) == [*HEAD, "centroid_px", *DISC_KEYS[9:-3], "not_measured"]
    assert disc.to_dict()["not_measured"] == dict.fromkeys(DISC_KEYS[9:-4], NOT_SEGMENTED)
    assert disc.to_dict()["reading"] == "L3/L4: not measured"
    with pytest.raises(ValueError, match="unknown"):
        LevelEntry.from_dict(DISC, {**disc.to_dict(), "disc_volume_mm3": 1.0})


def test_derived_measures_use_the_report_formulas(run):
    assert measurements.mean_height is report.mean_height and measurements.height_index is report.height_index
    depths = {v["from_bottom"]: v.get("depth_mm") for v in run.levels["vertebrae"]}
    measured = [d for d in run.levels["discs"] if d["segmented"]]
    for disc in measured:
        assert disc["mean_height_mm"] == report.mean_height([disc[key] for key in report.HEIGHT_KEYS])
        assert disc["height_index"] == report.height_index(disc["mean_height_mm"], depths.get(disc["from_bottom"]))
    assert any(d["height_index"] is not None for d in measured)
    assert report.height_index(10.0, None) is None and report.height_index(10.0, float("nan")) is None


def test_both_csv_files_keep_their_headers_and_share_one_row_rule(run, tmp_path):
    write_levels_csv(run.levels, tmp_path / "levels.csv")
    write_slice_levels_csv(run.slice_levels, tmp_path / "slices.csv")
    levels_lines = (tmp_path / "levels.csv").read_text().splitlines()
    assert levels_lines[0] == LEVELS_HEADER and len(levels_lines) == 1 + len(report.kind_entries(run.levels))
    assert (tmp_path / "slices.csv").read_text().splitlines()[0] == SLICES_HEADER
    with open(tmp_path / "levels.csv", newline="") as stream:
        first_disc = next(row for row in csv.DictReader(stream) if row["structure"] == DISC)
    disc = run.levels["discs"][0]
    assert first_disc["centroid_lps_mm"] == ";".join(map(str, disc["centroid_lps_mm"]))
    assert first_disc["pfirrmann_probabilities"] == ";".join(map(str, disc["pfirrmann_probabilities"]))
    assert (LEVELS_CSV.kind_column, SLICES_CSV.kind_column) == ("structure", "kind")
    write_levels_csv({}, tmp_path / "none.csv")
    assert (tmp_path / "none.csv").read_bytes() == b"\r\n"


def test_flat_keeps_scalars_joins_lists_and_leaves_out_nested_values_and_pixels():
    entry = {"name": "L4", "mean": np.float64(1.5), "p": [0.25, 0.75], "lines_lps_mm": {"depth": [[1, 2], [3, 4]]},
             "centroid_px": (1.0, 2.0), "lines_px": {}}
    row = flat(entry)
    assert row == {"name": "L4", "mean": 1.5, "p": "0.25;0.75"} and type(row["mean"]) is float


def test_slicer_table_columns_are_entry_keys():
    keys = [key for _, key in report.TABLE_COLUMNS]
    assert set(keys) <= {"from_bottom"} | {m.name for m in report.MEASURES} and len(set(keys)) == len(keys)
    assert set(report.HEIGHT_KEYS) < set(keys)
