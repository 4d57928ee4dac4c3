"""A disc's report line: what it states, what it leaves out, and a dural sac diameter edited in Slicer."""

import pytest

from SpineSegDiffLib.anatomy.reading import disc_reading, with_dural_sac

GRADED = {"name": "L4/L5", "pfirrmann_grade": 3, "pfirrmann_probabilities": [0.05, 0.2, 0.52, 0.2, 0.03],
          "narrowing_probability": 0.71, "modic_probability": 0.4, "slip_mm": 4.1, "slip_percent": 12.4,
          "meyerding_grade": 1, "dural_sac_ap_diameter_mm": 11.2}


def test_a_graded_disc_reads_as_a_radiologist_dictates_it():
    assert disc_reading(GRADED) == ("L4/L5: Pfirrmann 3 (52 %); narrowing 71 %; anterolisthesis Meyerding I (12 %, "
                                    "4.1 mm); dural sac 11.2 mm AP")
    assert "Modic" not in disc_reading(GRADED)  # experimental: never in the line to paste


def test_an_abstained_grade_says_uncertain_with_the_top_probability():
    entry = GRADED | {"pfirrmann_grade": None, "pfirrmann_probabilities": [0.1, 0.3, 0.38, 0.2, 0.02]}
    assert disc_reading(entry).startswith("L4/L5: Pfirrmann uncertain (3: 38 %); narrowing 71 %")


@pytest.mark.parametrize("missing", ["pfirrmann_probabilities", "narrowing_probability", "meyerding_grade",
                                     "dural_sac_ap_diameter_mm"])
def test_a_measure_not_taken_is_left_out_not_invented(missing):
    reading = disc_reading(GRADED | {missing: None})
    dropped = {"pfirrmann_probabilities": "Pfirrmann", "narrowing_probability": "narrowing",
               "meyerding_grade": "listhesis", "dural_sac_ap_diameter_mm": "dural sac"}[missing]
    assert dropped not in reading and reading.startswith("L4/L5: ")


def test_no_slip_and_nothing_measured():
    assert "no anterolisthesis" in disc_reading(GRADED | {"meyerding_grade": 0, "slip_percent": -3.0, "slip_mm": -1.0})
    assert disc_reading({"name": "L5/S1"}) == "L5/S1: not measured"


def test_an_edited_dural_sac_diameter_replaces_the_measured_one():
    assert with_dural_sac(disc_reading(GRADED), 8.0).endswith("; dural sac 8.0 mm AP")
    assert with_dural_sac("L5/S1: not measured", 9.5) == "L5/S1: dural sac 9.5 mm AP"
