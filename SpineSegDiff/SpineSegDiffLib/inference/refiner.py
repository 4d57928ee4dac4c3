"""Loads a diffusion model folder and refines one slice's presegmentation."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import SpineSegDiffError
from ..labels import NUM_CLASSES
from ..modelset.folder import ModelFolder
from ..modelset.settings import diffusion_settings, preprocessing_settings
from .fusion import blend_with_presegmentation
from .networks import NetworkConfig, SpineSegDiffNet
from .postprocess import one_hot, roi_columns
from .sampling import SamplingOptions, make_scheduler, refine


def image_to_network(image: np.ndarray, maximum: float) -> np.ndarray:
    """Model-space intensities 0..maximum -> the network's input range -1..1 (same shape)."""
    return image / maximum * 2.0 - 1.0


class ModelSampler:
    """What every refiner reads from its model folder: network, noise schedule, default t_start and
    the model space (see :mod:`.model_settings`)."""

    def __init__(self, model: ModelFolder, device: torch.device) -> None:
        self.device = device
        self.settings = diffusion_settings(model.config, model.path)
        self.preprocessing = preprocessing_settings(model.config, model.path)
        self.net = load_network(model, device)
        self.scheduler = make_scheduler(self.settings.num_train_timesteps, self.settings.schedule)

    def network_image(self, images: np.ndarray) -> np.ndarray:
        """Model-space intensities -> the network's -1..1 input."""
        return image_to_network(images, self.preprocessing.intensity_max)


def load_network(model: ModelFolder, device: torch.device) -> SpineSegDiffNet:
    """Build the network from ``config.json`` and load ``weights.pt`` (weights only, strict)."""
    network = model.config["network"]
    config = NetworkConfig(**{**network, "features": tuple(network["features"])})
    net = SpineSegDiffNet(config)
    try:
        state = torch.load(model.file("weights.pt"), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError) as error:
        raise SpineSegDiffError(
            f"the weights in {model.path} do not fit the architecture in its config.json ({str(error)[:200]})",
            "reinstall the model",
        ) from None
    return net.to(device).eval()


class DiffusionRefiner(ModelSampler):
    """``refiner(images (B, H, W), presegmentations (B, H, W), options)`` -> probabilities ``(B, K, H, W)``,
    uncertainty ``(B, H, W)`` and class uncertainty ``(B, K, H, W)``, as NumPy arrays."""

    def __call__(self, images: np.ndarray, presegmentation: np.ndarray, options: SamplingOptions,
                 on_step: Callable[[float], None] | None = None):
        image_t = torch.from_numpy(self.network_image(images)[:, None].astype(np.float32)).to(self.device)
        preseg_t = torch.from_numpy(one_hot(presegmentation, NUM_CLASSES).swapaxes(0, 1).copy()).to(self.device)
        done = [0]

        def step() -> None:
            done[0] += 1
            if on_step is not None:
                on_step(done[0] / options.steps)

        outputs = refine(self.net, self.scheduler, image_t, preseg_t, options, step)
        return tuple(output.cpu().numpy() for output in outputs)


def unrefined(presegmentation: np.ndarray, uncertainty: np.ndarray | None = None):
    """The outputs of a stack nothing refined yet: the presegmentation as probabilities ``(N, K, H, W)``,
    the presegmenter's own ``uncertainty (N, H, W)`` (zero when not given) and zero class uncertainty
    ``(N, K, H, W)``; refiners overwrite them where they run."""
    n, h, w = presegmentation.shape
    probabilities = one_hot(presegmentation, NUM_CLASSES).transpose(1, 0, 2, 3).copy()
    base = np.zeros((n, h, w), np.float32) if uncertainty is None else uncertainty.astype(np.float32, copy=True)
    return probabilities, base, np.zeros((n, NUM_CLASSES, h, w), np.float32)


def slice_groups(slices: list[int], options: SamplingOptions) -> list[list[int]]:
    """Slices refined together: as many as fill one network call of ``sample_batch`` chains (at least one)."""
    size = max(1, options.sample_batch // options.samples)
    return [slices[i : i + size] for i in range(0, len(slices), size)]


def refine_slices(refiner: DiffusionRefiner | None, images: np.ndarray, presegmentation: np.ndarray,
                  options: SamplingOptions | None, on_progress: Callable[[float], None] | None = None,
                  base_uncertainty: np.ndarray | None = None):
    """Refine every slice of a stack inside its spine window; slices with nothing presegmented are kept.

    Slices are batched (:func:`slice_groups`: one at a time on a CPU, many per call on a GPU); a group
    shares the window around the union of its presegmentations.

    Args:
        refiner: the 2D refiner, or None to return the presegmentation as probabilities.
        images: ``(N, H, W)`` model-space intensities 0..255.
        presegmentation: ``(N, H, W)`` labels.
        options: sampling options (None when ``refiner`` is None).
        on_progress: called with the fraction of the stack done.
        base_uncertainty: ``(N, H, W)`` the presegmenter's own entropy: the heatmap outside the refined
            windows, blended with the diffusion entropy inside (:func:`~.fusion.blend_with_presegmentation`).

    Returns:
        probabilities ``(N, K, H, W)``, uncertainty ``(N, H, W)``, class uncertainty ``(N, K, H, W)``.
    """
    probabilities, uncertainty, class_uncertainty = unrefined(presegmentation, base_uncertainty)
    todo = [i for i in range(len(images)) if presegmentation[i].any()] if refiner is not None else []
    finished = 0
    for group in slice_groups(todo, options) if todo else []:
        columns = roi_columns(presegmentation[group].any(axis=0).astype(np.uint8))

        def on_step(fraction: float, finished: int = finished, size: int = len(group)) -> None:
            if on_progress is not None:
                on_progress((finished + fraction * size) / len(todo))

        p, u, cu = refiner(images[group][:, :, columns], presegmentation[group][:, :, columns], options, on_step)
        base = None if base_uncertainty is None else base_uncertainty[group][:, :, columns]
        probabilities[group, :, :, columns] = p
        uncertainty[group, :, columns] = blend_with_presegmentation(u, base)
        class_uncertainty[group, :, :, columns] = cu
        finished += len(group)
    return probabilities, uncertainty, class_uncertainty
