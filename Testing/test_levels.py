"""Level naming: synthetic spines with known anatomy, and the held-out SPIDER series."""

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import SHARED_DATA

from SpineSegDiffLib.anatomy.levels import disc_name, find_levels, vertebra_name

SC, VB, IVD = 1, 2, 3


def synthetic_slice(levels: int = 5, body: int = 25, disc: int = 10, sacrum: bool = False, skip_disc=None):
    """A straight spine on a (320, 320) slice: discs and bodies alternate from the bottom (row 300) up,
    with a canal behind them and spinous processes behind the canal. Returns (labels, image)."""
    labels = np.zeros((320, 320), np.uint8)
    image = np.full((320, 320), 50.0, np.float32)
    bottom = 300
    if sacrum:
        labels[bottom - 40:bottom, 100:140] = VB
        bottom -= 40
    for k in range(levels):
        if k != skip_disc:
            labels[bottom - disc:bottom, 100:135] = IVD
        bottom -= disc
        labels[bottom - body:bottom, 100:135] = VB
        labels[bottom - body + 5:bottom - 5, 160:175] = VB  # posterior element
        bottom -= body
    labels[bottom:300, 138:150] = SC
    return labels, image


def test_names():
    assert [vertebra_name(k) for k in (0, 1, 5, 6, 17)] == ["S1", "L5", "L1", "T12", "T1"]
    assert [disc_name(k) for k in (1, 2, 6)] == ["L5/S1", "L4/L5", "T12/L1"]


def test_clean_spine_is_named_from_the_bottom_and_posterior_elements_are_ignored():
    labels, image = synthetic_slice()
    levels = find_levels(labels, image)
    assert [d.name for d in levels.discs] == ["L5/S1", "L4/L5", "L3/L4", "L2/L3", "L1/L2"]
    assert [v.name for v in levels.vertebrae] == ["L5", "L4", "L3", "L2", "L1"]
    assert [v.from_bottom for v in levels.vertebrae] == [1, 2, 3, 4, 5]
    assert not levels.naming_uncertain, levels.reasons
    assert levels.mask(levels.discs[0])[295, 110]


def test_sacrum_below_the_lowest_disc_is_s1():
    labels, image = synthetic_slice(sacrum=True)
    levels = find_levels(labels, image)
    assert levels.vertebrae[0].name == "S1" and levels.discs[0].name == "L5/S1"
    assert not levels.naming_uncertain, levels.reasons


def test_missing_disc_keeps_the_names_above_and_is_flagged():
    labels, image = synthetic_slice(skip_disc=2)
    levels = find_levels(labels, image)
    assert [d.name for d in levels.discs] == ["L5/S1", "L4/L5", "L3/L4", "L2/L3", "L1/L2"]
    assert levels.discs[2].missing and not levels.discs[3].missing
    assert levels.naming_uncertain and "not segmented" in levels.reasons[0]


def test_sacrum_out_of_view_is_flagged():
    labels, image = synthetic_slice()
    image[303:] = 0  # the field of view ends 3 mm under the lowest disc
    levels = find_levels(labels, image)
    assert any("sacrum is not in view" in r for r in levels.reasons)


def test_no_canal_is_flagged():
    labels, image = synthetic_slice()
    labels[labels == SC] = 0
    assert any("spinal canal" in r for r in find_levels(labels, image).reasons)


def gt_disc_names(labels: np.ndarray, image: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """Ground-truth disc instances counted from the bottom, independent of find_levels: components of
    at least 30 px that the field of view does not cut."""
    from scipy import ndimage

    field = np.flatnonzero((image > 0).any(axis=1))
    labelled, count = ndimage.label(labels == IVD)
    parts = [labelled == i for i in range(1, count + 1) if (labelled == i).sum() >= 30]
    parts = [m for m in parts if not (m[field[0]].any() or m[field[-1]].any())]
    parts.sort(key=lambda m: -np.argwhere(m)[:, 0].mean())
    return [(disc_name(k + 1), m) for k, m in enumerate(parts)]


def naming_matches(truth: np.ndarray, predicted: np.ndarray, image: np.ndarray) -> bool:
    """Same number of segmented discs, and each ground-truth disc's best-overlapping one has its name."""
    levels = find_levels(predicted, image)
    found = [d for d in levels.discs if not d.missing]
    expected = gt_disc_names(truth, image)
    if len(found) != len(expected):
        return False
    for name, mask in expected:
        overlaps = [(levels.mask(d) & mask).sum() for d in found]
        if found[int(np.argmax(overlaps))].name != name:
            return False
    return True


@pytest.mark.slow
def test_naming_on_held_out_spider_series():
    """Ground truth and the bundled nnU-Net's central slices of the 7 test-split series."""
    from SpineSegDiffLib.inference.pipeline import Segmenter
    from SpineSegDiffLib.inference.preprocess import labels_to_model_space
    from SpineSegDiffLib.options import SegmentOptions
    from SpineSegDiffTraining.datasets import load_dataset
    from SpineSegDiffTraining.splits import make_splits

    data = SHARED_DATA / "spider-t2space"
    if not data.is_dir():
        pytest.skip("the shared SPIDER data is not on this machine")
    cases = load_dataset(data)
    test_ids = set(make_splits(cases, 5, seed=0).test)
    segmenter = Segmenter(device="cpu")
    results = {"truth": [], "model": []}
    for case in (c for c in cases if c.case_id in test_ids):
        image, mask = case.read()
        result = segmenter.segment(image, SegmentOptions(refine=False))
        truth = labels_to_model_space(sitk.Cast(mask, sitk.sitkUInt8), result.geometry)[0]
        results["truth"].append(naming_matches(truth, truth, result.model_image[0]))
        results["model"].append(naming_matches(truth, result.model_labels[0], result.model_image[0]))
    assert len(results["truth"]) == 7
    assert sum(results["truth"]) == 7
    assert sum(results["model"]) >= 6, results


def test_a_fragmented_labelmap_is_refused_quickly_instead_of_named():
    """Noise from an untrained or failing presegmenter: many small bodies and discs on one slice."""
    import time

    rng = np.random.default_rng(0)
    labels = np.zeros((320, 320), np.uint8)
    labels[:, 200:206] = 1  # a canal, so the pieces count as anterior
    for row in range(10, 310, 6):
        for column in range(20, 180, 12):
            labels[row : row + 4, column : column + 8] = rng.choice([2, 3])
    started = time.perf_counter()
    levels = find_levels(labels)
    assert time.perf_counter() - started < 5
    assert levels.naming_uncertain and not levels.discs


def test_a_lowest_vertebra_cut_by_the_lower_edge_is_flagged_and_listed():
    """An image that ends mid-L5: L5 would be taken for the sacrum and every name shifted."""
    labels, image = synthetic_slice()
    labels[278:], image[278:] = 0, 0  # L5 spans rows 265..289: the field of view ends inside it
    levels = find_levels(labels, image)
    assert levels.naming_uncertain
    assert any("touches the lower edge of the image" in r for r in levels.reasons), levels.reasons
    assert any(r.startswith("cut-off rule") for r in levels.rules), levels.rules
    assert not any("sacrum-shaped" in r for r in levels.reasons)  # a cut bone's shape is not judged


def test_a_normal_lower_edge_is_not_flagged_and_every_rule_is_listed():
    labels, image = synthetic_slice(sacrum=True)
    levels = find_levels(labels, image)
    assert not levels.naming_uncertain, levels.reasons
    assert not any(r.startswith("cut-off rule") for r in levels.rules)
    assert levels.rules[0] == "sacrum rule: a vertebra below the lowest disc is taken as the sacrum (S1)"
    assert any(r.startswith("transitional vertebra rule (sacrum shape)") and r.endswith("sacrum-shaped")
               for r in levels.rules), levels.rules
    assert any(r.startswith("transitional vertebra rule (disc thickness)") and r.endswith("not rudimentary")
               for r in levels.rules), levels.rules
    without_sacrum = find_levels(*synthetic_slice())
    assert without_sacrum.rules[0] == "sacrum rule: no sacrum segmented, so the lowest disc is taken as L5/S1"


def test_transitional_cases_list_their_rule():
    labels, image = synthetic_slice(sacrum=True)
    labels[254:260][labels[254:260] == IVD] = VB  # L5/S1 (rows 250..259) left 4 px thick: rudimentary
    thin = find_levels(labels, image)
    assert any("rudimentary" in r for r in thin.reasons), thin.reasons
    assert any(r.startswith("transitional vertebra rule (disc thickness)") and r.endswith("flagged")
               for r in thin.rules), thin.rules
    labels, image = synthetic_slice(sacrum=True)
    labels[260:280][labels[260:280] == VB] = 0  # a "sacrum" as short as a lumbar body
    short = find_levels(labels, image)
    assert any("not sacrum-shaped" in r for r in short.reasons), short.reasons
    assert any(r.startswith("transitional vertebra rule (sacrum shape)") and r.endswith("flagged")
               for r in short.rules), short.rules


@pytest.mark.parametrize("sacrum", [False, True])
def test_thresholds_are_physical_so_another_model_spacing_gives_the_same_names(sacrum):
    from scipy import ndimage

    labels, image = synthetic_slice(sacrum=sacrum)
    at_1mm = find_levels(labels, image, spacing_mm=1.0)
    default = find_levels(labels, image)
    assert (at_1mm.instances == default.instances).all() and at_1mm.reasons == default.reasons
    coarse = find_levels(ndimage.zoom(labels, 0.8, order=0), ndimage.zoom(image, 0.8, order=0), spacing_mm=1.25)
    assert [d.name for d in coarse.discs] == [d.name for d in at_1mm.discs]
    assert [v.name for v in coarse.vertebrae] == [v.name for v in at_1mm.vertebrae]
    assert coarse.reasons == at_1mm.reasons and not coarse.naming_uncertain


def test_a_small_piece_is_judged_by_its_area_in_mm2_not_its_pixel_count():
    """A 40 mm^2 vertebra fragment is under the 60 mm^2 minimum at 1 mm (40 px) but over it at 1.5 mm
    (40 px are 90 mm^2): the threshold follows the spacing."""
    from SpineSegDiffLib.anatomy.instances import MIN_VERTEBRA_AREA_MM2, components

    mask = np.zeros((50, 50), bool)
    mask[10:18, 10:15] = True
    assert 40 < MIN_VERTEBRA_AREA_MM2 < 40 * 1.5**2
    assert not components(mask, MIN_VERTEBRA_AREA_MM2, 1.0) and components(mask, MIN_VERTEBRA_AREA_MM2, 1.5**2)
