"""The grader's evaluation: baselines fitted in the training folds only, scores that can fail, repeats that pool."""

import numpy as np
import pytest

from SpineSegDiffTraining.grading_evaluation import always_grade_3, disc_order, level_only, scores


def samples(levels, grades, narrowing=None, patients=None) -> dict[str, np.ndarray]:
    count = len(levels)
    return {"level": np.array(levels, float), "grade": np.array(grades, float),
            "narrowing": np.array(narrowing if narrowing is not None else [0] * count, float),
            "modic": np.zeros(count), "patient": np.array(patients if patients is not None else range(count), float)}


def test_level_only_predicts_each_levels_training_distribution():
    train = samples([1, 1, 1, 2], [3, 3, 2, 1], narrowing=[1, 1, 0, 0])
    predicted = level_only(train, samples([1, 2, 3], [0, 0, 0]))
    assert predicted["pfirrmann"][0] == pytest.approx(np.array([1, 1, 2, 3, 1]) / 8)  # add-one smoothed counts
    assert predicted["pfirrmann"][2] == pytest.approx(np.full(5, 0.2))  # a level never seen: uniform
    assert predicted["narrowing"][0] == pytest.approx(2.5 / 4) and predicted["narrowing"][1] == pytest.approx(0.25)


def test_always_grade_3_has_no_agreement_beyond_chance_and_a_perfect_grader_has_all():
    truth = samples([1, 2, 3, 4], [0, 1, 2, 4])
    constant = scores(always_grade_3(4), truth)
    assert constant["quadratic_kappa"] == 0 and constant["exact"] == 0.25 and constant["within_one"] == 0.5
    perfect = scores({"pfirrmann": np.eye(5)[[0, 1, 2, 4]]}, truth)
    assert perfect == {"quadratic_kappa": 1.0, "exact": 1.0, "within_one": 1.0}


def test_discs_are_listed_in_one_order_whatever_the_folds():
    truth = samples([2, 1, 1], [0, 0, 0], patients=[5, 5, 3])
    assert list(disc_order(truth)) == [2, 1, 0]
