"""The bundled default models on a real series they were not trained on (SPIDER 005, test split)."""

import json

import pytest
import SimpleITK as sitk
from conftest import REPO

from SpineSegDiffLib.inference.pipeline import Segmenter
from SpineSegDiffLib.io import read_volume
from SpineSegDiffLib.modelset.folder import DEFAULT_MODELS_DIR, open_model_folder
from SpineSegDiffLib.options import SegmentOptions
from SpineSegDiffTraining.evaluate import slice_scores
from SpineSegDiffTraining.evaluate_volumes import volume_scores

SAMPLE = REPO / "Resources" / "Samples" / "spider_t2_sample"
FLOORS = json.loads((REPO / "Testing" / "dice_floors.json").read_text())
"""Measured on this sample, minus a margin (see the file's note)."""


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(DEFAULT_MODELS_DIR, "cpu")


@pytest.fixture(scope="module")
def sample():
    return read_volume(SAMPLE / "image.nii.gz"), sitk.ReadImage(str(SAMPLE / "mask.nii.gz"))


@pytest.fixture(scope="module")
def central(segmenter, sample):
    """Central-slice scores of the presegmentation alone and refined (standard preset), and the result."""
    image, truth = sample
    alone = slice_scores(segmenter.segment(image, SegmentOptions(refine=False, device="cpu")), truth)
    result = segmenter.segment(image, SegmentOptions(device="cpu"))
    return alone, slice_scores(result, truth), result


def test_bundled_folders_are_valid_and_not_trained_on_the_sample():
    for name, kind in (("nnunet-2d-t2", "nnunet"), ("spinesegdiff-2d-t2", "diffusion"),
                       ("spinesegdiff-3d-t2", "diffusion")):
        model = open_model_folder(DEFAULT_MODELS_DIR / name, kind)
        assert "spider_005" in model.config["training"]["splits"]["test"]
        assert (model.path / "MODEL_CARD.md").is_file()


def test_presegmentation_reaches_the_floor(central):
    scores = central[0]["dice"]
    for key, floor in FLOORS["presegmentation"].items():
        assert scores[key] >= floor, (key, scores)


def test_refinement_beats_its_own_presegmentation_and_reaches_the_floor(central):
    alone, refined, _ = central
    for key, floor in FLOORS["refined"].items():
        assert floor > alone["dice"][key], (key, "a refiner that returned its input would pass this floor")
        assert refined["dice"][key] >= floor, (key, refined["dice"], alone["dice"])
    assert refined["mean_dice"] >= alone["mean_dice"] + FLOORS["refined_mean_above_presegmentation"]


def test_heatmap_flags_errors_and_covers_the_whole_image(central):
    _, refined, result = central
    assert refined["auroc"] >= FLOORS["heatmap_auroc"]
    assert refined["auroc_near_spine"] >= FLOORS["heatmap_auroc_near_spine"]
    heat = sitk.GetArrayFromImage(result.uncertainty)
    assert heat.min() >= 0 and heat.max() <= 1
    assert (result.model_uncertainty > 0).mean() > 0.99  # no blank band outside the refined window


@pytest.mark.parametrize("mode", ["slices", "volume"])
def test_volumetric_modes_reach_the_floor_over_the_whole_volume(segmenter, sample, mode):
    image, truth = sample
    alone = segmenter.segment(image, SegmentOptions(mode=mode, refine=False, device="cpu"))
    presegmentation = volume_scores(alone, truth)
    result = segmenter.segment(image, SegmentOptions(mode=mode, device="cpu"))
    scores = volume_scores(result, truth)
    for key, floor in FLOORS[f"volume_{mode}"].items():
        assert scores["dice"][key] >= floor, (key, scores)
    assert scores["mean_dice"] >= presegmentation["mean_dice"] + FLOORS["volume_margin_to_presegmentation"]
    assert scores["auroc"] >= FLOORS["volume_heatmap_auroc"]
