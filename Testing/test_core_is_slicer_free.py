"""The core (``SpineSegDiffLib``, the pip package) imports nothing of Slicer, Qt, VTK or CTK, even transitively.

Each core module is imported in a fresh interpreter (so nothing imported by other tests counts), then
``sys.modules`` is searched for any module of those packages.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORE_DIR = REPO / "SpineSegDiff" / "SpineSegDiffLib"
FORBIDDEN = ("slicer", "qt", "ctk", "vtk", "vtkmodules", "mrml", "PythonQt")
CORE_MODULES = sorted(".".join(p.relative_to(CORE_DIR).with_suffix("").parts) for p in CORE_DIR.rglob("*.py")
                      if p.stem != "__init__" and "__pycache__" not in p.parts)

PROBE = """
import importlib, json, sys
sys.path.insert(0, {module_dir!r})
forbidden = {forbidden!r}

def offenders():
    return sorted(m for m in sys.modules if m.split(".")[0] in forbidden or m.lower().startswith("mrml"))

found = {{}}
for name in {names!r}:
    before = set(offenders())
    importlib.import_module(name)
    found[name] = sorted(set(offenders()) - before)
print(json.dumps(found))
"""


def imported_forbidden_modules(names: list[str]) -> dict[str, list[str]]:
    """``{module: [forbidden modules its import added]}``, all imported one after another in one fresh interpreter."""
    code = PROBE.format(module_dir=str(CORE_DIR.parent), forbidden=FORBIDDEN, names=names)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, f"importing the core failed:\n{done.stderr[-2000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_probe_sees_a_slicer_import():
    """The check itself works: the module-side MRML bridge, which imports ``slicer`` and ``vtk``, is caught."""
    pytest.importorskip("slicer")
    found = imported_forbidden_modules(["SpineSegDiffSlicer.mrml"])["SpineSegDiffSlicer.mrml"]
    assert {"slicer", "vtk"} <= {m.split(".")[0] for m in found}


def test_every_core_module_imports_no_slicer_qt_vtk_or_ctk_module():
    assert "inference.pipeline" in CORE_MODULES and "apps.worker" in CORE_MODULES, CORE_MODULES
    found = imported_forbidden_modules(["SpineSegDiffLib"] + [f"SpineSegDiffLib.{name}" for name in CORE_MODULES])
    offenders = {name: mods for name, mods in found.items() if mods}
    assert offenders == {}, f"core modules that pull in Slicer/Qt/VTK/CTK: {offenders}"
