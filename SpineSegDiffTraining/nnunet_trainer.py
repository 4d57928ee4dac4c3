"""nnU-Net v2 trainers sized for a CPU (a real ``nnUNetTrainer`` with a smaller budget).

Mirroring is off: model space has a fixed orientation (superior up, anterior left), so flipped
spines never occur at inference, and test-time mirroring would only cost time.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

CPU = torch.device("cpu")


class nnUNetTrainerSpineCPU(nnUNetTrainer):  # noqa: N801 - nnU-Net's naming convention
    """CPU budget: ``ITERATIONS`` per epoch, ``EPOCHS`` epochs, a checkpoint every epoch."""

    ITERATIONS = 40
    VAL_ITERATIONS = 4
    EPOCHS = 22

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = CPU) -> None:
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = self.ITERATIONS
        self.num_val_iterations_per_epoch = self.VAL_ITERATIONS
        self.num_epochs = self.EPOCHS
        self.save_every = 1

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):  # noqa: N802 - nnU-Net's name
        parent = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        rotation, do_dummy_2d, initial_patch_size, _ = parent
        self.inference_allowed_mirroring_axes = None
        return rotation, do_dummy_2d, initial_patch_size, None


class nnUNetTrainerSpineSmoke(nnUNetTrainerSpineCPU):  # noqa: N801
    """A few iterations: keeps the training scripts from rotting (tests)."""

    ITERATIONS = 2
    VAL_ITERATIONS = 1
    EPOCHS = 1
