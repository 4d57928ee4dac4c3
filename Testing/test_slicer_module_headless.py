"""The module's Logic class and the Slicer batch script, run on real MRML (slicer-core) without Qt.

Only the pieces that exist solely inside the Slicer application are replaced: the ``qt`` module, the
ScriptedLoadableModule base classes, the parameter node decorator, the application scene and
``slicer.util.loadVolume`` (which needs the application's IO manager; here Slicer's own volume reader).
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (compiled MRML) is not installed", allow_module_level=True)

from conftest import REPO, synthetic_spine  # noqa: E402

from SpineSegDiffLib.labels import STRUCTURES  # noqa: E402
from SpineSegDiffSlicer import logic as core  # noqa: E402
from SpineSegDiffSlicer import roles  # noqa: E402


class _Base:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def getParameterNode(self):
        return None


def _choice(values):
    return ("Choice", tuple(values))


def _within_range(low, high):
    return ("WithinRange", low, high)


@pytest.fixture
def scene(monkeypatch):
    """A fresh scene standing in for ``slicer.mrmlScene``, plus the application-only modules."""
    scene = slicer.vtkMRMLScene()
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
                 "ScriptedLoadableModuleTest"):
        setattr(scripted, name, type(name, (_Base,), {}))
    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.parameterNodeWrapper = lambda cls: cls
    wrapper.Choice, wrapper.WithinRange = _choice, _within_range
    monkeypatch.setitem(sys.modules, "qt", types.ModuleType("qt"))
    monkeypatch.setitem(sys.modules, "slicer.ScriptedLoadableModule", scripted)
    monkeypatch.setitem(sys.modules, "slicer.parameterNodeWrapper", wrapper)
    monkeypatch.setattr(slicer.util, "loadVolume", lambda path: _read_volume(scene, path))
    return scene


def _read_volume(scene, path: str):
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", Path(path).name.split(".")[0])
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(path)
    if not storage.ReadData(node):
        raise RuntimeError(f"Failed to load volume {path}")
    return node


def _load(name: str, path: Path, monkeypatch):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def module(scene, monkeypatch):
    return _load("SpineSegDiff", REPO / "SpineSegDiff" / "SpineSegDiff.py", monkeypatch)


@pytest.fixture
def options():
    return core.make_options(preset="fast", device="cpu", samples=2, steps=2)


def run_module_job(logic, volume, options, timeout: float = 300.0):
    """What the module's timer does: start the job, poll the worker until its request ends."""
    job = logic.startJob(volume, options)
    events, deadline = [], time.monotonic() + timeout
    while not any(e["event"] in ("result", "error") for e in events) and time.monotonic() < deadline:
        events += logic.pollJob()
        time.sleep(0.05)
    return job, events


def test_module_logic_runs_the_worker_and_adds_the_result_nodes(module, scene, tiny_models, options):
    from process_runner import SubprocessRunner

    from SpineSegDiffSlicer import mrml
    from SpineSegDiffSlicer.jobs import Jobs
    from SpineSegDiffSlicer.worker_client import WorkerClient

    volume = mrml.volume_node_from_image(scene, synthetic_spine(), "case")
    logic = module.SpineSegDiffLogic(modelsDir=tiny_models)
    logic.jobs = Jobs(lambda: WorkerClient(SubprocessRunner, python=sys.executable, models_dir=tiny_models))
    try:
        job, events = run_module_job(logic, volume, options)
        assert events[-1]["event"] == "result", events[-1]
        assert logic.jobs.input_dir is None and logic.jobs.running is None  # the worker's input file is gone
        assert logic.jobs.source is volume
        nodes, report = logic.loadResult(volume, job, events[-1]["files"])
    finally:
        logic.closeWorker()
    assert [nodes.segmentation.GetSegmentation().GetNthSegment(i).GetName() for i in range(3)] == [
        s.name for s in STRUCTURES]
    assert nodes.heatmap.GetAttribute(roles.ROLE_ATTRIBUTE) == "uncertainty"
    assert report["sagittal_axis"] in (0, 1, 2)
    assert not Path(events[-1]["files"]["labels"]).exists()  # the worker's files are removed once loaded
    assert logic.firstInputVolume() is volume  # the heatmap is never offered as an input


def test_the_parameter_node_offers_exactly_the_cores_choices(module):
    """Modes, presets and devices of the parameter node (and so of its UI) come from SpineSegDiffLib.options."""
    import typing

    from SpineSegDiffLib.options import DEVICES, MODES, PRESET_NAMES

    hints = typing.get_type_hints(module.SpineSegDiffParameterNode, include_extras=True)
    offered = {name: hints[name].__metadata__[0] for name in ("mode", "preset", "device")}
    assert offered == {"mode": ("Choice", MODES), "preset": ("Choice", PRESET_NAMES), "device": ("Choice", DEVICES)}


def _unmet_report(install):
    unmet = install.Unmet("nnunetv2", ">=2.8", "2.7.0", ("SpineSegDiff",))
    return install.Report(unmet=(unmet,), torch=(), slicer=(), torch_specifier=">=2.8")


def _application(monkeypatch, confirm: bool) -> list:
    """The application-only calls the install path makes (dialogs, cursor); returns the errors shown."""
    shown = []
    monkeypatch.setattr(slicer.util, "confirmOkCancelDisplay", lambda *args, **kwargs: confirm)
    monkeypatch.setattr(slicer.util, "errorDisplay", lambda text, **kwargs: shown.append(text))
    cursor = types.SimpleNamespace(setOverrideCursor=lambda *a: None, restoreOverrideCursor=lambda: None)
    monkeypatch.setattr(slicer, "app", cursor, raising=False)
    monkeypatch.setitem(sys.modules["qt"].__dict__, "Qt", types.SimpleNamespace(WaitCursor=3))
    return shown


def test_first_click_installs_with_slicers_pip_after_asking(module, monkeypatch):
    """ensureRequirements -> install.install with Slicer's pip_install and the PyTorch extension's installer."""
    from SpineSegDiffSlicer import install

    reports = iter([_unmet_report(install)])
    monkeypatch.setattr(install, "check", lambda: next(reports))
    _application(monkeypatch, confirm=True)
    calls = []
    monkeypatch.setattr(install, "install", lambda pip, torch, log: calls.append((pip, torch)))
    assert module.SpineSegDiffLogic().ensureRequirements() is True
    assert calls == [(slicer.util.pip_install, module.installTorchWithExtension)]


def test_a_failed_install_is_one_message_and_no_traceback_escapes(module, monkeypatch):
    from SpineSegDiffSlicer import install

    monkeypatch.setattr(install, "check", lambda: _unmet_report(install))
    shown = _application(monkeypatch, confirm=True)

    def failing(pip, torch, log):
        raise RuntimeError("Still unmet: nnunetv2>=2.8. Click Reinstall dependencies")

    monkeypatch.setattr(install, "install", failing)
    monkeypatch.setattr(install, "repair", failing)
    logic = module.SpineSegDiffLogic()
    assert logic.ensureRequirements() is False and logic.reinstallDependencies() is False
    assert len(shown) == 2 and all("Reinstall dependencies" in text for text in shown)


def test_declined_install_or_an_unsupported_platform_does_not_segment(module, monkeypatch):
    from SpineSegDiffSlicer import install

    monkeypatch.setattr(install, "check", lambda: _unmet_report(install))
    shown = _application(monkeypatch, confirm=False)
    monkeypatch.setattr(install, "install", lambda *args, **kwargs: pytest.fail("installed without consent"))
    assert module.SpineSegDiffLogic().ensureRequirements() is False
    monkeypatch.setattr(install, "unsupported_platform_message", lambda: "SpineSegDiff needs 3D Slicer 5.10")
    assert module.SpineSegDiffLogic().ensureRequirements() is False
    assert shown == ["SpineSegDiff needs 3D Slicer 5.10"]


def test_a_failed_start_leaves_no_input_folder(module, scene, monkeypatch, tmp_path):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")  # no image data: refused
    with pytest.raises(Exception):  # noqa: B017 (the message is the core's; the folder is what matters)
        module.SpineSegDiffLogic().startJob(volume, core.make_options())
    assert list(tmp_path.iterdir()) == []


def test_batch_script_refuses_outdated_packages(module, scene, tmp_path, monkeypatch, capsys):
    from SpineSegDiffSlicer import install

    batch = _load("batch_segment_slicer", REPO / "Resources" / "Scripts" / "batch_segment_slicer.py", monkeypatch)
    monkeypatch.setattr(install, "check", lambda path=None: _unmet_report(install))
    args = batch.parse_arguments(["--", "--input", str(tmp_path), "--output", str(tmp_path / "out")])
    assert batch.run(args) == 2
    assert "nnunetv2>=2.8" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_batch_script_segments_a_folder_records_failures_and_skips_finished_cases(module, scene, tiny_models,
                                                                                  tmp_path, monkeypatch):
    batch = _load("batch_segment_slicer", REPO / "Resources" / "Scripts" / "batch_segment_slicer.py", monkeypatch)
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    sitk.WriteImage(synthetic_spine(), str(inputs / "good.nrrd"))
    sitk.WriteImage(sitk.Image([16, 64, 64], sitk.sitkFloat32) + 3.0, str(inputs / "blank.nrrd"))
    argv = ["--", "--input", str(inputs), "--output", str(out), "--models", str(tiny_models), "--device", "cpu",
            "--preset", "fast", "--samples", "2", "--steps", "2"]
    assert batch.run(batch.parse_arguments(argv)) == 1
    cases = {c["stem"]: c for c in json.loads((out / "summary.json").read_text())["cases"]}
    assert cases["good"]["status"] == "done" and cases["blank"]["status"] == "failed"
    assert "constant" in cases["blank"]["reason"]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "good.seg.nrrd")))
    assert labels.shape == sitk.GetArrayViewFromImage(synthetic_spine()).shape
    assert set(np.unique(labels)) <= {0} | {s.value for s in STRUCTURES}
    assert sitk.ReadImage(str(out / "good_uncertainty.nii.gz")).GetSize() == synthetic_spine().GetSize()
    assert (out / "good_report.json").is_file()  # the core's writer: finished when the report exists
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == 0  # inputs and results are released
    inputs.joinpath("blank.nrrd").unlink()
    assert batch.run(batch.parse_arguments(argv)) == 0
    assert json.loads((out / "summary.json").read_text())["cases"][0]["status"] == "skipped"


def test_batch_script_exits_with_2_on_a_missing_input_or_bad_arguments(module, scene, tmp_path, monkeypatch, capsys):
    batch = _load("batch_segment_slicer", REPO / "Resources" / "Scripts" / "batch_segment_slicer.py", monkeypatch)
    script = "batch_segment_slicer.py"
    monkeypatch.setattr(sys, "argv", [script, "--", "--input", str(tmp_path / "nothing"), "--output", str(tmp_path)])
    assert batch.main() == 2
    assert "neither a folder" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", [script, "--output", str(tmp_path)])
    assert batch.main() == 2


def _screenshot_script(monkeypatch):
    return _load("make_screenshot", REPO / "Resources" / "Scripts" / "make_screenshot.py", monkeypatch)


def test_screenshot_script_explains_missing_models(tmp_path, monkeypatch, capsys):
    script = _screenshot_script(monkeypatch)
    assert script.main(["--models", str(tmp_path / "none"), "--output", str(tmp_path / "shot.png")]) == 1
    assert "missing" in capsys.readouterr().out
    assert not (tmp_path / "shot.png").exists()


def test_screenshot_script_renders_a_png(tiny_models, tmp_path, monkeypatch):
    script = _screenshot_script(monkeypatch)
    if not script.SAMPLE.is_file():
        pytest.skip("the bundled sample is not in this checkout")
    output = tmp_path / "shot.png"
    arguments = ["--models", str(tiny_models), "--device", "cpu", "--preset", "fast", "--samples", "1", "--steps", "1"]
    assert script.main([*arguments, "--output", str(output)]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
