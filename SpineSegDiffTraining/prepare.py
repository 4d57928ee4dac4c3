"""Bring every labelled case into model space once and cache it (``<cache>/<case>.npz``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

if TYPE_CHECKING:
    from .datasets import Case


def prepare_case(case: Case, cache: Path) -> Path:
    """Cache ``image`` float16 (N, 320, 320) in 0..255 and ``labels`` uint8 (N, 320, 320), all slices."""
    from SpineSegDiffLib.inference.preprocess import labels_to_model_space, to_model_space

    destination = cache / f"{case.case_id}.npz"
    if destination.is_file():
        return destination
    image, mask = case.read()
    slices, geometry = to_model_space(image, "all")
    labels = labels_to_model_space(mask, geometry)
    cache.mkdir(parents=True, exist_ok=True)
    temporary = cache / f".{case.case_id}.tmp.npz"
    np.savez_compressed(temporary, image=slices.astype(np.float16), labels=labels, spacing=geometry.model_grid.spacing)
    temporary.replace(destination)
    return destination


def prepare_all(cases: list[Case], cache: Path) -> dict[str, Path]:
    return {case.case_id: prepare_case(case, cache) for case in tqdm(cases, desc="model space", unit="case")}


def load_case(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(path) as data:
        return data["image"].astype(np.float32), data["labels"]
