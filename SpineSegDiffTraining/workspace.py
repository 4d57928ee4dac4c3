"""The training work folder: one place for every intermediate file, so each stage can resume."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .datasets import Case, load_dataset
from .prepare import prepare_all
from .splits import Splits, load_or_make_splits


@dataclass(frozen=True)
class Workspace:
    """``root/modelspace`` (cached cases), ``splits.json``, ``nnunet/``, ``diffusion/``, ``diffusion-3d/``,
    ``evaluation/``."""

    root: Path

    @property
    def modelspace(self) -> Path:
        return self.root / "modelspace"

    @property
    def splits_file(self) -> Path:
        return self.root / "splits.json"

    @property
    def nnunet(self) -> Path:
        return self.root / "nnunet"

    @property
    def diffusion(self) -> Path:
        return self.root / "diffusion"

    @property
    def diffusion_3d(self) -> Path:
        return self.root / "diffusion-3d"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    @property
    def data_file(self) -> Path:
        """The data folder the work folder was last prepared from (recorded in the bundled models)."""
        return self.root / "data.txt"

    def prepare(self, data: Path, num_folds: int = 5, seed: int = 0) -> tuple[list[Case], Splits, dict[str, Path]]:
        """Load the dataset, make or reuse the splits, cache model-space cases."""
        cases = load_dataset(data)
        splits = load_or_make_splits(self.splits_file, cases, num_folds=num_folds, seed=seed)
        self.data_file.write_text(f"{data}\n")
        return cases, splits, prepare_all(cases, self.modelspace)


def open_workspace(work: Path, threads: int | None = None) -> Workspace:
    """The work folder ``work``, with nnU-Net's folders pointed into it (before nnU-Net is first imported in
    this process: nnU-Net reads them once) and torch limited to ``threads`` CPU threads when given."""
    from .nnunet import use_work_dir
    from .summary import use_threads

    workspace = Workspace(Path(work))
    use_work_dir(workspace.nnunet)
    use_threads(threads)
    return workspace
