"""Volumetric refinement with the 3D Diff-UNet: the same dual-encoder network, sampling and fusion as
in 2D, over MONAI's ``SlidingWindowInferer``.

Each window runs the whole DDIM refinement (image encoder once, S chains, fusion of the last steps)
and returns probabilities and entropy maps; the inferer blends overlapping windows with Gaussian
weights. The volume is first cropped to the box around the presegmented spine (rows and columns, with
a margin, at least one window wide), which halves the windows of a typical lumbar volume, and padded
with background along the slices when it is thinner than a window.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import SpineSegDiffError
from ..labels import NUM_CLASSES
from ..modelset.folder import ModelFolder
from .fusion import blend_with_presegmentation
from .postprocess import one_hot, roi_columns
from .refiner import ModelSampler, unrefined
from .sampling import SamplingOptions, refine

DEFAULT_OVERLAP = 0.25


class VolumeRefiner(ModelSampler):
    """``refiner(images (N, H, W), presegmentation (N, H, W), options)`` -> probabilities ``(N, K, H, W)``,
    uncertainty ``(N, H, W)`` and class uncertainty ``(N, K, H, W)``, like :func:`~.refiner.refine_slices`."""

    def __init__(self, model: ModelFolder, device: torch.device) -> None:
        if model.config["network"].get("spatial_dims") != 3:
            raise SpineSegDiffError(f"{model.path} is not a 3D diffusion model", "choose a 3D model folder")
        inference = model.config.get("inference", {})
        if "roi_size" not in inference:
            raise SpineSegDiffError(f"{model.path} does not say its sliding-window size (inference.roi_size)",
                                    "bundle the 3D model again with spinesegdiff-train bundle")
        self.roi_size = tuple(inference["roi_size"])
        self.overlap = float(inference.get("overlap", DEFAULT_OVERLAP))
        super().__init__(model, device)

    def __call__(self, images: np.ndarray, presegmentation: np.ndarray, options: SamplingOptions,
                 on_progress: Callable[[float], None] | None = None, base_uncertainty: np.ndarray | None = None):
        n = len(images)
        probabilities, uncertainty, class_uncertainty = unrefined(presegmentation, base_uncertainty)
        if not presegmentation.any():
            return probabilities, uncertainty, class_uncertainty
        spine = presegmentation.any(axis=0).astype(np.uint8)
        rows = roi_columns(spine.T, self.roi_size[1])
        columns = roi_columns(spine, self.roi_size[2])
        box = (slice(None), rows, columns)
        volume = self._network_input(images[box], presegmentation[box])
        output = self._infer(volume, options, on_progress)[0, :, :n].cpu().numpy()
        k = NUM_CLASSES
        probabilities[:, :, rows, columns] = output[:k].transpose(1, 0, 2, 3)
        uncertainty[box] = blend_with_presegmentation(output[k], None if base_uncertainty is None else
                                                      base_uncertainty[box])
        class_uncertainty[:, :, rows, columns] = output[k + 1 :].transpose(1, 0, 2, 3)
        return probabilities, uncertainty, class_uncertainty

    def _network_input(self, images: np.ndarray, presegmentation: np.ndarray) -> torch.Tensor:
        """``(1, 1 + K, max(N, roi slices), H, w)``: normalised image and one-hot presegmentation,
        padded after the last slice with an empty image and background."""
        missing = max(self.roi_size[0] - len(images), 0)
        image = np.pad(self.network_image(images), ((0, missing), (0, 0), (0, 0)), constant_values=-1.0)
        labels = np.pad(presegmentation, ((0, missing), (0, 0), (0, 0)))
        stacked = np.concatenate([image[None], one_hot(labels, NUM_CLASSES)]).astype(np.float32)
        return torch.from_numpy(stacked[None]).to(self.device)

    def _infer(self, volume: torch.Tensor, options: SamplingOptions, on_progress) -> torch.Tensor:
        """Sliding-window refinement: ``(1, 1 + K, D, H, W) -> (1, 2K + 1, D, H, W)``."""
        from monai.inferers import SlidingWindowInferer

        roi = tuple(min(r, s) for r, s in zip(self.roi_size, volume.shape[2:]))
        total = window_count(volume.shape[2:], roi, self.overlap)
        done = [0]

        def refine_window(window: torch.Tensor) -> torch.Tensor:
            def on_step() -> None:
                done[0] += 1
                if on_progress is not None:
                    on_progress(min(done[0] / (total * options.steps), 1.0))

            p, u, cu = refine(self.net, self.scheduler, window[:, :1], window[:, 1:], options, on_step)
            return torch.cat([p, u[:, None], cu], dim=1)

        inferer = SlidingWindowInferer(roi, sw_batch_size=1, overlap=self.overlap, mode="gaussian", progress=False)
        with torch.inference_mode():
            return inferer(volume, refine_window)


def window_count(size: tuple[int, ...], roi: tuple[int, ...], overlap: float) -> int:
    """How many windows MONAI's sliding window visits (its scan-interval rule)."""
    from monai.data.utils import dense_patch_slices

    interval = [r if r == s else max(int(r * (1 - overlap)), 1) for r, s in zip(roi, size)]
    return len(dense_patch_slices(tuple(size), roi, interval))
