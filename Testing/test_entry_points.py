"""Every entry point writes the same files for the same input: the CLI, the worker behind the Slicer module and
the Slicer batch script all go through the core's one writer and naming rule."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from conftest import BUNDLED_SAMPLE, REPO
from test_golden_outputs import digest

from SpineSegDiffLib.apps.cli import main as cli_main
from SpineSegDiffLib.apps.worker import REVIEW_FILE, Worker

MODELS = REPO / "Resources" / "Models"
OPTIONS = {"preset": "fast", "device": "cpu", "seed": 7}
BATCH_RECORD = "summary.json"
"""The batch engine's record of a run: written by the batch entry points, not by the worker (one case)."""

if not BUNDLED_SAMPLE.is_file() or not (MODELS / "nnunet-2d-t2").is_dir():
    pytest.skip("the bundled sample or models are missing", allow_module_level=True)


def outputs(folder) -> dict[str, str]:
    return {p.name: digest(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != BATCH_RECORD}


def slicer_batch_script():
    pytest.importorskip("slicer")
    path = REPO / "Resources" / "Scripts" / "batch_segment_slicer.py"
    spec = importlib.util.spec_from_file_location("batch_segment_slicer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def by_the_cli(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli")
    arguments = ["--preset", "fast", "--device", "cpu", "--seed", "7", "--models", str(MODELS), "--quiet"]
    assert cli_main(["segment", str(BUNDLED_SAMPLE), "-o", str(out), *arguments]) == 0
    return outputs(out)


def test_the_worker_writes_what_the_cli_writes(by_the_cli, tmp_path):
    events = []
    Worker(events.append, MODELS).segment({"id": "1", "input": str(BUNDLED_SAMPLE), "stem": "image",
                                           "output_dir": str(tmp_path), "options": OPTIONS})
    assert events[-1]["event"] == "result", events[-1]
    written = outputs(tmp_path)
    assert written.pop(REVIEW_FILE)  # the protocol's review list for the module, beside the case's files
    assert written == by_the_cli


def test_the_slicer_batch_script_writes_what_the_cli_writes(by_the_cli, tmp_path, monkeypatch):
    script = slicer_batch_script()
    arguments = ["--", "--input", str(BUNDLED_SAMPLE), "--output", str(tmp_path), "--preset", "fast",
                 "--device", "cpu", "--seed", "7", "--models", str(MODELS)]
    monkeypatch.setattr(sys, "argv", ["batch_segment_slicer.py", *arguments])
    assert script.main() == 0
    assert outputs(tmp_path) == by_the_cli
    assert (tmp_path / BATCH_RECORD).is_file()
