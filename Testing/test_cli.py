"""End to end through the command line with tiny models: outputs, geometry, report, batches."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO, SHARED_DATA, oblique_direction, synthetic_spine

from SpineSegDiffLib.apps.cli import main
from SpineSegDiffLib.labels import STRUCTURES
from SpineSegDiffLib.outputs.segfile import read_seg_nrrd

FAST = ["--preset", "fast", "--samples", "2", "--steps", "2", "--quiet"]


def _segment(inputs, out, models, *extra):
    return main(["segment", *map(str, inputs), "-o", str(out), "--models", str(models), *FAST, *extra])


def test_outputs_land_on_the_input_grid(tmp_path, tiny_models):
    image = synthetic_spine(size=(90, 100, 11), spacing=(0.9, 0.8, 3.5), direction=oblique_direction(10))
    source = tmp_path / "oblique.nrrd"
    sitk.WriteImage(image, str(source))
    assert _segment([source], tmp_path / "out", tiny_models) == 0
    out = tmp_path / "out"
    expected = {"oblique_labels.nii.gz", "oblique_uncertainty.nii.gz", "oblique.seg.nrrd", "oblique_report.json",
                "oblique_preview.png", "oblique_levels.csv", "oblique_level_labels.nii.gz", "summary.json"}
    assert {p.name for p in out.iterdir()} == expected
    labels = sitk.ReadImage(str(out / "oblique_labels.nii.gz"))
    heat = sitk.ReadImage(str(out / "oblique_uncertainty.nii.gz"))
    for result in (labels, heat):
        assert result.GetSize() == image.GetSize()
        np.testing.assert_allclose(result.GetSpacing(), image.GetSpacing(), atol=1e-5)
        np.testing.assert_allclose(result.GetOrigin(), image.GetOrigin(), atol=1e-4)
        np.testing.assert_allclose(result.GetDirection(), image.GetDirection(), atol=1e-5)
    assert labels.GetPixelID() == sitk.sitkUInt8 and heat.GetPixelID() == sitk.sitkFloat32
    report = json.loads((out / "oblique_report.json").read_text())
    index = report["slice_index"]
    assert index == image.GetSize()[2] // 2
    other = np.delete(sitk.GetArrayFromImage(heat), index, axis=0)
    assert np.all(other == 0)  # 2D mode fills only the processed slice
    assert set(report["timings_s"]) == {"preprocess", "presegmentation", "diffusion", "postprocess", "total"}
    assert set(report["structures"]) == {s.key for s in STRUCTURES}
    assert report["options"]["resolved_sampling"]["samples"] == 2
    array, names = read_seg_nrrd(out / "oblique.seg.nrrd")
    assert names == {s.name: str(s.value) for s in STRUCTURES}
    np.testing.assert_array_equal(array, sitk.GetArrayFromImage(labels))


def test_same_seed_gives_identical_files(tmp_path, tiny_models):
    source = tmp_path / "case.mha"
    sitk.WriteImage(synthetic_spine(), str(source))
    for name in ("a", "b"):
        assert _segment([source], tmp_path / name, tiny_models, "--seed", "3") == 0
    for suffix in ("_labels.nii.gz", "_uncertainty.nii.gz"):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a" / f"case{suffix}")))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "b" / f"case{suffix}")))
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("sample", ["lumbar-t2-fastmonai", "thoracolumbar-t2-sct"])
def test_real_samples_run(tmp_path, tiny_models, sample):
    source = SHARED_DATA / "samples" / sample / "image.nii.gz"
    if not source.is_file():
        pytest.skip("shared samples not on this machine")
    assert _segment([source], tmp_path, tiny_models) == 0
    report = json.loads((tmp_path / "image_report.json").read_text())
    image = sitk.ReadImage(str(source))
    axis = report["sagittal_axis"]
    assert axis == 0 and report["slice_index"] == image.GetSize()[0] // 2


def test_batch_continues_past_failures_and_names_cases_by_folder(tmp_path, tiny_models):
    for name in ("p1", "p2"):
        (tmp_path / name).mkdir()
        sitk.WriteImage(synthetic_spine(seed=len(name)), str(tmp_path / name / "image.nii.gz"))
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"\x1f\x8b garbage")
    inputs = [tmp_path / "p1" / "image.nii.gz", broken, tmp_path / "p2" / "image.nii.gz"]
    assert _segment(inputs, tmp_path / "out", tiny_models) == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [c["status"] for c in summary["cases"]] == ["done", "failed", "done"]
    assert (tmp_path / "out" / "p2_image_report.json").is_file()
    assert not any(p.name.startswith("broken") for p in (tmp_path / "out").iterdir())


def test_killed_batch_resumes_every_case_exactly_once(tmp_path, tiny_models):
    cases = tmp_path / "cases"
    cases.mkdir()
    count = 6
    for k in range(count):
        sitk.WriteImage(synthetic_spine(seed=k), str(cases / f"case{k}.mha"))
    out = tmp_path / "out"
    # the standard preset: slow enough per case that the interrupt lands mid-batch
    command = [sys.executable, "-m", "SpineSegDiffLib.apps.cli", "segment", str(cases), "-o", str(out),
               "--models", str(tiny_models), "--preset", "standard", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "SpineSegDiff")}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (out / "case0_report.json").is_file() and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    finished_first = {p.name for p in out.glob("*_report.json")}
    assert 1 <= len(finished_first) < count
    assert not list(out.glob(".*")), "no staging folders or temporary files remain"
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    summary = json.loads((out / "summary.json").read_text())
    statuses = {c["stem"]: c["status"] for c in summary["cases"]}
    assert sorted(statuses) == [f"case{k}" for k in range(count)]
    assert all(statuses[p.removesuffix("_report.json")] == "skipped" for p in finished_first)
    assert sum(s == "done" for s in statuses.values()) == count - len(finished_first)
    assert len(list(out.glob("*_report.json"))) == count


def test_info_lists_models(tiny_models, capsys):
    assert main(["info", "--models", str(tiny_models)]) == 0
    printed = capsys.readouterr().out
    assert "tiny-nnunet" in printed and "tiny-diffusion" in printed and "device: cpu" in printed
