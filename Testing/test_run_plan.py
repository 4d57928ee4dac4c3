"""One run plan per run: options resolved once against the models and the device; the model set holds every
model a run uses (the grader too), with settings parsed once and without importing torch."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import REPO, synthetic_spine

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.inference.pipeline import Segmenter
from SpineSegDiffLib.modelset import model_set
from SpineSegDiffLib.modelset.folder import DEFAULT_GRADER
from SpineSegDiffLib.options import SegmentOptions, plan

BUNDLED_MODELS = REPO / "Resources" / "Models"


def test_the_plan_resolves_sampling_and_describes_what_ran(tiny_models):
    models = model_set.open_models(tiny_models)
    run = plan(SegmentOptions(preset="fast", samples=3), models, torch.device("cpu"))
    assert run.sampling.samples == 3 and run.settings is models.diffusion_settings
    described = run.describe()
    assert described["resolved_device"] == "cpu" and described["resolved_sampling"]["samples"] == 3
    assert plan(SegmentOptions(refine=False), models, torch.device("cpu")).sampling is None


def test_options_asking_for_another_device_than_the_run_are_refused(tiny_models):
    models = model_set.open_models(tiny_models)
    with pytest.raises(SpineSegDiffError, match="ask for device 'cuda'"):
        plan(SegmentOptions(device="cuda"), models, torch.device("cpu"))
    assert plan(SegmentOptions(device="auto"), models, torch.device("cpu")).device.type == "cpu"
    with pytest.raises(SpineSegDiffError, match="ask for device 'cuda'"):
        Segmenter(tiny_models, "cpu").segment(synthetic_spine(), SegmentOptions(device="cuda"))


def test_a_run_resolves_its_sampling_once(tiny_models, monkeypatch):
    calls = []
    original = SegmentOptions.sampling
    monkeypatch.setattr(SegmentOptions, "sampling", lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    segmenter = Segmenter(tiny_models, "cpu")
    calls.clear()
    segmenter.segment(synthetic_spine(), SegmentOptions(preset="fast", samples=1, steps=1, device="cpu"))
    assert len(calls) == 1


def test_diffusion_settings_are_parsed_once_when_the_models_open(tiny_models, monkeypatch):
    calls = []
    original = model_set.read_diffusion_settings
    monkeypatch.setattr(model_set, "read_diffusion_settings", lambda *a: calls.append(1) or original(*a))
    models = model_set.open_models(tiny_models)
    assert len(calls) == 2  # the 2D and the 3D model
    for mode in ("central", "slices", "volume", "central"):
        models.settings_for(SegmentOptions(mode=mode))
    assert len(calls) == 2


def test_the_model_set_holds_the_grader_and_info_lists_it(capsys):
    if not (BUNDLED_MODELS / DEFAULT_GRADER).is_dir():
        pytest.skip("the bundled grader is missing")
    models = model_set.open_models(BUNDLED_MODELS)
    assert models.grader is not None and models.grader.model_id == DEFAULT_GRADER
    from SpineSegDiffLib.apps.cli import main

    assert main(["info", "--models", str(BUNDLED_MODELS)]) == 0
    assert f"  {DEFAULT_GRADER}: grading, id {DEFAULT_GRADER}" in capsys.readouterr().out


def test_a_models_folder_without_a_grader_still_opens(tiny_models):
    assert model_set.open_models(tiny_models).grader is None
    with pytest.raises(SpineSegDiffError, match="does not exist"):
        model_set.open_models(tiny_models, grader="no-such-grader")


def test_opening_the_models_imports_no_torch():
    code = ("import sys; from SpineSegDiffLib.modelset.model_set import open_models; "
            f"open_models({str(BUNDLED_MODELS)!r}); print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert done.stdout.strip() == "False"
