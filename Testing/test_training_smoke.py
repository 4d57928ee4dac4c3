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

from SpineSegDiffLib.modelset.folder import open_model_folder
from SpineSegDiffLib.outputs.segfile import read_seg_nrrd  # noqa: F401 - the core stays importable beside training
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


def test_bank_run_end_to_end(tmp_path, tiny_dataset):
    """export-bank -> presegmenter folds + all-data model -> out-of-fold labels -> 2D/3D refiners -> bundle;
    the bundled folders load in the inference pipeline and segment a case."""
    from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION, DEFAULT_DIFFUSION_3D, DEFAULT_PRESEGMENTER
    from SpineSegDiffLib.options import SegmentOptions
    from SpineSegDiffLib.inference.pipeline import Segmenter

    work, bank, run_dir, models = tmp_path / "work", tmp_path / "bank", tmp_path / "run", tmp_path / "models"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "SpineSegDiff"), str(REPO)])}
    commands = [
        ["SpineSegDiffTraining.cli", "export-bank", "--data", str(tiny_dataset), "--work", str(work), "--folds", "2",
         "--bank", str(bank), "--out", str(REPO / "Resources" / "Models")],
        ["SpineSegDiffTraining.bank_run", "all", "--bank", str(bank), "--out", str(run_dir), "--device", "cpu",
         "--nnunet-minutes", "0.02", "--diffusion-minutes", "0.02", "--nnunet-batch", "2", "--diffusion-batch", "2",
         "--diffusion3d-batch", "1", "--threads", "1"],
        ["SpineSegDiffTraining.bank_run", "bundle", "--bank", str(bank), "--out", str(run_dir), "--models",
         str(models), "--hardware", "test", "--device", "cpu"],
    ]
    for command in commands:
        run = subprocess.run([sys.executable, "-m", *command], env=env, capture_output=True, encoding="utf-8",
                             errors="replace", timeout=900)
        assert run.returncode == 0, (command[:2], run.stdout[-2000:], run.stderr[-3000:])

    splits = Splits.load(bank / "splits.json")
    assert sorted(p.stem for p in (bank / "cases").glob("*.npz")) == splits.train_val  # no test case travels
    assert sorted(p.stem for p in (run_dir / "oof").glob("*.npz")) == splits.train_val
    preseg = open_model_folder(models / DEFAULT_PRESEGMENTER, "nnunet")
    assert preseg.config["folds"] == ["all"]
    for name in (DEFAULT_DIFFUSION, DEFAULT_DIFFUSION_3D):
        assert open_model_folder(models / name, "diffusion").config["training"]["iterations_done"] >= 1
    image = sitk.ReadImage(str(tiny_dataset / splits.test[0] / "image.nii.gz"))
    result = Segmenter(models, "cpu").segment(image, SegmentOptions(samples=2, steps=1, fused_steps=1))
    assert result.labels.GetSize() == image.GetSize()
