"""Volumetric modes: the 3D Diff-UNet over MONAI's sliding window, and the 2D model on every slice."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from conftest import synthetic_spine
from model_factory import make_tiny_diffusion, make_tiny_nnunet
from monai.inferers import SlidingWindowInferer

from SpineSegDiffLib.apps.cli import main
from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.inference.pipeline import Segmenter
from SpineSegDiffLib.inference.refiner import DiffusionRefiner, refine_slices
from SpineSegDiffLib.inference.sampling import SamplingOptions
from SpineSegDiffLib.inference.volumetric import VolumeRefiner, window_count
from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION, DEFAULT_PRESEGMENTER, open_model_folder
from SpineSegDiffLib.options import SegmentOptions

OPTIONS = SamplingOptions(samples=2, steps=2, fused_steps=2, t_start=6, sample_batch=2)


@pytest.fixture(scope="module")
def volume_refiner(tmp_path_factory):
    folder = make_tiny_diffusion(tmp_path_factory.mktemp("m") / "tiny3d", spatial_dims=3)
    return VolumeRefiner(open_model_folder(folder, "diffusion"), torch.device("cpu"))


def _stack(slices: int, size: int = 96):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (slices, size, size)).astype(np.float32)
    presegmentation = np.zeros((slices, size, size), np.uint8)
    presegmentation[:, 20:70, 30:50] = 2
    presegmentation[:, 40:45, 30:50] = 3
    return images, presegmentation


@pytest.mark.parametrize("size", [(16, 64, 64), (20, 320, 192), (17, 100, 70)])
def test_window_count_matches_the_windows_monai_visits(size):
    roi = tuple(min(r, s) for r, s in zip((16, 64, 64), size))
    visited = []
    inferer = SlidingWindowInferer(roi, sw_batch_size=1, overlap=0.25, progress=False)
    inferer(torch.zeros(1, 1, *size), lambda window: visited.append(1) or window)
    assert window_count(size, roi, 0.25) == len(visited)


def test_volume_refiner_returns_probabilities_on_every_slice(volume_refiner):
    images, presegmentation = _stack(18)
    fractions = []
    probabilities, uncertainty, class_uncertainty = volume_refiner(images, presegmentation, OPTIONS, fractions.append)
    assert probabilities.shape == (18, 4, 96, 96) and class_uncertainty.shape == (18, 4, 96, 96)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert uncertainty.shape == (18, 96, 96) and uncertainty.min() >= 0 and uncertainty.max() <= 1
    assert (uncertainty > 0).any(axis=(1, 2)).all()  # the refined box covers every slice
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_thin_volume_is_padded_and_cropped_back(volume_refiner):
    images, presegmentation = _stack(3)
    probabilities, uncertainty, _ = volume_refiner(images, presegmentation, OPTIONS)
    assert probabilities.shape == (3, 4, 96, 96) and uncertainty.shape == (3, 96, 96)


def test_same_seed_same_volume_and_another_seed_differs(volume_refiner):
    images, presegmentation = _stack(16)
    a = volume_refiner(images, presegmentation, OPTIONS)[0]
    b = volume_refiner(images, presegmentation, OPTIONS)[0]
    c = volume_refiner(images, presegmentation, SamplingOptions(**{**OPTIONS.__dict__, "seed": 1}))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_empty_presegmentation_stays_background(volume_refiner):
    images, presegmentation = _stack(16)
    probabilities, uncertainty, _ = volume_refiner(images, np.zeros_like(presegmentation), OPTIONS)
    assert np.all(probabilities[:, 0] == 1) and np.all(uncertainty == 0)


def test_a_2d_model_is_refused_as_volume_model(tmp_path):
    folder = make_tiny_diffusion(tmp_path / "tiny2d")
    with pytest.raises(SpineSegDiffError, match="not a 3D"):
        VolumeRefiner(open_model_folder(folder, "diffusion"), torch.device("cpu"))


def test_every_slice_mode_skips_slices_without_presegmentation(tmp_path):
    refiner = DiffusionRefiner(open_model_folder(make_tiny_diffusion(tmp_path / "d"), "diffusion"), torch.device("cpu"))
    images, presegmentation = _stack(4)
    presegmentation[[0, 3]] = 0
    probabilities, uncertainty, _ = refine_slices(refiner, images, presegmentation, OPTIONS)
    assert np.all(uncertainty[[0, 3]] == 0) and np.all(probabilities[[0, 3], 0] == 1)
    assert np.all(uncertainty[[1, 2]].max(axis=(1, 2)) > 0)


def test_volume_mode_fills_every_slice_on_the_input_grid(tiny_models):
    image = synthetic_spine(size=(80, 96, 12))
    result = Segmenter(tiny_models, "cpu").segment(image, SegmentOptions(mode="volume", samples=1, steps=1))
    heat = sitk.GetArrayFromImage(result.uncertainty)
    assert result.labels.GetSize() == image.GetSize()
    assert sorted(result.slice_indices) == list(range(12))
    assert np.all(heat.max(axis=(1, 2)) > 0)  # every sagittal slice (NumPy axis 0 here) has a heatmap
    assert result.models["diffusion_3d"] == "tiny-diffusion-3d"


def test_volume_mode_without_the_3d_model_is_one_clear_error(tmp_path, capsys):
    make_tiny_nnunet(tmp_path / "models" / DEFAULT_PRESEGMENTER)
    make_tiny_diffusion(tmp_path / "models" / DEFAULT_DIFFUSION)
    source = tmp_path / "case.mha"
    sitk.WriteImage(synthetic_spine(), str(source))
    code = main(["segment", str(source), "-o", str(tmp_path / "out"), "--models", str(tmp_path / "models"),
                 "--mode", "volume", "--quiet"])
    assert code != 0
    assert "3D diffusion model" in capsys.readouterr().err
    assert not list(tmp_path.glob("out/case*"))  # no partial outputs
