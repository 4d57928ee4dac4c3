"""A measure that could not be taken is null with its reason, never a 0.0 placeholder: in the report, both CSV files
and the conventions every measure follows (README); the report's ``models`` names the disc grader."""

from __future__ import annotations

import csv
import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO
from test_report import SAMPLE, run  # noqa: F401  (the levels of a real run)

from SpineSegDiffLib.anatomy import conventions, report
from SpineSegDiffLib.anatomy.assessment import assess_slice
from SpineSegDiffLib.anatomy.conventions import NO_DURAL_SAC, NOT_MEASURED
from SpineSegDiffLib.anatomy.report import write_levels_csv, write_slice_levels_csv
from SpineSegDiffLib.labels import by_key

SAC = "dural_sac_ap_diameter_mm"
SIGNED = {"slip_mm", "slip_percent", "meyerding_grade"}
"""Measures for which 0 is a value (no slip), not a placeholder."""
LENGTHS = {key for key, c in conventions.CONVENTIONS.items() if c.unit in ("mm", "ratio")} - SIGNED
"""Lengths, heights, diameters and the height index: never 0.0."""
GRADE_KEYS = [m.name for m in report.GRADES]


def read_csv(path) -> list[dict]:
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream))


@pytest.fixture(scope="module")
def sample_slice():
    """The central sagittal slice of the bundled sample's reference labels and image, in model space."""
    from SpineSegDiffLib.inference.preprocess import labels_to_model_space, to_model_space

    image, geometry = to_model_space(sitk.ReadImage(str(SAMPLE / "image.nii.gz")), "all")
    labels = labels_to_model_space(sitk.Cast(sitk.ReadImage(str(SAMPLE / "mask.nii.gz")), sitk.sitkUInt8), geometry)
    k = len(labels) // 2
    return image[k], labels[k]


@pytest.fixture(scope="module")
def missed(sample_slice):
    """The real slice assessed twice: as labelled, and with the dural sac erased 25 rows above and below L3/L4,
    so that the line behind that disc meets none."""
    image, labels = sample_slice
    before = assess_slice(image, labels)
    disc = next(d for d in before["discs"] if d["name"] == "L3/L4")
    erased = labels.copy()
    row = int(round(disc["centroid_px"][0]))
    band = erased[max(row - 25, 0):row + 26]
    band[band == by_key("SC").value] = 0
    return before, assess_slice(image, erased)


def test_a_disc_whose_line_misses_the_dural_sac_is_null_with_its_reason(missed, tmp_path):
    before, after = missed
    assert [d["name"] for d in after["discs"]] == [d["name"] for d in before["discs"]]
    assert all(d[SAC] is not None and d[SAC] > 0 for d in before["discs"] if d["segmented"])
    disc = next(d for d in after["discs"] if d["name"] == "L3/L4")
    assert disc[SAC] is None and disc[NOT_MEASURED] == {SAC: NO_DURAL_SAC, "mean_uncertainty": conventions.NO_HEATMAP,
                                                        **dict.fromkeys(GRADE_KEYS, conventions.NO_GRADER)}
    assert "dural_sac_ap_diameter" not in disc["lines_px"]
    others = [d for d in after["discs"] if d["name"] != "L3/L4" and d["segmented"]]
    assert others and all(d[SAC] is not None and SAC not in d[NOT_MEASURED] for d in others)
    write_levels_csv(after, tmp_path / "levels.csv")
    row = next(r for r in read_csv(tmp_path / "levels.csv") if r["name"] == "L3/L4")
    assert row[SAC] == "" and row[NOT_MEASURED].startswith(f"{SAC}: {NO_DURAL_SAC}; mean_uncertainty: ")
    assert list(row)[-1] == NOT_MEASURED


def assert_no_placeholders(entries: list[dict]) -> None:
    """No length, height, diameter or index of 0.0; every null measure with a reason of its own."""
    for entry in entries:
        assert all(entry[key] != 0.0 for key in LENGTHS & set(entry)), entry["name"]
        nulls = {key for key, value in entry.items() if key in conventions.CONVENTIONS and value is None}
        assert set(entry[NOT_MEASURED]) == nulls, entry["name"]
        assert conventions.UNKNOWN not in entry[NOT_MEASURED].values(), entry["name"]


def test_a_real_runs_report_and_csv_files_hold_no_zero_placeholders(run, tmp_path):  # noqa: F811
    assert_no_placeholders(run.levels["vertebrae"] + run.levels["discs"])
    per_slice = run.slice_levels
    assert any(r.get(SAC) is None for r in per_slice)  # lateral slices: the line behind the disc meets no sac
    write_levels_csv(run.levels, tmp_path / "levels.csv")
    write_slice_levels_csv(per_slice, tmp_path / "slices.csv")
    for name in ("levels.csv", "slices.csv"):
        rows = read_csv(tmp_path / name)
        for row in rows:
            assert all(row[key] == "" or float(row[key]) != 0.0 for key in LENGTHS & set(row)), row["name"]
            kind = row.get("kind", row.get("structure"))
            carried = [m.name for m in report.MEASURES if kind in m.metadata["kinds"]]
            if row["segmented"] == "True":  # every measure of its kind is reported: an empty one says why
                assert all(f"{key}: " in row[NOT_MEASURED] for key in carried if row.get(key) == ""), row["name"]
            if kind == report.DISC and row[SAC] == "":
                assert f"{SAC}: {NO_DURAL_SAC}" in row[NOT_MEASURED]
        assert any(row[NOT_MEASURED] for row in rows)


def test_every_measure_has_one_convention_and_the_readme_gives_them():
    assert list(conventions.CONVENTIONS) == [m.name for m in report.MEASURES]
    assert ("Dural sac AP diameter (mm)", SAC) in report.TABLE_COLUMNS
    assert all(title == conventions.CONVENTIONS[key].column for title, key in report.TABLE_COLUMNS[1:])
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert conventions.conventions_table() in readme and "canal_ap_diameter" not in readme
    assert report.mean_height is conventions.mean_height and report.height_index is conventions.height_index


def test_the_reports_models_name_the_grader_with_its_checksum():
    from SpineSegDiffLib.inference.pipeline import Segmenter
    from SpineSegDiffLib.modelset.model_set import open_models

    models = open_models(REPO / "Resources" / "Models")
    described = Segmenter.model_description(SimpleNamespace(models=models))
    assert described["grader"] == models.grader.model_id == "disc-grading-t2"
    model_file = models.grader.file("model.json").read_bytes()
    assert described["grader_sha256"] == hashlib.sha256(model_file).hexdigest()
    without = Segmenter.model_description(SimpleNamespace(models=SimpleNamespace(**{**vars(models), "grader": None})))
    assert "grader" not in without and "grader_sha256" not in without


def test_measures_without_a_heatmap_or_a_body_below_say_why(sample_slice):
    image, labels = sample_slice
    levels = assess_slice(image, labels)
    lowest = levels["discs"][0]
    assert lowest["name"] == "L5/S1" and lowest["slip_mm"] is not None  # no sacrum labelled: on the disc's floor
    assert lowest["slip_reference"].startswith("S1 superior endplate, taken as the L5/S1 disc's lower surface")
    assert all(e[NOT_MEASURED]["mean_uncertainty"] == conventions.NO_HEATMAP
               for e in levels["vertebrae"] + levels["discs"] if e["segmented"])
    assert np.isfinite([d["height_index"] for d in levels["discs"][:-1]]).all()
