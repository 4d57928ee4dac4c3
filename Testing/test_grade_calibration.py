"""Grades say how sure they are: calibrated probabilities, abstaining below the threshold, no grades when the naming
is uncertain, Modic marked experimental wherever it is shown; the calibration maths on synthetic data."""

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SHARED_DATA
from test_grading import t2_slice
from test_levels import SC

from SpineSegDiffLib.anatomy.assessment import assess_report
from SpineSegDiffLib.anatomy.calibration import CALIBRATION_KEY, Calibration, tempered
from SpineSegDiffLib.anatomy.contrast import canal_to_vertebra, not_t2
from SpineSegDiffLib.anatomy.conventions import CONVENTIONS, EXPERIMENTAL
from SpineSegDiffLib.anatomy.grading import GRADES, DiscGrader
from SpineSegDiffLib.anatomy.levels import find_levels
from SpineSegDiffLib.anatomy.report import TABLE_COLUMNS, write_levels_csv
from SpineSegDiffLib.modelset.folder import DEFAULT_MODELS_DIR, open_model_folder
from SpineSegDiffTraining.grading_calibration import (
    abstain_threshold,
    bootstrap_interval,
    calibration_summary,
    expected_calibration_error,
    fit_temperature,
    write_calibration,
)

SPIDER = SHARED_DATA / "spider-t2space"


def grader_with(tmp_path, **calibration) -> DiscGrader:
    """The bundled grader, copied, with ``calibration`` as its config's calibration block."""
    folder = tmp_path / "disc-grading-t2"
    shutil.copytree(DEFAULT_MODELS_DIR / "disc-grading-t2", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, CALIBRATION_KEY: calibration}))
    return DiscGrader(open_model_folder(folder, "grading"))


def test_temperature_one_is_the_identity_and_a_higher_one_softens():
    p = np.array([[0.7, 0.2, 0.05, 0.03, 0.02]])
    assert np.allclose(tempered(p, 1.0), p)
    assert tempered(p, 2.0).max() < 0.7 and np.isclose(tempered(p, 2.0).sum(), 1.0)


def test_a_grade_below_the_threshold_is_withheld_with_its_reason():
    calibration = Calibration(1.0, 0.4)
    assert calibration.grade(np.array([0.1, 0.2, 0.45, 0.2, 0.05]), GRADES) == (3, None)
    grade, why = calibration.grade(np.array([0.1, 0.3, 0.37, 0.2, 0.03]), GRADES)
    assert grade is None and why == "uncertain (top probability 0.37 < 0.40)"
    assert Calibration.from_config({}) == Calibration(1.0, 0.0)


def test_the_grader_abstains_but_still_reports_the_probabilities(tmp_path):
    image, labels = t2_slice()
    levels = find_levels(labels, image)
    report = assess_report(levels, image, labels, grader=grader_with(tmp_path, temperature=1.0, abstain_below=0.99))
    discs = [d.to_dict() for d in report.discs if d.segmented]
    assert discs and all(d["pfirrmann_grade"] is None and len(d["pfirrmann_probabilities"]) == 5 for d in discs)
    assert all(d["not_measured"]["pfirrmann_grade"].startswith("uncertain (top probability") for d in discs)
    assert all("pfirrmann_probabilities" not in d["not_measured"] for d in discs)


def test_no_grades_when_the_naming_is_uncertain_and_the_reason_says_so(tmp_path):
    image, labels = t2_slice()
    levels = find_levels(labels, image)
    levels.reasons = ["the lowest disc is not above the sacrum"]
    report = assess_report(levels, image, labels, grader=grader_with(tmp_path))
    for disc in (d.to_dict() for d in report.discs if d.segmented):
        grades = ("pfirrmann_grade", "pfirrmann_probabilities", "narrowing_probability", "modic_probability")
        assert all(disc[key] is None for key in grades)
        why = disc["not_measured"]["pfirrmann_grade"]
        assert why == "level naming uncertain: the lowest disc is not above the sacrum"


def test_no_grades_on_a_t1_like_contrast_and_the_reason_says_so(tmp_path):
    image, labels = t2_slice()
    t1_like = np.where(labels == SC, 60.0, image).astype(np.float32)  # CSF darker than bone, as on T1
    assert canal_to_vertebra(image, labels) == pytest.approx(250 / 120) and not_t2(image, labels) is None
    assert canal_to_vertebra(t1_like, labels) == pytest.approx(0.5)
    report = assess_report(find_levels(labels, t1_like), t1_like, labels, grader=grader_with(tmp_path))
    for disc in (d.to_dict() for d in report.discs if d.segmented):
        assert disc["pfirrmann_grade"] is None and disc["narrowing_probability"] is None
        assert disc["not_measured"]["pfirrmann_grade"].startswith("the image does not look T2-weighted")


def test_the_bundled_t2_sample_and_every_spider_series_pass_the_contrast_check():
    from test_not_measured import SAMPLE

    from SpineSegDiffLib.inference.preprocess import labels_to_model_space, to_model_space

    folders = [SAMPLE, *sorted(SPIDER.glob("spider_*"))] if SPIDER.is_dir() else [SAMPLE]
    for folder in folders:
        images, geometry = to_model_space(sitk.ReadImage(str(folder / "image.nii.gz")), "all")
        labels = labels_to_model_space(sitk.Cast(sitk.ReadImage(str(folder / "mask.nii.gz")), sitk.sitkUInt8),
                                       geometry)
        k = len(labels) // 2
        assert canal_to_vertebra(images[k], labels[k]) >= 1.0, folder.name


def test_modic_is_marked_experimental_in_conventions_csv_and_table(tmp_path):
    image, labels = t2_slice()
    report = assess_report(find_levels(labels, image), image, labels, grader=grader_with(tmp_path)).to_dict()
    assert "modic_probability" in report["discs"][0]
    assert EXPERIMENTAL in CONVENTIONS["modic_probability"].title
    assert CONVENTIONS["modic_probability"].definition.startswith("EXPERIMENTAL")
    write_levels_csv(report, tmp_path / "levels.csv")
    with open(tmp_path / "levels.csv", newline="") as stream:
        header = next(csv.reader(stream))
    assert "modic_probability_experimental" in header and "modic_probability" not in header
    assert ("Modic probability (experimental)", "modic_probability") in TABLE_COLUMNS


def overconfident(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probabilities sharper than the truth: classes drawn from softmax(z), reported as softmax(3 z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 5))
    true_p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(5, p=p) for p in true_p])
    return tempered(true_p, 1 / 3), truth, np.repeat(np.arange(n // 10), 10)


def test_temperature_fit_undoes_overconfidence_and_lowers_the_calibration_error():
    reported, truth, patients = overconfident()
    temperature = fit_temperature(reported, truth)
    assert 2.4 < temperature < 3.6
    assert expected_calibration_error(tempered(reported, temperature), truth) < expected_calibration_error(reported,
                                                                                                          truth)
    summary = calibration_summary(reported, truth, patients)
    assert summary["ece_after"] < summary["ece_before"] and summary["ece_after_95ci"][0] <= summary["ece_after"]
    low, high = bootstrap_interval(lambda rows: truth[rows].mean(), patients)
    assert low <= truth.mean() <= high


def test_the_threshold_grades_the_most_discs_that_are_right_at_least_half_the_time():
    top = np.linspace(0.3, 0.9, 61)
    probabilities = np.stack([top, *(np.tile((1 - top) / 4, (4, 1)))], axis=1)
    truth = np.where(top < 0.7, 1, 0)  # wrong below 0.7 (40 discs), right from there (21 discs)
    assert abstain_threshold(probabilities, truth) == pytest.approx(0.49, abs=0.015)
    assert abstain_threshold(probabilities, np.zeros(61)) == 0.0


def test_the_calibration_is_written_into_the_config_only(tmp_path):
    folder = tmp_path / "disc-grading-t2"
    shutil.copytree(DEFAULT_MODELS_DIR / "disc-grading-t2", folder)
    write_calibration(folder, {"temperature": 1.5, "abstain_below": 0.4}, "test")
    grader = DiscGrader(open_model_folder(folder, "grading"))
    assert grader.calibration == Calibration(1.5, 0.4)
