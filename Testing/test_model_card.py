"""Model cards rewritten after an evaluation: new tables and metrics; the training section kept when the
models were trained elsewhere (no training logs in the work folder)."""

from __future__ import annotations

import json

from conftest import REPO

from SpineSegDiffLib.modelset.folder import DEFAULT_DIFFUSION
from SpineSegDiffTraining.model_card import write_model_cards

CONFIG = json.loads((REPO / "Resources" / "Models" / DEFAULT_DIFFUSION / "config.json").read_text(encoding="utf-8"))
CASE = {"dice": {"SC": 0.9, "VB": 0.8, "IVD": 0.7}, "mean_dice": 0.8, "auroc": 0.95, "auroc_near_spine": 0.88,
        "mean_uncertainty": 0.1, "seconds": 1.0}


def evaluated_folder(tmp_path):
    models, evaluation = tmp_path / "models", tmp_path / "evaluation"
    folder = models / DEFAULT_DIFFUSION
    folder.mkdir(parents=True)
    evaluation.mkdir()
    (folder / "config.json").write_text(json.dumps(CONFIG), encoding="utf-8")
    (folder / "MODEL_CARD.md").write_text("# Model card\n\n## Training\n{\"minutes\": 7.8, \"device\": \"H200\"}\n\n"
                                          "## Measured on the held-out test series\nold table\n")
    results = {"+SpineSegDiff 5 steps": {"a": CASE, "b": CASE}}
    (evaluation / "results.json").write_text(json.dumps(results), encoding="utf-8")
    table = "| method | mean |\n|---|---|\n| +SpineSegDiff 5 steps | 0.800 |\n"
    (evaluation / "results.md").write_text(table, encoding="utf-8")
    return models, evaluation, folder


def test_without_training_logs_the_card_keeps_its_training_section(tmp_path):
    models, evaluation, folder = evaluated_folder(tmp_path)
    write_model_cards(models, evaluation, None)
    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert '{"minutes": 7.8, "device": "H200"}' in card
    assert "| +SpineSegDiff 5 steps | 0.800 |" in card and "old table" not in card
    metrics = json.loads((folder / "config.json").read_text(encoding="utf-8"))["metrics"]
    assert metrics["test_cases"] == ["a", "b"]


def test_with_training_logs_the_card_shows_them(tmp_path):
    models, evaluation, folder = evaluated_folder(tmp_path)
    write_model_cards(models, evaluation, {"diffusion": {"iterations": 3000}})
    card = (folder / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert '"iterations": 3000' in card and "H200" not in card
