"""Model folders: incomplete, tampered, wrong version or wrong kind are refused clearly."""

import argparse
import json

import pytest
import torch
from model_factory import make_tiny_diffusion, make_tiny_nnunet

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.inference.pipeline import Segmenter
from SpineSegDiffLib.inference.presegment import NnUNetPresegmenter
from SpineSegDiffLib.modelset.folder import find_models, open_model_folder


@pytest.fixture
def diffusion_folder(tmp_path):
    return make_tiny_diffusion(tmp_path / "diffusion")


def test_valid_folders_open_and_are_listed(tmp_path, diffusion_folder):
    make_tiny_nnunet(tmp_path / "nnunet")
    assert open_model_folder(diffusion_folder, "diffusion").model_id == "tiny-diffusion-2d"
    assert sorted(m.kind for m in find_models(tmp_path)) == ["diffusion", "nnunet"]


def test_tampered_weights_are_refused(diffusion_folder):
    weights = diffusion_folder / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(SpineSegDiffError, match="checksum"):
        open_model_folder(diffusion_folder, "diffusion")


def test_missing_weights_are_refused(diffusion_folder):
    (diffusion_folder / "weights.pt").unlink()
    with pytest.raises(SpineSegDiffError, match="missing"):
        open_model_folder(diffusion_folder, "diffusion")


def test_newer_format_is_refused(diffusion_folder):
    config_path = diffusion_folder / "config.json"
    config = json.loads(config_path.read_text())
    config["format_version"] = 99
    config_path.write_text(json.dumps(config))
    with pytest.raises(SpineSegDiffError, match="format version 99"):
        open_model_folder(diffusion_folder, "diffusion")


def test_wrong_kind_and_missing_folder_are_refused(tmp_path, diffusion_folder):
    with pytest.raises(SpineSegDiffError, match="expected 'nnunet'"):
        open_model_folder(diffusion_folder, "nnunet")
    with pytest.raises(SpineSegDiffError, match="does not exist"):
        Segmenter(tmp_path / "nowhere", "cpu")


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path, diffusion_folder):
    from SpineSegDiffLib.modelset.folder import write_config

    config = json.loads((diffusion_folder / "config.json").read_text())
    config["network"]["features"] = [8, 8, 8, 8, 16, 8]
    write_config(diffusion_folder, config, ["weights.pt"])
    from SpineSegDiffLib.inference.refiner import load_network

    with pytest.raises(SpineSegDiffError, match="do not fit"):
        load_network(open_model_folder(diffusion_folder, "diffusion"), torch.device("cpu"))


def test_pickled_nnunet_checkpoints_need_a_trusted_folder(tmp_path):
    folder = make_tiny_nnunet(tmp_path / "nnunet")
    checkpoint = folder / "fold_0" / "checkpoint.pth"
    state = torch.load(checkpoint, weights_only=True)
    state["init_args"] = argparse.Namespace(configuration="2d")  # any class: needs unpickling code
    torch.save(state, checkpoint)
    from SpineSegDiffLib.modelset.folder import ModelFolder

    bundled_style = ModelFolder(folder, {"kind": "nnunet", "checkpoint": "checkpoint.pth", "folds": [0]})
    with pytest.raises(SpineSegDiffError, match="could not be loaded"):
        NnUNetPresegmenter(bundled_style, torch.device("cpu"))
