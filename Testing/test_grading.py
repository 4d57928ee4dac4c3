"""The bundled disc grader: weights-only loading, valid outputs; kappa and crops on synthetic data."""

import numpy as np
import pytest
import torch
from test_levels import synthetic_slice

from SpineSegDiffLib.grading import CROP, GRADES, DiscGrader, disc_crop
from SpineSegDiffLib.levels import find_levels
from SpineSegDiffLib.models import DEFAULT_MODELS_DIR, open_model_folder
from SpineSegDiffTraining.grading_report import quadratic_kappa


@pytest.fixture(scope="module")
def grader():
    return DiscGrader(open_model_folder(DEFAULT_MODELS_DIR / "disc-grading-t2", "grading"))


def test_bundled_grader_is_small_and_loads_weights_only(grader):
    weights = grader.model.file("weights.pt")
    assert weights.stat().st_size < 2_000_000
    state = torch.load(weights, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert "pfirrmann_quadratic_kappa" in grader.model.config["metrics"]


def test_grades_are_valid_distributions(grader):
    labels, image = synthetic_slice()
    image = np.where(labels == 3, 200.0, np.where(labels == 2, 120.0, 40.0)).astype(np.float32)
    levels = find_levels(labels, image)
    grades = grader.grade(image, labels, levels)
    assert sorted(grades) == [1, 2, 3, 4, 5]
    for entry in grades.values():
        probabilities = np.array(entry["pfirrmann_probabilities"])
        assert probabilities.shape == (len(GRADES),) and np.all(probabilities >= 0)
        assert abs(probabilities.sum() - 1) < 1e-3
        assert entry["pfirrmann_grade"] == GRADES[int(np.argmax(probabilities))]
        assert 0 <= entry["narrowing_probability"] <= 1 and 0 <= entry["modic_probability"] <= 1


def test_disc_crop_is_centred_and_padded_at_the_border():
    image = np.zeros((320, 320), np.float32)
    labels = np.zeros((320, 320), np.uint8)
    mask = np.zeros((320, 320), bool)
    mask[5:10, 0:20] = True
    crop = disc_crop(image, labels, mask, (7.0, 10.0))
    assert crop.shape == (3, *CROP)
    assert crop[1].sum() == mask.sum()  # the whole disc is inside, the rest padded
    assert crop[1, CROP[0] // 2, CROP[1] // 2] == 1


def test_quadratic_kappa():
    truth = np.array([0, 1, 2, 3, 4, 2])
    assert quadratic_kappa(truth, truth) == pytest.approx(1.0)
    assert quadratic_kappa(truth, 4 - truth) < 0
