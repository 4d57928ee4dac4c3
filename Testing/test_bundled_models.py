"""The bundled default models on a real series they were not trained on (SPIDER 005, test split)."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO

from SpineSegDiffLib.io import read_volume
from SpineSegDiffLib.models import DEFAULT_MODELS_DIR, open_model_folder
from SpineSegDiffLib.options import SegmentOptions
from SpineSegDiffLib.pipeline import Segmenter
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


def _slice_scores(result, truth):
    scores = slice_scores(result, truth)
    return scores["dice"], scores["auroc"]


def test_bundled_folders_are_valid_and_not_trained_on_the_sample():
    for name, kind in (("nnunet-2d-t2", "nnunet"), ("spinesegdiff-2d-t2", "diffusion"),
                       ("spinesegdiff-3d-t2", "diffusion")):
        model = open_model_folder(DEFAULT_MODELS_DIR / name, kind)
        assert "spider_005" in model.config["training"]["splits"]["test"]
        assert (model.path / "MODEL_CARD.md").is_file()


def test_presegmentation_reaches_the_floor(segmenter, sample):
    image, truth = sample
    scores, _ = _slice_scores(segmenter.segment(image, SegmentOptions(refine=False, device="cpu")), truth)
    for key, floor in FLOORS["presegmentation"].items():
        assert scores[key] >= floor, (key, scores)


def test_refined_segmentation_reaches_the_floor_and_the_heatmap_flags_errors(segmenter, sample):
    image, truth = sample
    result = segmenter.segment(image, SegmentOptions(device="cpu"))
    scores, heat_auroc = _slice_scores(result, truth)
    for key, floor in FLOORS["refined"].items():
        assert scores[key] >= floor, (key, scores)
    assert heat_auroc >= FLOORS["heatmap_auroc"]
    heat = sitk.GetArrayFromImage(result.uncertainty)
    assert heat.min() >= 0 and heat.max() <= 1 and np.any(heat > 0)


@pytest.mark.parametrize("mode", ["slices", "volume"])
def test_volumetric_modes_reach_the_floor_over_the_whole_volume(segmenter, sample, mode):
    image, truth = sample
    alone = segmenter.segment(image, SegmentOptions(mode=mode, refine=False, device="cpu"))
    presegmentation = volume_scores(alone, truth)
    result = segmenter.segment(image, SegmentOptions(mode=mode, device="cpu"))
    scores = volume_scores(result, truth)
    for key, floor in FLOORS[f"volume_{mode}"].items():
        assert scores["dice"][key] >= floor, (key, scores)
    assert scores["mean_dice"] >= presegmentation["mean_dice"] - FLOORS["volume_margin_to_presegmentation"]
    assert scores["auroc"] >= FLOORS["volume_heatmap_auroc"]
