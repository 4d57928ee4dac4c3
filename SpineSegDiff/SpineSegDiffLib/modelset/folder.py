"""Self-describing model folders: ``config.json`` (architecture, preprocessing, labels, training
data, metrics, weight checksums) next to the weights. Inference reads everything from there.

Two kinds:

* ``diffusion``: a SpineSegDiff dual-encoder network; ``weights.pt`` is a plain state dict loaded
  with ``torch.load(weights_only=True)``.
* ``nnunet``: an nnU-Net v2 model folder (``dataset.json``, ``plans.json``, ``fold_*/``). Bundled
  ones hold weight-only checkpoints (``weights_only=True``). A folder straight out of nnU-Net
  training (no ``config.json``, pickled ``checkpoint_final.pth``) is accepted only when the user
  points to it explicitly, because unpickling runs code.

Where the bundled models are found, in this order (:func:`bundled_models_dir`):

1. ``SpineSegDiffLib/models/`` next to this file: where a wheel (``pip install .``) installs them;
2. ``Resources/Models/`` two folders above this file: the source checkout (an editable install, or
   running from the repository) and the Slicer extension, which installs them to
   ``<lib/Slicer-X.Y>/Resources/Models`` beside ``<lib/Slicer-X.Y>/qt-scripted-modules/SpineSegDiffLib``.

A folder given explicitly (``--models``, ``Segmenter(models_dir=...)``) always wins; no environment
variable is read. ``spinesegdiff info`` prints the folder in use.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpineSegDiffError

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
PACKAGED_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"
RESOURCES_MODELS_DIR = Path(__file__).resolve().parents[3] / "Resources" / "Models"
DEFAULT_PRESEGMENTER = "nnunet-2d-t2"
DEFAULT_DIFFUSION = "spinesegdiff-2d-t2"
DEFAULT_DIFFUSION_3D = "spinesegdiff-3d-t2"
DEFAULT_GRADER = "disc-grading-t2"
KINDS = ("nnunet", "diffusion", "grading")


@dataclass(frozen=True)
class ModelFolder:
    """A validated model folder."""

    path: Path
    config: dict[str, Any] = field(hash=False)

    @property
    def kind(self) -> str:
        return self.config["kind"]

    @property
    def model_id(self) -> str:
        return self.config.get("id", self.path.name)

    def file(self, relative: str) -> Path:
        return self.path / relative


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_model_folder(path: str | Path, expected_kind: str) -> ModelFolder:
    """Validate a model folder: config present and readable, right kind and format, checksums match."""
    path = Path(path)
    config_path = path / CONFIG_NAME
    if not path.is_dir():
        raise SpineSegDiffError(f"model folder {path} does not exist", "check --models or reinstall the extension")
    if not config_path.is_file():
        if expected_kind == "nnunet" and (path / "plans.json").is_file():
            return ModelFolder(path, {"kind": "nnunet", "id": path.name, "trusted_pickles": True})
        raise SpineSegDiffError(f"{path} has no {CONFIG_NAME}: it is not a SpineSegDiff model folder")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SpineSegDiffError(f"{config_path} is not valid JSON ({error})", "reinstall the model") from None
    _check_header(config, path, expected_kind)
    _check_checksums(config, path)
    return ModelFolder(path, config)


def _check_header(config: dict, path: Path, expected_kind: str) -> None:
    if config.get("kind") != expected_kind:
        raise SpineSegDiffError(f"{path} holds a {config.get('kind')!r} model, expected {expected_kind!r}")
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise SpineSegDiffError(
            f"{path} has model format version {version}; this SpineSegDiff reads up to {FORMAT_VERSION}",
            "update SpineSegDiff, or use a model made for this version",
        )


def _check_checksums(config: dict, path: Path) -> None:
    files = config.get("files", {})
    if not files:
        raise SpineSegDiffError(f"{path / CONFIG_NAME} lists no weight files", "reinstall the model")
    for relative, expected in files.items():
        file = path / relative
        if not file.is_file():
            raise SpineSegDiffError(f"model file {file} is missing", "reinstall the model (the folder is incomplete)")
        if sha256_of(file) != expected:
            raise SpineSegDiffError(
                f"model file {file} does not match its checksum (truncated or modified)", "reinstall the model"
            )


def write_config(path: Path, config: dict[str, Any], weight_files: list[str]) -> dict[str, Any]:
    """Write ``config.json`` for a finished model folder, with the checksums of ``weight_files``."""
    config = {**config, "format_version": FORMAT_VERSION, "files": {f: sha256_of(path / f) for f in weight_files}}
    (path / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return config


def bundled_models_dir() -> Path:
    """The first of the packaged and the checkout models folder that exists (the packaged one if neither)."""
    return next((d for d in (PACKAGED_MODELS_DIR, RESOURCES_MODELS_DIR) if d.is_dir()), PACKAGED_MODELS_DIR)


DEFAULT_MODELS_DIR = bundled_models_dir()
"""The bundled models folder of this installation (see the module docstring for the lookup order)."""


def models_root(models_dir: str | Path | None) -> Path:
    """``models_dir`` if given, else the bundled folder; an error naming where we looked if it is missing."""
    if models_dir is not None:
        root = Path(models_dir)
        if not root.is_dir():
            raise SpineSegDiffError(f"models folder {root} does not exist", "check --models")
        return root
    if not DEFAULT_MODELS_DIR.is_dir():
        raise SpineSegDiffError(
            f"no bundled models found (looked in {PACKAGED_MODELS_DIR} and {RESOURCES_MODELS_DIR})",
            "reinstall SpineSegDiff, or pass a models folder with --models",
        )
    return DEFAULT_MODELS_DIR


def find_models(models_dir: Path | None = None) -> list[ModelFolder]:
    """Every valid model folder under ``models_dir`` (default: the bundled ones)."""
    root = Path(models_dir) if models_dir else DEFAULT_MODELS_DIR
    found = []
    for folder in sorted(root.glob("*/")) if root.is_dir() else []:
        for kind in KINDS:
            try:
                found.append(open_model_folder(folder, kind))
                break
            except SpineSegDiffError:
                continue
    return found
