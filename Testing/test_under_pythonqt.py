"""The module's worker client and QProcess runner under Slicer's real Qt binding.

``Testing/pythonqt_host/build.sh`` builds upstream PythonQt against Qt 5.15 and a small host that embeds
Python as Slicer does (no PythonQt thread support, Qt's event loop on the main thread). The host runs
``pythonqt_host/scenarios.py``: the module's own ``WorkerClient`` + ``QProcessRunner``, polled by a real
``QTimer``, against the real worker started through ``PythonSlicer``-shaped launcher (a Qt program that runs
Python as its child with forwarded channels, as CTK's AppLauncher does). Each scenario is one test here.

``make test`` builds the host first and sets ``SPINESEGDIFF_REQUIRE_PYTHONQT=1``, so a missing host fails
instead of skipping.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BUNDLED_SAMPLE, REPO

HOST_DIR = REPO / "Testing" / "pythonqt_host"
SCENARIOS_FILE = HOST_DIR / "scenarios.py"
MODELS = REPO / "Resources" / "Models"
REQUIRED = os.environ.get("SPINESEGDIFF_REQUIRE_PYTHONQT") == "1"
HOST_TIMEOUT = 900


def scenario_names() -> list[str]:
    """The names in ``scenarios.py``'s ``SCENARIOS`` list, read without running it (it needs PythonQt)."""
    tree = ast.parse(SCENARIOS_FILE.read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "SCENARIOS":
            return [element.id for element in node.value.elts]
    raise AssertionError("scenarios.py has no SCENARIOS list")


def built_host() -> Path | None:
    """The folder of a finished host build, or None (``build.sh --built`` never builds)."""
    found = subprocess.run(["bash", str(HOST_DIR / "build.sh"), "--built"], capture_output=True, text=True)
    return Path(found.stdout.strip()) if found.returncode == 0 else None


def run_host(folder: Path, work: Path, *extra: str, mutant: str = "") -> tuple[dict, str]:
    """Run the scenarios in the host; their results and the host's output."""
    launcher = work / "bin" / "PythonSlicer"
    launcher.parent.mkdir(parents=True, exist_ok=True)
    launcher.write_text(f'#!/bin/sh\nexec "{folder}/bin/spinesegdiff-launcher" "{sys.executable}" "$@"\n')
    launcher.chmod(0o755)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PATH=f"{launcher.parent}{os.pathsep}{env.get('PATH', '')}", QT_QPA_PLATFORM="offscreen",
               XDG_RUNTIME_DIR=str(work), SPINESEGDIFF_PYTHONQT_MUTANT=mutant)
    results = work / "results.json"
    command = [str(folder / "bin" / "spinesegdiff-pythonqt-host"), str(SCENARIOS_FILE), str(results), str(MODELS),
               str(BUNDLED_SAMPLE), *extra]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=HOST_TIMEOUT)
    output = done.stdout + done.stderr
    assert done.returncode == 0 and results.is_file(), f"the host failed ({done.returncode}):\n{output[-4000:]}"
    return json.loads(results.read_text()), output


@pytest.fixture(scope="module")
def host_folder() -> Path:
    folder = built_host()
    if folder is None:
        message = "the PythonQt host is not built: `make pythonqt-host` (or `make test`) builds it"
        pytest.fail(message) if REQUIRED else pytest.skip(message)
    if not (MODELS / "nnunet-2d-t2").is_dir() or not BUNDLED_SAMPLE.is_file():
        pytest.fail("the bundled models or sample are missing")
    return folder


@pytest.fixture(scope="module")
def hosted(host_folder, tmp_path_factory) -> dict:
    results, output = run_host(host_folder, tmp_path_factory.mktemp("pythonqt"))
    print("\n" + json.dumps(results, indent=1))
    return {"results": results, "output": output}


@pytest.mark.parametrize("scenario", scenario_names())
def test_scenario_under_the_real_binding(hosted, scenario):
    result = hosted["results"].get(scenario)
    assert result is not None, f"{scenario} did not run:\n{hosted['output'][-3000:]}"
    assert result["passed"], result["message"]


def test_the_host_is_pythonqt_on_qt5_without_pyqt(hosted):
    host = hosted["results"]["_host"]
    assert host["qt"].startswith("5.15") and host["python"].startswith("3.")


def test_the_scenarios_catch_bytes_of_a_qbytearray(host_folder, tmp_path):
    """Proof that the suite would catch the old bug: the runner converting with ``bytes(QByteArray)``."""
    results, _output = run_host(host_folder, tmp_path, "a_result_arrives", mutant="bytes")
    failed = results["a_result_arrives"]
    assert not failed["passed"] and "cannot convert 'QByteArray' object to bytes" in failed["message"]
