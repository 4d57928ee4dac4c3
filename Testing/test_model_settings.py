"""Model folders drive inference: what their config.json says is used, what cannot be honoured is refused."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import BUNDLED_SAMPLE, synthetic_spine
from model_factory import make_tiny_diffusion

from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.inference.pipeline import Segmenter
from SpineSegDiffLib.inference.sampling import SamplingOptions
from SpineSegDiffLib.modelset.folder import (
    DEFAULT_DIFFUSION,
    DEFAULT_DIFFUSION_3D,
    DEFAULT_MODELS_DIR,
    DEFAULT_PRESEGMENTER,
)
from SpineSegDiffLib.modelset.model_set import open_models
from SpineSegDiffLib.options import PRESETS, SegmentOptions


def _models_with(root, tiny_models, change) -> str:
    """A models folder: the tiny presegmenter and a 2D diffusion model whose config ``change`` edits."""
    shutil.copytree(tiny_models / DEFAULT_PRESEGMENTER, root / DEFAULT_PRESEGMENTER)
    folder = make_tiny_diffusion(root / DEFAULT_DIFFUSION, num_train_timesteps=20, t_start=12)
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))
    return root


def test_schedule_t_start_and_model_space_come_from_the_config(tmp_path, tiny_models):
    def change(config):
        config["diffusion"]["schedule"] = "scaled_linear_beta"
        config["preprocessing"] = {"size": 256, "spacing_mm": 1.25, "intensity": "99th percentile -> 200"}

    segmenter = Segmenter(_models_with(tmp_path, tiny_models, change), "cpu")
    result = segmenter.segment(synthetic_spine(), SegmentOptions(samples=1, steps=2))
    refiner = segmenter.refiner_for(SegmentOptions())
    assert len(refiner.scheduler.alphas_cumprod) == 20 and refiner.settings.schedule == "scaled_linear_beta"
    assert result.options["resolved_sampling"]["t_start"] == 12
    assert result.model_image.shape[1:] == (256, 256) and result.model_image.max() <= 200
    assert result.geometry.model_grid.spacing[:2] == (1.25, 1.25)
    assert result.structure_uncertainty("IVD").GetSize() == synthetic_spine().GetSize()


@pytest.mark.parametrize(("key", "value", "named"), [
    ("prediction", "epsilon", "prediction type is 'epsilon'"),
    ("schedule", "sigmoid", "noise schedule is 'sigmoid'"),
    ("timestep_spacing", "leading", "timestep spacing is 'leading'"),
    ("t_start", 20, "default t_start is 20"),
])
def test_a_diffusion_setting_the_code_cannot_honour_is_refused_before_loading(tmp_path, tiny_models, key, value,
                                                                               named):
    root = _models_with(tmp_path, tiny_models, lambda config: config["diffusion"].__setitem__(key, value))
    with pytest.raises(SpineSegDiffError, match="cannot be run by this SpineSegDiff") as caught:
        open_models(root)
    assert named in str(caught.value) and str(root / DEFAULT_DIFFUSION) in str(caught.value)


@pytest.mark.parametrize("preprocessing", [
    {"orientation": "axial"}, {"intensity": "z-score"}, {"size": 8}, {"spacing_mm": 0},
])
def test_a_model_space_the_code_cannot_honour_is_refused(tmp_path, tiny_models, preprocessing):
    root = _models_with(tmp_path, tiny_models, lambda config: config.__setitem__("preprocessing", preprocessing))
    with pytest.raises(SpineSegDiffError, match="cannot be run by this SpineSegDiff"):
        open_models(root)


def test_diffusion_models_with_different_model_spaces_are_refused(tmp_path, tiny_models):
    root = _models_with(tmp_path, tiny_models, lambda config: config.__setitem__("preprocessing", {"size": 256}))
    make_tiny_diffusion(root / DEFAULT_DIFFUSION_3D, spatial_dims=3)
    with pytest.raises(SpineSegDiffError, match="disagree on the model space"):
        open_models(root)


@pytest.mark.skipif(not BUNDLED_SAMPLE.is_file(), reason="needs the repository's bundled models")
def test_sampling_defaults_agree_with_the_bundled_models():
    models = open_models(DEFAULT_MODELS_DIR)
    for mode in ("central", "volume"):
        settings = models.settings_for(SegmentOptions(mode=mode))
        assert settings.prediction == "x0" and settings.timestep_spacing == "linspace"
    default = SamplingOptions()
    assert default.t_start == models.settings_for(SegmentOptions()).t_start
    assert (default.samples, default.steps, default.fused_steps) == tuple(PRESETS["standard"].values())
