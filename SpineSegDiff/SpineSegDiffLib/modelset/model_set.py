"""The model folders one segmenter uses, opened and checked before any weights are loaded.

Opening reads each ``config.json``, verifies the weight checksums and parses the inference settings
once (:mod:`.settings`), so that a missing or unsupported model, and options that do not fit the
models (:meth:`ModelSet.check`), are reported in well under a second, before seconds of loading.
The set holds every model a run may use: presegmenter, 2D and 3D diffusion models and the disc grader.
Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import SpineSegDiffError
from ..inference.preprocess import DEFAULT_PREPROCESSING, Preprocessing
from ..options import SegmentOptions
from .folder import (
    DEFAULT_DIFFUSION,
    DEFAULT_DIFFUSION_3D,
    DEFAULT_GRADER,
    DEFAULT_PRESEGMENTER,
    ModelFolder,
    models_root,
    open_model_folder,
)
from .settings import DiffusionSettings, preprocessing_settings
from .settings import diffusion_settings as read_diffusion_settings


@dataclass(frozen=True)
class ModelSet:
    """Checked model folders: the presegmenter, the optional 2D and 3D diffusion models (with their settings,
    parsed once) and the optional disc grader."""

    root: Path
    presegmenter: ModelFolder
    diffusion: ModelFolder | None
    diffusion_3d: ModelFolder | None
    grader: ModelFolder | None = None
    diffusion_settings: DiffusionSettings | None = None
    diffusion_3d_settings: DiffusionSettings | None = None

    def diffusion_for(self, mode: str) -> ModelFolder | None:
        """The diffusion model a mode refines with (3D for ``volume``, else 2D)."""
        return self.diffusion_3d if mode == "volume" else self.diffusion

    def settings_for(self, options: SegmentOptions) -> DiffusionSettings | None:
        """The diffusion settings of the model these options refine with (None without refinement)."""
        if not options.refine:
            return None
        model = self.diffusion_for(options.mode)
        if model is None:
            name, kind = (DEFAULT_DIFFUSION_3D, "3D") if options.mode == "volume" else (DEFAULT_DIFFUSION, "2D")
            raise SpineSegDiffError(f"mode {options.mode!r} needs the {kind} diffusion model {name}, which is not "
                                    f"in {self.root}", "put it into the models folder, or use --no-refine")
        return self.diffusion_3d_settings if options.mode == "volume" else self.diffusion_settings

    def check(self, options: SegmentOptions) -> None:
        """Raise :class:`SpineSegDiffError` when ``options`` cannot run with these models (any device)."""
        settings = self.settings_for(options)
        if settings is not None:
            options.sampling(settings, on_gpu=False)

    @property
    def preprocessing(self) -> Preprocessing:
        """The model space every diffusion model of the set was trained in (they must agree)."""
        found = {m.path: preprocessing_settings(m.config, m.path) for m in (self.diffusion, self.diffusion_3d) if m}
        if len(set(found.values())) > 1:
            listing = "; ".join(f"{path}: {settings}" for path, settings in found.items())
            raise SpineSegDiffError(f"the diffusion models disagree on the model space ({listing})",
                                    "use models trained with the same preprocessing")
        return next(iter(found.values()), DEFAULT_PREPROCESSING)


def open_models(models_dir: str | Path | None = None, presegmenter: str | Path | None = None,
                diffusion: str | Path | None = None, diffusion_3d: str | Path | None = None,
                grader: str | Path | None = None) -> ModelSet:
    """Open and check the model folders (names are looked up in ``models_dir``, default: the bundled one).

    A diffusion model or grader left at its default name may be absent (its modes then refuse to refine;
    levels are then not graded); one named explicitly must exist. Every diffusion model's settings are
    parsed here, once, so an unsupported one is refused now.
    """
    root = models_root(models_dir)
    diffusion_2d = _optional(root, diffusion, DEFAULT_DIFFUSION, "diffusion")
    diffusion_3d_folder = _optional(root, diffusion_3d, DEFAULT_DIFFUSION_3D, "diffusion")
    models = ModelSet(
        root=root,
        presegmenter=open_model_folder(_model_path(root, presegmenter, DEFAULT_PRESEGMENTER), "nnunet"),
        diffusion=diffusion_2d, diffusion_3d=diffusion_3d_folder,
        grader=_optional(root, grader, DEFAULT_GRADER, "grading"),
        diffusion_settings=_settings(diffusion_2d), diffusion_3d_settings=_settings(diffusion_3d_folder),
    )
    _ = models.preprocessing
    return models


def _settings(model: ModelFolder | None) -> DiffusionSettings | None:
    return None if model is None else read_diffusion_settings(model.config, model.path)


def _optional(root: Path, given: str | Path | None, default: str, kind: str) -> ModelFolder | None:
    """A model folder that may be absent when left at its default name; one named explicitly must exist."""
    path = _model_path(root, given, default)
    if not path.exists() and given is None:
        return None
    return open_model_folder(path, kind)


def _model_path(root: Path, given: str | Path | None, default: str) -> Path:
    if given is None:
        return root / default
    path = Path(given)
    return path if path.is_absolute() or path.exists() else root / path
