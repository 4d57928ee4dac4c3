"""A wheel install finds its models: build the wheel, install it into a fresh environment outside the
checkout and segment the bundled sample from there. (CI also does this with freshly installed
dependencies; here the fresh environment borrows this one's dependencies to stay fast.)"""

from __future__ import annotations

import importlib.util
import json
import site
import subprocess
import sys

import pytest
from conftest import BUNDLED_SAMPLE, REPO

pytestmark = pytest.mark.slow


def _run(command, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, check=True, **kwargs)


@pytest.mark.skipif(not (REPO / "Resources" / "Models").is_dir(), reason="needs the bundled models")
def test_wheel_installed_outside_the_checkout_finds_its_models_and_segments(tmp_path):
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q", "-w", tmp_path / "dist", REPO])
    wheel = next((tmp_path / "dist").glob("spinesegdiff-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel])
    target = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    (tmp_path / "venv-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    (tmp_path / "venv-deps.pth").rename(f"{target}/venv-deps.pth")
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)}
    info = _run([venv / "bin" / "spinesegdiff", "info", "--device", "cpu"], cwd=work, env=env).stdout
    assert f"models: {target}/SpineSegDiffLib/models (installed with the package)" in info
    assert "spinesegdiff-2d-t2" in info and "nnunet-2d-t2" in info
    _run([venv / "bin" / "spinesegdiff", "segment", BUNDLED_SAMPLE, "-o", "out", "--preset", "fast", "--quiet",
          "--device", "cpu"], cwd=work, env=env)
    report = json.loads((work / "out" / "image_report.json").read_text())
    assert report["models"]["diffusion"] == "spinesegdiff-2d-t2"
    assert report["structures"]["VB"]["voxels"] > 0
