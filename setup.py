"""Packaging hook: the wheel carries the bundled models as ``SpineSegDiffLib/models/``.

Everything else is in ``pyproject.toml``. An editable install reads them from ``Resources/Models``
in place (see ``SpineSegDiffLib.modelset.folder`` for the lookup order).
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MODELS = Path(__file__).resolve().parent / "Resources" / "Models"


class BuildPyWithModels(build_py):
    """``build_py`` that also copies ``Resources/Models`` into the built package."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or not MODELS.is_dir():
            return
        target = Path(self.build_lib) / "SpineSegDiffLib" / "models"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(MODELS, target, ignore=shutil.ignore_patterns("*.tmp", ".*"))


setup(cmdclass={"build_py": BuildPyWithModels})
