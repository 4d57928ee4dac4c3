"""Warm starts (``--init-from``): a diffusion run begins from a model folder's weights, or continues the
carried-back resumable state in its ``resume/``; the run's own checkpoint wins; the provenance is recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import REPO
from model_factory import TINY_FEATURES, make_tiny_diffusion

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.inference.networks import NetworkConfig
from SpineSegDiffTraining.bundle import bundle_diffusion
from SpineSegDiffTraining.cli import build_parser, config_from_arguments
from SpineSegDiffTraining.configs import FEATURES_2D, BankDiffusion3dConfig, DiffusionConfig
from SpineSegDiffTraining.diffusion import DiffusionTrainingConfig, config_to_json, train_diffusion
from SpineSegDiffTraining.model_card import _description
from SpineSegDiffTraining.warm_start import RESUME, check_architecture, keep_resumable_state

MODELS = REPO / "Resources" / "Models"


class TinyBank:
    """Random 32 x 32 batches, enough for a few iterations of the tiny network."""

    def sample(self, config, generator):
        image = torch.rand((config.batch_size, 1, 32, 32), generator=generator) * 2 - 1
        labels = torch.randint(0, 4, (config.batch_size, 32, 32), generator=generator)
        return image, labels, labels.clone()


def tiny_training(iterations: int = 0, spatial_dims: int = 2) -> DiffusionTrainingConfig:
    return DiffusionTrainingConfig(network=NetworkConfig(spatial_dims=spatial_dims, features=TINY_FEATURES),
                                   iterations=iterations, batch_size=1, checkpoint_every=1, clinical=None)


def same_weights(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_warm_start_begins_from_the_folders_weights(tmp_path):
    folder = make_tiny_diffusion(tmp_path / "init", seed=1)
    net = train_diffusion(None, tiny_training(), tmp_path / "run", init_from=folder)
    assert same_weights(net.state_dict(), torch.load(folder / "weights.pt", weights_only=True))
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["iteration"] == 0


def test_the_runs_own_checkpoint_wins_over_the_init(tmp_path, capsys):
    own = train_diffusion(None, tiny_training(), tmp_path / "run").state_dict()
    folder = make_tiny_diffusion(tmp_path / "init", seed=1)
    net = train_diffusion(None, tiny_training(), tmp_path / "run", init_from=folder)
    assert same_weights(net.state_dict(), own)
    assert not same_weights(own, torch.load(folder / "weights.pt", weights_only=True))
    assert "ignored" in capsys.readouterr().out
    assert not (tmp_path / "run" / "init_from.json").exists()


def test_an_architecture_mismatch_is_one_clear_error(tmp_path):
    folder = make_tiny_diffusion(tmp_path / "init3d", spatial_dims=3)
    with pytest.raises(SpineSegDiffError, match="spatial_dims"):
        train_diffusion(None, tiny_training(), tmp_path / "run", init_from=folder)
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
    bundled = json.loads((MODELS / "spinesegdiff-2d-t2" / "config.json").read_text())
    check_architecture(bundled, NetworkConfig(features=FEATURES_2D), Path("2d"))  # the bundled 2D model fits
    with pytest.raises(SpineSegDiffError, match="features"):
        check_architecture(bundled, NetworkConfig(features=TINY_FEATURES), Path("2d"))


def test_the_provenance_is_recorded_in_the_bundled_folder(tmp_path):
    folder = make_tiny_diffusion(tmp_path / "init", seed=1)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "training": {"iterations_done": 7}}))
    run, training = tmp_path / "run", tiny_training(iterations=2)
    train_diffusion(TinyBank(), training, run, init_from=folder)
    (run / "config.json").write_text(json.dumps(config_to_json(training)))
    bundle_diffusion(run, tmp_path / "out", {"data": "x"})
    bundled = json.loads((tmp_path / "out" / "config.json").read_text())["training"]
    assert bundled["iterations_done"] == 2
    assert bundled["init_from"] == {"path": str(folder), "weights_sha256": config["files"]["weights.pt"],
                                    "iterations_before": 7, "resumed_state": False}
    card = _description(json.loads((tmp_path / "out" / "config.json").read_text()))
    assert f"Warm-started from `{folder}`" in card and "after 7 iterations" in card


def test_a_carried_back_state_continues_from_its_iteration(tmp_path):
    first, training = tmp_path / "first", tiny_training(iterations=2)
    train_diffusion(TinyBank(), training, first)
    (first / "config.json").write_text(json.dumps(config_to_json(training)))
    bundle_diffusion(first, tmp_path / "folder", {"data": "x"})
    keep_resumable_state(first, tmp_path / "folder" / RESUME)
    second = tmp_path / "second"
    train_diffusion(TinyBank(), tiny_training(iterations=3), second, init_from=tmp_path / "folder")
    state = torch.load(second / "checkpoint.pt", weights_only=True)
    assert state["iteration"] == 3
    assert "optimizer" in state and "generator" in state
    assert [line.split(",")[0] for line in (second / "losses.csv").read_text().splitlines()[1:]] == ["3"]
    provenance = json.loads((second / "init_from.json").read_text())
    assert provenance["iterations_before"] == 2 and provenance["resumed_state"]


def test_init_from_is_a_flag_of_the_diffusion_stages():
    args = build_parser().parse_args(["diffusion", "--data", "d", "--work", "w", "--init-from", "m"])
    assert config_from_arguments(DiffusionConfig, args).init_from == Path("m")
    args = build_parser().parse_args(["bank-diffusion3d", "--bank", "b", "--run", "r", "--init-from", "m"])
    assert config_from_arguments(BankDiffusion3dConfig, args).init_from == Path("m")


def test_bank_all_warm_starts_each_refiner_from_its_folder(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from SpineSegDiffTraining import bank
    from SpineSegDiffTraining.configs import BankAllConfig

    launched = {}
    (tmp_path / "run").mkdir()
    monkeypatch.setattr(bank, "bank_cases", lambda _: (SimpleNamespace(folds=[["a"]]), {}))
    monkeypatch.setattr(bank, "launch", lambda stage, config, log: launched.setdefault(stage, config))
    monkeypatch.setattr(bank, "wait", lambda processes: None)
    bank.run_bank_all(BankAllConfig(bank=tmp_path, run=tmp_path / "run", device="cpu", init_models=MODELS))
    assert launched["bank-diffusion"].init_from == MODELS / "spinesegdiff-2d-t2"
    assert launched["bank-diffusion3d"].init_from == MODELS / "spinesegdiff-3d-t2"
    assert launched["bank-nnunet"].run == tmp_path / "run"
