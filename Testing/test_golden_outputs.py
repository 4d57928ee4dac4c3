"""The same input, seed and options give byte-identical outputs: a guard for refactoring.

``Testing/data/golden_outputs.json`` holds the SHA-256 of every output file the CLI writes for the bundled
sample (the report with its timings removed), recorded with the torch version named in the file. Where
another torch build runs (other floating-point kernels) the comparison is skipped, not weakened.
``SPINESEGDIFF_REGENERATE_GOLDEN=1`` rewrites the file (only after a change meant to alter outputs).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from conftest import BUNDLED_SAMPLE, REPO

GOLDEN = REPO / "Testing" / "data" / "golden_outputs.json"
RUNS = {"central-standard": ["--preset", "standard"], "volume-fast": ["--mode", "volume", "--preset", "fast"]}
VARYING_KEYS = {"timings_s", "seconds"}
REGENERATE = os.environ.get("SPINESEGDIFF_REGENERATE_GOLDEN") == "1"


def without_timings(value):
    """A report or summary with every timing removed (they vary from run to run) and paths inside the checkout
    made relative to it (the checkout may be anywhere)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in VARYING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    if isinstance(value, str) and value.startswith(str(REPO)):
        return "<checkout>" + value[len(str(REPO)):]
    return value


def digest(path: Path) -> str:
    if path.suffix == ".json":
        data = without_timings(json.loads(path.read_text()))
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_cli(arguments: list[str], out: Path) -> dict[str, str]:
    from SpineSegDiffLib.apps.cli import main

    assert main(["segment", str(BUNDLED_SAMPLE), "-o", str(out), "--device", "cpu", "--seed", "7", "--quiet",
                 *arguments]) == 0
    return {path.name: digest(path) for path in sorted(out.iterdir()) if path.is_file()}


@pytest.mark.parametrize("run", sorted(RUNS))
def test_outputs_are_byte_identical_to_the_recorded_ones(run, tmp_path):
    import torch

    if not BUNDLED_SAMPLE.is_file():
        pytest.skip("the bundled sample is missing")
    found = run_cli(RUNS[run], tmp_path / run)
    recorded = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {"runs": {}}
    if REGENERATE:
        recorded["torch"] = torch.__version__
        recorded["runs"][run] = found
        GOLDEN.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    if recorded.get("torch") != torch.__version__:
        pytest.skip(f"outputs recorded with torch {recorded.get('torch')}, this is {torch.__version__}")
    assert found == recorded["runs"][run]
