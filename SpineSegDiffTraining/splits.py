"""Patient-wise splits: a held-out test set and K folds over the rest, saved once and reused."""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .datasets import Case


@dataclass(frozen=True)
class Splits:
    """Case ids: ``test`` is never trained on; ``folds[k]`` is the validation set of fold k."""

    test: list[str]
    folds: list[list[str]]

    @property
    def train_val(self) -> list[str]:
        return sorted(case for fold in self.folds for case in fold)

    def training_cases(self, fold: int) -> list[str]:
        return sorted(set(self.train_val) - set(self.folds[fold]))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Splits:
        return cls(**json.loads(Path(path).read_text()))


def make_splits(cases: list[Case], num_folds: int = 5, test_fraction: float = 0.2, seed: int = 0) -> Splits:
    """Shuffle patients with ``seed``; the first ``test_fraction`` go to test, the rest round-robin to folds."""
    by_patient: dict[str, list[str]] = {}
    for case in cases:
        by_patient.setdefault(case.patient_id, []).append(case.case_id)
    patients = sorted(by_patient)
    random.Random(seed).shuffle(patients)
    num_test = round(len(patients) * test_fraction)
    folds: list[list[str]] = [[] for _ in range(num_folds)]
    for i, patient in enumerate(patients[num_test:]):
        folds[i % num_folds].extend(by_patient[patient])
    test = sorted(case for patient in patients[:num_test] for case in by_patient[patient])
    return Splits(test=test, folds=[sorted(fold) for fold in folds])


def load_or_make_splits(path: Path, cases: list[Case], num_folds: int = 5, seed: int = 0) -> Splits:
    """Reuse ``path`` if it exists (so every stage sees the same split), else make and save it."""
    if path.is_file():
        return Splits.load(path)
    splits = make_splits(cases, num_folds=num_folds, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    splits.save(path)
    return splits
