"""The whole training path on a tiny real subset, a couple of iterations per stage, so it cannot rot:
export -> nnU-Net v2 plan/preprocess/train/validate -> 2D and 3D diffusion -> bundle -> evaluate."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO, SHARED_DATA

from SpineSegDiffLib.models import open_model_folder
from SpineSegDiffLib.segfile import read_seg_nrrd  # noqa: F401 - the core stays importable beside training
from SpineSegDiffTraining.splits import Splits

CASES = ["spider_005", "spider_007", "spider_011", "spider_018"]


def _three_central_slices(source, destination):
    image = sitk.ReadImage(str(source))
    middle = image.GetSize()[0] // 2
    sitk.WriteImage(image[middle - 1 : middle + 2, :, :], str(destination))


@pytest.fixture
def tiny_dataset(tmp_path):
    root = SHARED_DATA / "spider-t2space"
    if not root.is_dir():
        pytest.skip("the shared SPIDER data is not on this machine")
    for case in CASES:
        (tmp_path / "data" / case).mkdir(parents=True)
        for name in ("image.nii.gz", "mask.nii.gz"):
            _three_central_slices(root / case / name, tmp_path / "data" / case / name)
    return tmp_path / "data"


def test_training_end_to_end(tmp_path, tiny_dataset):
    work, models = tmp_path / "work", tmp_path / "models"
    command = [sys.executable, "-m", "SpineSegDiffTraining.cli", "all", "--data", str(tiny_dataset),
               "--work", str(work), "--out", str(models), "--folds", "2", "--nnunet-trainer", "smoke",
               "--nnunet-folds", "0", "--iterations", "2", "--features", "4", "4", "8", "8", "16", "4",
               "--eval-steps", "1", "2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "SpineSegDiff"), str(REPO)])}
    run = subprocess.run(command, env=env, capture_output=True, encoding="utf-8", errors="replace", timeout=1500)
    assert run.returncode == 0, run.stderr[-3000:]

    splits = Splits.load(work / "splits.json")
    assert len(splits.test) == 1 and len(splits.folds) == 2
    assert not set(splits.test) & set(splits.train_val)
    assert sorted(splits.test + splits.train_val) == CASES

    nnunet = open_model_folder(models / "nnunet-2d-t2", "nnunet")
    diffusion = open_model_folder(models / "spinesegdiff-2d-t2", "diffusion")
    assert nnunet.config["folds"] == [0]
    assert diffusion.config["training"]["iterations_done"] == 2
    assert diffusion.config["network"]["features"] == [4, 4, 8, 8, 16, 4]
    volumetric = open_model_folder(models / "spinesegdiff-3d-t2", "diffusion")
    assert volumetric.config["network"]["spatial_dims"] == 3
    assert volumetric.config["inference"]["roi_size"] == [16, 128, 128]
    assert volumetric.config["training"]["iterations_done"] == 2

    losses = np.genfromtxt(work / "diffusion" / "losses.csv", delimiter=",", names=True)
    assert len(np.atleast_1d(losses)) == 2 and np.all(np.isfinite(losses["total"]))

    results = json.loads((work / "evaluation" / "results.json").read_text())
    assert set(results) == {"nnU-Net", "+SpineSegDiff 1 steps", "+SpineSegDiff 2 steps"}
    scores = results["nnU-Net"][splits.test[0]]["dice"]
    assert set(scores) == {"SC", "VB", "IVD"} and all(0 <= v <= 1 for v in scores.values())
    table = (work / "evaluation" / "results.md").read_text()
    assert "| nnU-Net |" in table and (work / "evaluation" / "results.png").stat().st_size > 1000

    volumes = json.loads((work / "evaluation" / "volumes.json").read_text())
    assert set(volumes) == {"nnU-Net (every slice)", "+SpineSegDiff 2D, every slice", "+Diff-UNet 3D"}
    assert all(case["slices"] == 3 for setting in volumes.values() for case in setting.values())
    card = (models / "spinesegdiff-3d-t2" / "MODEL_CARD.md").read_text()
    assert "whole volume" in card and "SlidingWindowInferer" in card
