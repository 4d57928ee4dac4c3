"""``spinesegdiff-train``: one subcommand per stage, built from the stage's typed config, so each offers exactly
its own settings; the former bank command line as an alias; bundled settings taken from the core."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO

from SpineSegDiffLib.inference.preprocess import DEFAULT_PREPROCESSING
from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION_3D, open_model_folder
from SpineSegDiffLib.modelset.settings import DiffusionSettings, diffusion_settings, preprocessing_settings
from SpineSegDiffTraining import bank_run, configs
from SpineSegDiffTraining.cli import STAGES, build_parser, config_from_arguments, to_argv

WORK_STAGES = ("prepare", "nnunet", "diffusion", "diffusion3d", "bundle", "evaluate", "evaluate-volumes",
               "evaluate-thick", "grading", "all", "export-bank")
BANK_STAGES = ("bank-nnunet", "bank-diffusion", "bank-diffusion3d", "bank-all", "bank-bundle")


def flags_of(config_class: type) -> set[str]:
    return {"--" + field.name.replace("_", "-") for field in dataclasses.fields(config_class)}


def help_text(stage: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([stage, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def minimal(config_class: type):
    """``config_class`` with only its required settings (paths)."""
    required = [f.name for f in dataclasses.fields(config_class) if f.default is dataclasses.MISSING]
    return config_class(**{name: Path(name) for name in required})


def test_one_subcommand_per_stage_with_its_own_config():
    assert set(STAGES) == set(WORK_STAGES + BANK_STAGES)
    assert len({config_class for config_class, _ in STAGES.values()}) == len(STAGES)
    assert all(callable(function) for _, function in STAGES.values())


@pytest.mark.parametrize("stage", WORK_STAGES + BANK_STAGES)
def test_each_subcommand_lists_only_its_own_flags(stage, capsys):
    config_class, _ = STAGES[stage]
    assert set(re.findall(r"--[a-z0-9-]+", help_text(stage, capsys))) == flags_of(config_class) | {"--help"}


def test_stages_read_only_what_they_use():
    assert flags_of(configs.BundleConfig) == {"--work", "--out", "--nnunet-trainer", "--nnunet-folds", "--roi-size",
                                              "--volume-t-start", "--data"}
    assert flags_of(configs.PrepareConfig) == {"--data", "--work", "--folds"}
    assert flags_of(configs.BankBundleConfig) == {"--bank", "--run", "--out", "--nnunet-folds", "--roi-size",
                                                  "--volume-t-start", "--hardware"}
    assert "--patch-size" not in flags_of(configs.DiffusionConfig)
    assert "--eval-steps" not in flags_of(configs.EvaluateVolumesConfig)
    assert "--gradings" in flags_of(configs.GradingConfig)  # the flag the missing-gradings hint names


def test_bundle_needs_no_data():
    args = build_parser().parse_args(["bundle", "--work", "w"])
    assert config_from_arguments(configs.BundleConfig, args) == configs.BundleConfig(work=Path("w"))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bundle"])  # --work is required


@pytest.mark.parametrize("stage", WORK_STAGES + BANK_STAGES)
def test_every_stage_config_round_trips_through_its_subcommand(stage):
    config_class, _ = STAGES[stage]
    config = minimal(config_class)
    args = build_parser().parse_args([stage, *to_argv(config)])
    assert config_from_arguments(config_class, args) == config


def test_tuples_and_optional_settings_round_trip():
    config = configs.AllConfig(data=Path("d"), work=Path("w"), features=(4, 4, 8, 8, 16, 4), nnunet_folds=(0, 1),
                               eval_steps=(1, 2), minutes=0.5, threads=3, nnunet_trainer="smoke", roi_size=(8, 64, 64))
    assert config_from_arguments(configs.AllConfig, build_parser().parse_args(["all", *to_argv(config)])) == config
    with pytest.raises(SystemExit):
        build_parser().parse_args(["all", *to_argv(config), "--nnunet-trainer", "gpu"])  # not a choice


def test_all_hands_its_settings_to_each_stage():
    config = configs.AllConfig(data=Path("d"), work=Path("w"), out=Path("m"), nnunet_folds=(2,), iterations=7)
    assert configs.narrow(config, configs.DiffusionConfig).iterations == 7
    assert configs.narrow(config, configs.NnunetConfig).nnunet_folds == (2,)
    assert configs.narrow(config, configs.BundleConfig) == configs.BundleConfig(work=Path("w"), out=Path("m"),
                                                                                nnunet_folds=(2,), data=Path("d"))


def test_the_former_bank_command_line_is_an_alias(monkeypatch):
    seen = []
    for stage in BANK_STAGES:
        monkeypatch.setitem(STAGES, stage, (STAGES[stage][0], seen.append))
    common = ["--bank", "b", "--out", "r", "--device", "cpu", "--threads", "1"]
    assert bank_run.main(["fold", *common, "--fold", "1", "--minutes", "0.5", "--batch-size", "8"]) == 0
    assert bank_run.main(["diffusion3", *common, "--nnunet-minutes", "9"]) == 0
    assert bank_run.main(["bundle", *common, "--models", "m", "--bundle-folds", "0", "all"]) == 0
    bank, run = Path("b"), Path("r")
    assert seen == [
        configs.BankNnunetConfig(bank=bank, run=run, device="cpu", threads=1, fold="1", minutes=0.5, batch_size=8),
        configs.BankDiffusion3dConfig(bank=bank, run=run, device="cpu", threads=1),
        configs.BankBundleConfig(bank=bank, run=run, out=Path("m"), nnunet_folds=("0", "all")),
    ]
    with pytest.raises(SystemExit):
        bank_run.main(["bundle", "--models", "m"])  # --bank and --out (the run) are required


def test_the_bank_stages_need_no_simpleitk():
    code = ("import sys; sys.modules['SimpleITK'] = None\n"
            "from SpineSegDiffTraining import bank, bank_run, cli\n"
            "cli.build_parser().parse_args(['bank-all', '--bank', 'b', '--run', 'r'])")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "SpineSegDiff"), str(REPO)])}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]


def test_a_diffusion_folder_describes_the_core_settings(tmp_path):
    """Preprocessing and noise schedule come from the core's dataclasses and read back as they were."""
    from SpineSegDiffTraining.bundle import bundle_refiners

    bundled = json.loads((REPO / "Resources" / "Models" / DEFAULT_DIFFUSION_3D / "config.json").read_text())
    for name in ("diffusion", "diffusion-3d"):
        (tmp_path / name).mkdir()
        torch.save({"net": {}, "iteration": 3}, tmp_path / name / "checkpoint.pt")
        (tmp_path / name / "config.json").write_text(json.dumps(bundled["training"]["config"]))
    bundle_refiners(tmp_path, tmp_path / "models", {"data": "x"}, None, 12)
    folder = open_model_folder(tmp_path / "models" / DEFAULT_DIFFUSION_3D, "diffusion")
    assert folder.config["preprocessing"] == bundled["preprocessing"]
    assert preprocessing_settings(folder.config, folder.path) == DEFAULT_PREPROCESSING
    assert diffusion_settings(folder.config, folder.path) == DiffusionSettings(num_train_timesteps=50, t_start=12)
    assert {k: v for k, v in folder.config["diffusion"].items() if k != "timestep_spacing"} == bundled["diffusion"]
    assert folder.config["inference"] == {**bundled["inference"], "t_start": 12}


def test_the_recorded_device_is_the_one_that_trained(tmp_path):
    from SpineSegDiffTraining.summary import describe_device, record_device, recorded_devices

    assert describe_device("cpu") == f"CPU, {torch.get_num_threads()} threads"
    assert recorded_devices(tmp_path) == "not recorded"
    record_device(tmp_path / "a", "cpu")
    record_device(tmp_path / "b", "cpu")
    assert recorded_devices(tmp_path / "a", tmp_path / "b", tmp_path / "c") == describe_device("cpu")
