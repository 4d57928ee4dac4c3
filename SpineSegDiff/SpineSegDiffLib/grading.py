"""Disc grading: Pfirrmann grade (1-5) with class probabilities, and narrowing and Modic-change flags.

A small CNN looks at a disc-centred crop of the model-space slice (1 mm pixels): three channels, the
image scaled to 0..1, the mask of this disc, and the vertebra mask. The model folder (kind
``grading``) holds ``weights.pt`` (a plain state dict, loaded with ``weights_only=True``) and
``config.json`` with the crop size and widths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from .labels import by_key
from .levels import Levels
from .models import ModelFolder, open_model_folder

CROP = (48, 64)
"""Rows x columns of a crop (mm at model spacing): a disc and half of each adjacent body."""
GRADES = (1, 2, 3, 4, 5)


class GradingNet(nn.Module):
    """``(B, 3, 48, 64)`` crops -> ``(B, 7)`` logits: 5 Pfirrmann classes, narrowing, Modic change."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        layers, channels = [], 3
        for width in widths:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.Conv2d(width, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2)]
            channels = width
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(channels, len(GRADES) + 2))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(crops))


def disc_crop(image: np.ndarray, labels: np.ndarray, disc_mask: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """Float32 ``(3, 48, 64)`` crop centred on ``centre`` (row, col); zero outside the slice.

    Args:
        image: ``(H, W)`` model-space intensities, 0..255.
        labels: uint8 ``(H, W)`` labelmap.
        disc_mask: boolean ``(H, W)`` mask of this disc.
    """
    channels = np.stack([image / 255.0, disc_mask, labels == by_key("VB").value]).astype(np.float32)
    crop = np.zeros((3, *CROP), np.float32)
    top, left = int(round(centre[0])) - CROP[0] // 2, int(round(centre[1])) - CROP[1] // 2
    rows = slice(max(top, 0), min(top + CROP[0], image.shape[0]))
    cols = slice(max(left, 0), min(left + CROP[1], image.shape[1]))
    crop[:, rows.start - top:rows.stop - top, cols.start - left:cols.stop - left] = channels[:, rows, cols]
    return crop


def level_crops(image: np.ndarray, labels: np.ndarray, levels: Levels) -> tuple[list[int], np.ndarray]:
    """``(from_bottom numbers, crops (N, 3, 48, 64))`` of the segmented discs of one slice."""
    discs = [d for d in levels.discs if not d.missing]
    crops = [disc_crop(image, labels, levels.mask(d), d.centroid) for d in discs]
    return [d.from_bottom for d in discs], np.stack(crops) if crops else np.zeros((0, 3, *CROP), np.float32)


def predictions(logits: torch.Tensor) -> dict[str, np.ndarray]:
    """``(N, 7)`` logits -> Pfirrmann probabilities ``(N, 5)``, narrowing and Modic probabilities ``(N,)``."""
    return {"pfirrmann": torch.softmax(logits[:, :len(GRADES)], dim=1).numpy(),
            "narrowing": torch.sigmoid(logits[:, len(GRADES)]).numpy(),
            "modic": torch.sigmoid(logits[:, len(GRADES) + 1]).numpy()}


class DiscGrader:
    """A loaded grading model on the CPU (it is tiny)."""

    def __init__(self, model: ModelFolder) -> None:
        self.model = model
        self.network = GradingNet(tuple(model.config["architecture"]["widths"]))
        state = torch.load(model.file("weights.pt"), map_location="cpu", weights_only=True)
        self.network.load_state_dict(state)
        self.network.eval()

    @torch.no_grad()
    def __call__(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Crops ``(N, 3, 48, 64)`` -> see :func:`predictions`."""
        if len(crops) == 0:
            return {"pfirrmann": np.zeros((0, len(GRADES))), "narrowing": np.zeros(0), "modic": np.zeros(0)}
        return predictions(self.network(torch.from_numpy(crops)))

    def grade(self, image: np.ndarray, labels: np.ndarray, levels: Levels) -> dict[int, dict]:
        """Per disc ``from_bottom``: grade, probabilities and flags, ready for the report."""
        numbers, crops = level_crops(image, labels, levels)
        out = self(crops)
        grades = {}
        for i, number in enumerate(numbers):
            probabilities = out["pfirrmann"][i]
            grades[number] = {
                "pfirrmann_grade": GRADES[int(np.argmax(probabilities))],
                "pfirrmann_probabilities": [round(float(p), 4) for p in probabilities],
                "narrowing_probability": round(float(out["narrowing"][i]), 4),
                "modic_probability": round(float(out["modic"][i]), 4),
            }
        return grades


DEFAULT_GRADER = "disc-grading-t2"


def optional_grader(models_dir: Path) -> DiscGrader | None:
    """The grader in ``models_dir/disc-grading-t2``, or None when that folder is absent."""
    path = Path(models_dir) / DEFAULT_GRADER
    return DiscGrader(open_model_folder(path, "grading")) if path.is_dir() else None
