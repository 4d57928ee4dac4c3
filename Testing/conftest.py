"""Shared fixtures: tiny model folders, synthetic volumes, and the real data when present."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SpineSegDiff"))
sys.path.insert(0, str(REPO / "Testing"))
SHARED_DATA = REPO.parent / "shared" / "data"
BUNDLED_SAMPLE = REPO / "Resources" / "Samples" / "spider_t2_sample" / "image.nii.gz"


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> Path:
    from model_factory import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("models"))


def synthetic_spine(size=(80, 96, 12), spacing=(1.1, 1.2, 3.0), direction=None, seed=0) -> sitk.Image:
    """A volume (a bright block on noise) with any geometry; ``size`` in SimpleITK order.

    The default direction makes axis 0 run posterior, axis 1 inferior and axis 2 right: a sagittal
    acquisition with its slices along axis 2."""
    rng = np.random.default_rng(seed)
    array = rng.normal(100, 10, size[::-1]).astype(np.float32)
    array[:, size[1] // 4 : size[1] // 2, size[0] // 3 : size[0] // 2] += 300  # NumPy order (z, y, x)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((12.5, -30.0, 44.0))
    image.SetDirection(direction or (0, 0, -1, 1, 0, 0, 0, -1, 0))
    return image


def oblique_direction(degrees: float = 12.0):
    """The default sagittal direction of :func:`synthetic_spine`, tilted by ``degrees`` about the S-I axis."""
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    base = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], float)
    return tuple((rotation @ base).ravel().tolist())


@pytest.fixture
def real_volume_path() -> Path:
    path = SHARED_DATA / "spider-t2space" / "spider_005" / "image.nii.gz"
    if not path.is_file():
        pytest.skip("the shared SPIDER data is not on this machine")
    return path
