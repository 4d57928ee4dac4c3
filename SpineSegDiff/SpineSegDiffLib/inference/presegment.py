"""nnU-Net v2 presegmentation, in process, from an explicit model folder (no environment variables).

The network is built from the folder's plans with nnU-Net's own ``get_network_from_plans`` and
handed to ``nnUNetPredictor.manual_initialization``; nnU-Net is imported only when a presegmenter
is created. Bundled checkpoints hold weights only and load with ``weights_only=True``; a folder
straight from ``nnUNetv2_train`` (pickled ``checkpoint_final.pth``) loads only when the user gave it
(see :mod:`.models`).
"""

from __future__ import annotations

import json

import numpy as np
import torch

from ..errors import SpineSegDiffError
from ..modelset.folder import ModelFolder

THROUGH_PLANE_SPACING = 999.0
"""nnU-Net's convention for stacks of independent 2D slices."""


def _load_checkpoint(model: ModelFolder, fold: int | str) -> dict:
    trusted = model.config.get("trusted_pickles", False)
    name = model.config.get("checkpoint", "checkpoint_final.pth")
    path = model.file(f"fold_{fold}/{name}")
    if not path.is_file():
        raise SpineSegDiffError(f"nnU-Net checkpoint {path} is missing", "check the model folder")
    try:
        return torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as error:  # torch raises several types for bad pickles / truncated zips
        raise SpineSegDiffError(f"nnU-Net checkpoint {path} could not be loaded ({error})") from None


def make_predictor(device: torch.device):
    """An ``nnUNetPredictor`` for ``device``: no test-time mirroring, no progress bars.

    nnU-Net's constructor prints a notice on every non-CUDA device and sets the process-wide
    ``cudnn.benchmark`` flag on CUDA; this subclass sets the same attributes without either (nnU-Net
    is pinned; ``Testing/test_presegment.py`` checks the attributes against nnU-Net's own constructor).
    """
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    class QuietPredictor(nnUNetPredictor):
        def __init__(self) -> None:  # noqa: D401 - nnU-Net's __init__ without its print and global flag
            self.verbose, self.verbose_preprocessing, self.allow_tqdm = False, False, False
            self.plans_manager, self.configuration_manager, self.list_of_parameters = None, None, None
            self.network, self.dataset_json, self.trainer_name = None, None, None
            self.allowed_mirroring_axes, self.label_manager = None, None
            self.tile_step_size, self.use_gaussian, self.use_mirroring = 0.5, True, False
            self.device = device
            self.perform_everything_on_device = device.type == "cuda"

    return QuietPredictor()


def _available_folds(model: ModelFolder) -> list:
    if "folds" in model.config:
        return list(model.config["folds"])
    return sorted(p.name.removeprefix("fold_") for p in model.path.glob("fold_*") if p.is_dir())


class NnUNetPresegmenter:
    """Predicts a labelmap ``(N, H, W)`` for a stack of model-space slices ``(N, H, W)``."""

    def __init__(self, model: ModelFolder, device: torch.device, folds: list | None = None) -> None:
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        dataset_json = json.loads(model.file("dataset.json").read_text(encoding="utf-8"))
        plans_manager = PlansManager(json.loads(model.file("plans.json").read_text(encoding="utf-8")))
        checkpoints = [_load_checkpoint(model, fold) for fold in folds or _available_folds(model)]
        configuration = checkpoints[0].get("configuration") or checkpoints[0]["init_args"]["configuration"]
        manager = plans_manager.get_configuration(configuration)
        network = get_network_from_plans(
            manager.network_arch_class_name, manager.network_arch_init_kwargs,
            manager.network_arch_init_kwargs_req_import,
            determine_num_input_channels(plans_manager, manager, dataset_json),
            plans_manager.get_label_manager(dataset_json).num_segmentation_heads,
            allow_init=False, deep_supervision=False,
        )
        self.predictor = make_predictor(device)
        self.predictor.manual_initialization(
            network, plans_manager, manager, [c["network_weights"] for c in checkpoints], dataset_json,
            checkpoints[0]["trainer_name"], None,
        )

    def __call__(self, slices: np.ndarray) -> np.ndarray:
        """``slices``: float32 ``(N, H, W)`` model-space images -> uint8 labels ``(N, H, W)``."""
        return self.predict(slices)[0]

    def predict(self, slices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels ``(N, H, W)`` uint8 and the normalised entropy of nnU-Net's class probabilities
        ``(N, H, W)`` float32 in 0..1 (1 = all K classes equally likely): the presegmentation's own
        uncertainty, which the heatmap shows wherever the diffusion model does not run."""
        properties = {"spacing": [THROUGH_PLANE_SPACING, 1.0, 1.0]}
        labels, probabilities = self.predictor.predict_single_npy_array(
            slices[None].astype(np.float32), properties, None, None, True)
        return np.asarray(labels, dtype=np.uint8), normalised_entropy(np.asarray(probabilities, np.float32))


def normalised_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy over axis 0 of ``probabilities (K, ...)`` divided by log K: ``(...)`` in 0..1."""
    p = np.clip(probabilities, 1e-8, 1.0)
    return (-(p * np.log(p)).sum(axis=0) / np.log(len(p))).clip(0, 1).astype(np.float32)
