"""The whole training path on a tiny real subset, a couple of iterations per stage, so it cannot rot:
export -> nnU-Net v2 plan/preprocess/train/validate -> 2D and 3D diffusion -> bundle -> evaluate, and the
slice-bank path. Every stage is called from Python with its typed config (:mod:`SpineSegDiffTraining.configs`),
in an interpreter of its own: nnU-Net reads its folders once per process. ``bank-all`` runs its stages through
``spinesegdiff-train``."""

import json
import os
import subprocess
import sys
import textwrap

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


def run_python(code: str, *args) -> None:
    """``code`` in a fresh interpreter with the repository importable, ``args`` as ``sys.argv[1:]``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "SpineSegDiff"), str(REPO)])}
    run = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env, capture_output=True,
                         encoding="utf-8", errors="replace", timeout=1500)
    assert run.returncode == 0, (run.stdout[-2000:], run.stderr[-3000:])


WORK_FOLDER_STAGES = """
    import json, sys
    from pathlib import Path
    from SpineSegDiffTraining.bundle import run_bundle
    from SpineSegDiffTraining.configs import (AllConfig, BundleConfig, Diffusion3dConfig, DiffusionConfig,
                                              NnunetConfig, PrepareConfig)
    from SpineSegDiffTraining.stages import run_all, run_diffusion, run_diffusion3d, run_nnunet, run_prepare

    data, work, models = map(Path, sys.argv[1:])
    common = {"data": data, "work": work, "folds": 2, "nnunet_trainer": "smoke"}
    training = {**common, "iterations": 2, "features": (4, 4, 8, 8, 16, 4)}
    run_prepare(PrepareConfig(data=data, work=work, folds=2))
    run_nnunet(NnunetConfig(**common, nnunet_folds=(0,)))
    run_diffusion(DiffusionConfig(**training))
    run_diffusion3d(Diffusion3dConfig(**training))
    run_bundle(BundleConfig(work=work, out=models, nnunet_trainer="smoke", nnunet_folds=(0,)))  # no data given
    config = json.loads((models / "nnunet-2d-t2" / "config.json").read_text(encoding="utf-8"))
    assert config["training"]["data"] == str(data)
    run_all(AllConfig(**training, out=models, nnunet_folds=(0,), eval_steps=(1, 2)))  # resumes, then evaluates
"""


def test_training_end_to_end(tmp_path, tiny_dataset):
    work, models = tmp_path / "work", tmp_path / "models"
    run_python(WORK_FOLDER_STAGES, tiny_dataset, work, models)

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

    results = json.loads((work / "evaluation" / "results.json").read_text(encoding="utf-8"))
    assert set(results) == {"nnU-Net", "+SpineSegDiff 1 steps", "+SpineSegDiff 2 steps"}
    scores = results["nnU-Net"][splits.test[0]]["dice"]
    assert set(scores) == {"SC", "VB", "IVD"} and all(0 <= v <= 1 for v in scores.values())
    table = (work / "evaluation" / "results.md").read_text(encoding="utf-8")
    assert "| nnU-Net |" in table and (work / "evaluation" / "results.png").stat().st_size > 1000

    volumes = json.loads((work / "evaluation" / "volumes.json").read_text(encoding="utf-8"))
    assert set(volumes) == {"nnU-Net (every slice)", "+SpineSegDiff 2D, every slice", "+Diff-UNet 3D"}
    assert all(case["slices"] == 3 for setting in volumes.values() for case in setting.values())
    card = (models / "spinesegdiff-3d-t2" / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "whole volume" in card and "SlidingWindowInferer" in card
    assert '"hardware": "CPU, ' in card  # the device the models trained on, recorded by each training stage


BANK_STAGES = """
    import sys
    from pathlib import Path
    from SpineSegDiffTraining.bank import run_bank_all
    from SpineSegDiffTraining.bundle import run_bank_bundle
    from SpineSegDiffTraining.configs import BankAllConfig, BankBundleConfig, ExportBankConfig
    from SpineSegDiffTraining.stages import run_export_bank

    data, work, bank, run, models, repo_models = map(Path, sys.argv[1:])
    run_export_bank(ExportBankConfig(data=data, work=work, folds=2, bank=bank, out=repo_models))
    run_bank_all(BankAllConfig(bank=bank, run=run, device="cpu", nnunet_minutes=0.02, diffusion_minutes=0.02,
                               nnunet_batch=2, diffusion_batch=2, diffusion3d_batch=1, threads=1))
    run_bank_bundle(BankBundleConfig(bank=bank, run=run, out=models, hardware="test"))
"""


def test_bank_run_end_to_end(tmp_path, tiny_dataset):
    """export-bank -> presegmenter folds + all-data model -> out-of-fold labels -> 2D/3D refiners -> bundle;
    the bundled folders load in the inference pipeline and segment a case. The former command line
    (``python -m SpineSegDiffTraining.bank_run``) still bundles, recording the run's device."""
    from SpineSegDiffLib.inference.pipeline import Segmenter
    from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION, DEFAULT_DIFFUSION_3D, DEFAULT_PRESEGMENTER
    from SpineSegDiffLib.options import SegmentOptions
    from SpineSegDiffTraining import bank_run

    work, bank, run_dir, models = tmp_path / "work", tmp_path / "bank", tmp_path / "run", tmp_path / "models"
    run_python(BANK_STAGES, tiny_dataset, work, bank, run_dir, models, REPO / "Resources" / "Models")

    splits = Splits.load(bank / "splits.json")
    assert sorted(p.stem for p in (bank / "cases").glob("*.npz")) == splits.train_val  # no test case travels
    assert sorted(p.stem for p in (run_dir / "oof").glob("*.npz")) == splits.train_val
    preseg = open_model_folder(models / DEFAULT_PRESEGMENTER, "nnunet")
    assert preseg.config["folds"] == ["all"]
    assert preseg.config["training"]["hardware"] == "test"
    for name in (DEFAULT_DIFFUSION, DEFAULT_DIFFUSION_3D):
        assert open_model_folder(models / name, "diffusion").config["training"]["iterations_done"] >= 1
        assert (run_dir / "resume" / name / "checkpoint.pt").is_file()  # the resumable state, to carry back
    image = sitk.ReadImage(str(tiny_dataset / splits.test[0] / "image.nii.gz"))
    result = Segmenter(models, "cpu").segment(image, SegmentOptions(samples=2, steps=1, fused_steps=1))
    assert result.labels.GetSize() == image.GetSize()

    again = tmp_path / "again"
    assert bank_run.main(["bundle", "--bank", str(bank), "--out", str(run_dir), "--models", str(again),
                          "--device", "cpu"]) == 0
    device = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))["device"]
    assert device.startswith("CPU, ")
    assert open_model_folder(again / DEFAULT_PRESEGMENTER, "nnunet").config["training"]["hardware"] == device
