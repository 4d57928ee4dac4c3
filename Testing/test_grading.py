"""The bundled disc grader: JSON-only loading, valid outputs; features, fits and kappa on synthetic data."""

import json

import numpy as np
import pytest
from test_levels import synthetic_slice

from SpineSegDiffLib.anatomy.grading import (
    FEATURE_NAMES,
    GRADES,
    MODEL_FILE,
    DiscGrader,
    core_mask,
    csf_reference,
    ordinal_probabilities,
    predict_heads,
    slice_features,
)
from SpineSegDiffLib.anatomy.levels import find_levels
from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.modelset.folder import DEFAULT_MODELS_DIR, ModelFolder, open_model_folder
from SpineSegDiffTraining.grading import (
    FLAG_CANDIDATES,
    GRADE_CANDIDATES,
    graded_rows,
    pipeline_rows,
    same_disc,
    select,
    to_samples,
)
from SpineSegDiffTraining.grading_fit import fit_binary, fit_ordinal, standardiser
from SpineSegDiffTraining.grading_report import (
    evaluation_metrics,
    kappa_interval,
    quadratic_kappa,
    source_comparison,
    source_table,
)

SC, VB, IVD = 1, 2, 3


@pytest.fixture(scope="module")
def grader():
    return DiscGrader(open_model_folder(DEFAULT_MODELS_DIR / "disc-grading-t2", "grading"))


def t2_slice(disc_signal: float = 200.0):
    """Synthetic T2-like slice: canal (CSF) 250, bodies 120, discs ``disc_signal``, background 40."""
    labels, _ = synthetic_slice()
    image = np.select([labels == SC, labels == VB, labels == IVD], [250.0, 120.0, disc_signal], 40.0)
    return image.astype(np.float32), labels


def feature(features: np.ndarray, name: str) -> np.ndarray:
    return features[:, FEATURE_NAMES.index(name)]


def test_bundled_grader_is_small_plain_json_with_metrics(grader):
    files = list(grader.model.config["files"])
    assert files == [MODEL_FILE] and grader.model.file(MODEL_FILE).stat().st_size < 200_000
    parameters = json.loads(grader.model.file(MODEL_FILE).read_text())
    assert set(parameters) == {"pfirrmann", "narrowing", "modic"}
    assert parameters["pfirrmann"]["kind"] in ("ordinal", "multinomial")
    metrics = grader.model.config["metrics"]
    assert {"pfirrmann_quadratic_kappa", "narrowing_auroc_model", "modic_auroc_model"} <= set(metrics)
    assert metrics["test_discs"] > 0 and "cross_validation" in metrics


def test_grades_are_valid_distributions(grader):
    image, labels = t2_slice()
    grades = grader.grade(image, labels, find_levels(labels, image))
    assert sorted(grades) == [1, 2, 3, 4, 5]
    for entry in grades.values():
        probabilities = np.array(entry["pfirrmann_probabilities"])
        assert probabilities.shape == (len(GRADES),) and np.all(probabilities >= 0)
        assert abs(probabilities.sum() - 1) < 1e-3
        assert entry["pfirrmann_grade"] == GRADES[int(np.argmax(probabilities))]
        assert 0 <= entry["narrowing_probability"] <= 1 and 0 <= entry["modic_probability"] <= 1


def test_grading_is_deterministic_and_dark_discs_grade_higher(grader):
    bright, labels = t2_slice(220.0)
    dark, _ = t2_slice(60.0)
    levels = find_levels(labels, bright)
    assert grader.grade(bright, labels, levels) == grader.grade(bright, labels, levels)
    mean_grade = {name: np.mean([np.dot(GRADES, g["pfirrmann_probabilities"]) for g in
                                 grader.grade(image, labels, levels).values()])
                  for name, image in (("bright", bright), ("dark", dark))}
    assert mean_grade["dark"] > mean_grade["bright"] + 0.5


def test_empty_slice_grades_nothing(grader):
    labels = np.zeros((320, 320), np.uint8)
    image = np.zeros((320, 320), np.float32)
    assert grader.grade(image, labels, find_levels(labels, image)) == {}


def test_features_of_synthetic_discs():
    image, labels = t2_slice(200.0)
    numbers, features = slice_features(image, labels, find_levels(labels, image))
    assert numbers == [1, 2, 3, 4, 5] and features.shape == (5, len(FEATURE_NAMES))
    assert np.allclose(feature(features, "mean_csf"), 200 / 250)
    assert np.allclose(feature(features, "core_csf"), 200 / 250)
    assert np.allclose(feature(features, "std_csf"), 0, atol=1e-5)
    assert np.allclose(feature(features, "bright_fraction"), 1) and np.allclose(feature(features, "dark_fraction"), 0)
    assert np.allclose(feature(features, "disc_to_bodies"), 200 / 120)
    assert np.allclose(feature(features, "relative_mean"), 1)
    assert np.allclose(feature(features, "mean_height_mm"), 10) and np.allclose(feature(features, "depth_mm"), 35)
    assert np.allclose(feature(features, "area_mm2"), 350) and np.allclose(feature(features, "level"), numbers)


def test_core_is_the_central_part_and_csf_comes_from_the_canal_near_the_disc():
    mask = np.zeros((50, 60), bool)
    mask[20:30, 10:50] = True  # 10 x 40 disc
    core = core_mask(mask)
    rows, cols = np.nonzero(core)
    assert core.sum() < mask.sum() / 2 and (core <= mask).all()
    assert rows.min() >= 22 and rows.max() <= 27 and cols.min() >= 19 and cols.max() <= 40
    labels = np.zeros((200, 60), np.uint8)
    labels[:, 55:58] = SC
    image = np.zeros((200, 60), np.float32)
    image[:100, 55:58], image[100:, 55:58] = 240.0, 90.0  # the canal differs far from the disc
    disc = np.zeros((200, 60), bool)
    disc[20:30, 10:50] = True
    assert csf_reference(image, labels, disc) == 240.0


def test_ordinal_probabilities_sum_to_one_and_shift_with_the_score():
    x = np.array([[-3.0], [0.0], [3.0]])
    probabilities = ordinal_probabilities(x, np.array([1.0]), np.array([-2.0, -1.0, 1.0, 2.0]))
    assert np.allclose(probabilities.sum(axis=1), 1) and np.all(probabilities >= 0)
    assert list(probabilities.argmax(axis=1)) == [0, 2, 4]


def test_fits_recover_an_ordered_signal_deterministically():
    generator = np.random.default_rng(0)
    signal = generator.normal(size=400)
    x = np.stack([signal, generator.normal(size=400)], axis=1)
    grade = np.digitize(signal + 0.3 * generator.normal(size=400), [-1.0, -0.3, 0.3, 1.0])
    first, second = fit_ordinal(x, grade, l2=0.01), fit_ordinal(x, grade, l2=0.01)
    assert first == second
    assert first["weights"][0] > 2 and abs(first["weights"][1]) < 0.5
    assert np.all(np.diff(first["thresholds"]) > 0)
    predicted = ordinal_probabilities(x, np.array(first["weights"]), np.array(first["thresholds"])).argmax(axis=1)
    assert quadratic_kappa(grade, predicted) > 0.8
    flag = fit_binary(x, grade >= 3, l2=0.01)
    assert flag["weights"][0] > 1


def synthetic_samples(patients: int = 10, discs: int = 6) -> dict[str, np.ndarray]:
    """Samples as ``disc_samples`` returns them, with the grade driven by ``core_csf``."""
    generator = np.random.default_rng(1)
    count = patients * discs
    features = generator.normal(size=(count, len(FEATURE_NAMES)))
    grade = np.digitize(-features[:, FEATURE_NAMES.index("core_csf")], [-1.0, -0.3, 0.3, 1.0]).astype(float)
    return {"features": features, "grade": grade, "narrowing": (grade >= 3).astype(float),
            "modic": (grade >= 4).astype(float), "patient": np.repeat(np.arange(patients), discs).astype(float),
            "offset": np.zeros(count), "height_index": features[:, FEATURE_NAMES.index("height_index")]}


def test_selection_tries_every_candidate_and_finds_the_signal():
    folds = [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    choice, table = select(synthetic_samples(), folds)
    assert len(table) == len(GRADE_CANDIDATES) + 2 * len(FLAG_CANDIDATES)
    assert set(choice) == {"pfirrmann", "narrowing", "modic"}
    best = max(row["quadratic_kappa"] for row in table if row["head"] == "pfirrmann")
    assert best > 0.8 and all(row["auroc"] > 0.8 for row in table if row["head"] == "narrowing")


def test_standardiser_fills_nan_with_the_median():
    features = np.array([[1.0, np.nan], [3.0, 2.0], [5.0, 4.0]])
    scaling = standardiser(features)
    assert scaling["median"] == [3.0, 3.0] and scaling["mean"][1] == 3.0


def toy_model() -> dict:
    """Grade from ``core_csf``, narrowing from ``height_index``, Modic constant."""
    return {"pfirrmann": {"kind": "multinomial", "features": ["core_csf"], "weights": [[-1.0], [0], [0], [0], [1.0]],
                          "bias": [0.0] * 5, "scaling": {"median": [0.5], "mean": [0.5], "scale": [0.1]}},
            "narrowing": {"features": ["height_index"], "weights": [-1.0], "bias": 0.0,
                          "scaling": {"median": [0.3], "mean": [0.3], "scale": [0.1]}},
            "modic": {"features": ["level"], "weights": [0.0], "bias": 0.0,
                      "scaling": {"median": [3.0], "mean": [3.0], "scale": [1.0]}}}


def test_heads_use_their_named_columns():
    model = toy_model()
    features = np.zeros((2, len(FEATURE_NAMES)))
    features[:, FEATURE_NAMES.index("core_csf")] = [0.9, 0.1]
    features[:, FEATURE_NAMES.index("height_index")] = [0.1, np.nan]
    out = predict_heads(model, features)
    assert list(out["pfirrmann"].argmax(axis=1)) == [4, 0]
    assert out["narrowing"][0] > 0.8 and out["narrowing"][1] == pytest.approx(0.5)
    assert np.allclose(out["modic"], 0.5)


def test_a_folder_without_the_json_model_is_refused(tmp_path):
    with pytest.raises(SpineSegDiffError, match=MODEL_FILE):
        DiscGrader(ModelFolder(tmp_path, {"kind": "grading"}))


def test_quadratic_kappa_and_its_patient_bootstrap():
    truth = np.array([0, 1, 2, 3, 4, 2])
    assert quadratic_kappa(truth, truth) == pytest.approx(1.0)
    assert quadratic_kappa(truth, 4 - truth) < 0
    probabilities = np.eye(5)[truth]
    assert kappa_interval(probabilities, truth, np.array([1, 1, 2, 2, 3, 3])) == [1.0, 1.0]


def levels_of(rows: list[tuple]) -> list[int]:
    return [row[-1] for row in rows]


def test_pipeline_discs_count_only_when_named_as_the_ground_truth():
    image, truth = t2_slice()
    table = {(7, number): (number, 0, 0) for number in range(1, 6)}
    assert levels_of(pipeline_rows(image, truth, truth, 7, table)) == [1, 2, 3, 4, 5]
    missed, _ = synthetic_slice(skip_disc=2)
    assert levels_of(pipeline_rows(image, missed, truth, 7, table)) == [1, 2, 4, 5]
    shifted = truth.copy()
    shifted[265:300] = 0  # without the bottom disc and body every disc is named one level too low
    numbers, features = slice_features(image, shifted, find_levels(shifted, image))
    assert levels_of(graded_rows(numbers, features, 7, table)) == [1, 2, 3, 4]
    assert pipeline_rows(image, shifted, truth, 7, table) == []
    disc = truth == IVD
    assert same_disc(disc, disc) and not same_disc(disc, None) and not same_disc(disc, np.zeros_like(disc))


def test_source_comparison_leaves_out_missed_discs():
    reference = synthetic_samples(patients=4, discs=5)
    reference["level"] = np.tile(np.arange(1, 6), 4).astype(float)
    rows = [(f, g, n, m, p, 0, level) for f, g, n, m, p, level in zip(
        reference["features"] + 0.1, reference["grade"], reference["narrowing"], reference["modic"],
        reference["patient"], reference["level"])]
    segmented = to_samples(rows[:7] + rows[8:])  # the pipeline misses patient 1, level 3

    def predict(features):
        return predict_heads(toy_model(), features)

    comparison = source_comparison(predict, reference, segmented)
    assert comparison["graded_discs"] == 20 and comparison["found_discs"] == 19
    assert comparison["missed"] == [[1, 3]]
    for name in ("pipeline", "ground_truth_same_discs"):
        assert sum(comparison[name]["grade_counts"]) == 19
    keep = np.arange(20) != 7
    same = {key: values[keep] for key, values in reference.items()}
    assert comparison["ground_truth_same_discs"] == evaluation_metrics(predict(same["features"]), same)
    assert comparison["pipeline"] != comparison["ground_truth_same_discs"]
    metrics = {**evaluation_metrics(predict(reference["features"]), reference), "test_discs": 20,
               "pipeline_segmentation": comparison}
    assert "the 19 found discs" in source_table(metrics)
