"""The batch engine and the command line's failure handling: options and inputs checked before any
model loads, every per-case failure recorded, a plain last line and a non-zero exit when anything failed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import SimpleITK as sitk
import torch
from conftest import REPO, synthetic_spine

from SpineSegDiffLib.apps.batch import BatchEngine, Case, case_line, is_out_of_memory
from SpineSegDiffLib.apps.cli import main
from SpineSegDiffLib.modelset.model_set import open_models
from SpineSegDiffLib.options import SegmentOptions


@pytest.fixture(scope="module")
def volume_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("input") / "case.mha"
    sitk.WriteImage(synthetic_spine(), str(path))
    return path


BAD_OPTIONS = [
    (["--t-start", "-1"], "--t-start"),
    (["--t-start", "100"], "--t-start 100"),
    (["--samples", "0"], "--samples"),
    (["--samples", "100000"], "--samples"),
    (["--steps", "0"], "--steps"),
    (["--fused-steps", "0"], "--fused-steps"),
    (["--steps", "2", "--fused-steps", "3"], "--fused-steps"),
    (["--t-start", "3", "--steps", "5"], "--steps 5"),
    (["--seed", "-1"], "--seed"),
    (["--slice-index", "-2"], "--slice-index"),
    (["--mode", "slices", "--slice-index", "3"], "--slice-index"),
]


@pytest.mark.parametrize(("extra", "named"), BAD_OPTIONS)
def test_each_bad_option_is_one_message_before_anything_runs(tmp_path, tiny_models, volume_file, capsys,
                                                              extra, named):
    out = tmp_path / "out"
    code = main(["segment", str(volume_file), "-o", str(out), "--models", str(tiny_models), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: ") and named in err and "Traceback" not in err
    assert "-> " in err, "says what to do"
    assert not out.exists(), "nothing was written"


def test_missing_input_fails_fast_without_loading_models_and_names_the_file_once(tmp_path, tiny_models):
    missing = tmp_path / "missing-scan.nii.gz"
    code = (f"import sys; from SpineSegDiffLib.apps.cli import main; c = main(['segment', {str(missing)!r}, '-o', "
            f"{str(tmp_path / 'out')!r}, '--models', {str(tiny_models)!r}, '--quiet']); "
            "print('nnunet loaded' if 'nnunetv2' in sys.modules else 'no model loaded'); sys.exit(c)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO / "SpineSegDiff"), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 1
    assert run.stdout.strip() == "no model loaded"
    lines = run.stderr.strip().splitlines()
    assert lines[-1].startswith("FAILED: 1 of 1 cases failed")
    assert run.stderr.count(str(missing)) == 1 and "does not exist" in run.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["cases"][0]["status"] == "failed"


def test_an_unexpected_error_in_the_middle_of_a_batch_is_recorded_and_the_batch_goes_on(tmp_path, tiny_models,
                                                                                       volume_file):
    from SpineSegDiffLib.apps.cases import segment_file

    options = SegmentOptions(samples=1, steps=1, device="cpu")
    real_work = segment_file(tmp_path, options, overwrite=False)

    def work(case, segmenter):
        if case.stem == "middle":
            raise IndexError("index 7 is out of bounds")  # a library failure, not a user mistake
        return real_work(case, segmenter)

    cases = [Case(str(volume_file), stem, volume_file) for stem in ("first", "middle", "last")]
    lines = []
    summary = BatchEngine(open_models(tiny_models), options, tmp_path, lines.append).run(cases, work)
    assert [c["status"] for c in summary["cases"]] == ["done", "failed", "done"]
    failed = summary["cases"][1]
    assert failed["reason"] == "unexpected error: IndexError: index 7 is out of bounds"
    assert "Traceback" in failed["traceback"]
    assert (tmp_path / "last_report.json").is_file() and not (tmp_path / "middle_report.json").exists()
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert sum(line.startswith("loading models") for line in lines) == 1, "models loaded once"


def test_out_of_gpu_memory_under_auto_is_retried_on_the_cpu(tmp_path, tiny_models):
    calls = []

    def work(case, segmenter):
        calls.append(str(segmenter.device))
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return {}

    engine = BatchEngine(open_models(tiny_models), SegmentOptions(device="auto", refine=False), tmp_path)
    engine.device = torch.device("cuda")  # as on a GPU machine: the retry must go to the CPU
    entry = engine.run_case(Case("scan.nii.gz", "scan", None), work)
    assert entry["status"] == "done" and entry["note"] == "ran out of GPU memory; done on the CPU"
    assert calls == ["cpu", "cpu"]


def test_out_of_memory_on_an_explicit_device_is_a_clear_failure(tmp_path, tiny_models):
    def work(case, segmenter):
        raise RuntimeError("MPS backend out of memory (MPS allocated: 9 GB)")

    engine = BatchEngine(open_models(tiny_models), SegmentOptions(device="cpu", refine=False), tmp_path)
    engine.device = torch.device("mps")
    entry = engine.run_case(Case("scan.nii.gz", "scan", None), work)
    assert entry["status"] == "failed"
    assert entry["reason"].startswith("scan.nii.gz: out of MPS memory") and "--device cpu" in entry["reason"]
    assert case_line(entry).count("scan.nii.gz") == 1
    assert is_out_of_memory(torch.OutOfMemoryError("x")) and not is_out_of_memory(ValueError("out of memory"))


def test_the_slicer_modules_single_run_gets_the_same_out_of_memory_rule():
    from SpineSegDiffLib.apps.batch import on_gpu_or_cpu
    from SpineSegDiffLib.errors import SpineSegDiffError

    def run(segmenter):
        if segmenter == "gpu":
            raise torch.OutOfMemoryError("CUDA out of memory")
        return "labels"

    cuda = torch.device("cuda")
    assert on_gpu_or_cpu(run, "gpu", cuda, "auto", lambda: "cpu", "this volume") == ("labels", True)
    with pytest.raises(SpineSegDiffError, match="this volume: out of CUDA memory") as caught:
        on_gpu_or_cpu(run, "gpu", cuda, "cuda", lambda: "cpu", "this volume")
    assert "--device cpu" in str(caught.value)
