"""Cohorts on a Dask ``LocalCluster`` of two processes: the same outputs as the single-process batch, a failing
case recorded while the others finish, and resume after an interrupted run."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import BUNDLED_SAMPLE, REPO
from test_golden_outputs import digest

pytest.importorskip("distributed")

from SpineSegDiffLib.apps.cases import run_batch  # noqa: E402
from SpineSegDiffLib.apps.cluster import run_on_cluster, threads_per_worker  # noqa: E402
from SpineSegDiffLib.errors import SpineSegDiffError  # noqa: E402
from SpineSegDiffLib.options import SegmentOptions  # noqa: E402

MODELS = REPO / "Resources" / "Models"
OPTIONS = SegmentOptions(preset="fast", device="cpu", seed=3)
if not BUNDLED_SAMPLE.is_file() or not (MODELS / "nnunet-2d-t2").is_dir():
    pytest.skip("the bundled sample or models are missing", allow_module_level=True)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Copies of the sample, and a volume that passes the header checks but fails in the worker (constant)."""
    folder = tmp_path_factory.mktemp("cohort")
    for name in ("a", "b", "c"):
        shutil.copy(BUNDLED_SAMPLE, folder / f"{name}.nii.gz")
    sample = sitk.ReadImage(str(BUNDLED_SAMPLE))
    constant = sitk.GetImageFromArray(np.full(sitk.GetArrayViewFromImage(sample).shape, 7, np.int16))
    constant.CopyInformation(sample)
    sitk.WriteImage(constant, str(folder / "flat.nii.gz"))
    return folder


def outputs(folder) -> dict[str, str]:
    return {p.name: digest(p) for p in sorted(folder.iterdir()) if p.is_file() and p.name != "summary.json"}


def statuses(summary: dict) -> dict[str, str]:
    return {case["stem"]: case["status"] for case in summary["cases"]}


@pytest.fixture(scope="module")
def single_process(cohort, tmp_path_factory):
    """The reference run with the PyTorch threads each of the two local workers gets (floating-point sums
    depend on the thread count: the heatmap's last bits would differ, the labels would not)."""
    import torch

    out, threads = tmp_path_factory.mktemp("single"), torch.get_num_threads()
    torch.set_num_threads(threads_per_worker(2))
    try:
        return out, run_batch([cohort], out, OPTIONS, MODELS, show_progress=False)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def on_two_workers(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("cluster")
    return out, run_on_cluster([cohort], out, OPTIONS, MODELS, workers=2, show_progress=False)


def test_two_workers_write_what_one_process_writes(single_process, on_two_workers):
    """Byte for byte, at the same PyTorch thread count (the local cluster shares the cores out)."""
    (one, one_summary), (two, two_summary) = single_process, on_two_workers
    assert outputs(two) == outputs(one) and len(outputs(one)) >= 3 * 7
    assert statuses(two_summary) == statuses(one_summary) == {"a": "done", "b": "done", "c": "done",
                                                              "flat": "failed"}
    assert [c["stem"] for c in two_summary["cases"]] == [c["stem"] for c in one_summary["cases"]]
    assert json.loads((two / "summary.json").read_text())["cases"] == two_summary["cases"]


def test_a_failing_case_is_recorded_while_the_others_finish(on_two_workers):
    _out, summary = on_two_workers
    flat = next(case for case in summary["cases"] if case["stem"] == "flat")
    assert "constant" in flat["reason"]


def test_an_interrupted_run_resumes_with_what_is_missing(cohort, on_two_workers, tmp_path):
    done, _summary = on_two_workers
    out = tmp_path / "resumed"
    shutil.copytree(done, out)
    (out / "b_report.json").unlink()  # b was being written when the run was killed: its report is last
    summary = run_on_cluster([cohort], out, OPTIONS, MODELS, workers=2, show_progress=False)
    assert statuses(summary) == {"a": "skipped", "b": "done", "c": "skipped", "flat": "failed"}
    assert outputs(out) == outputs(done)


def test_the_command_line_runs_a_cohort_on_two_workers(cohort, on_two_workers, tmp_path, capsys):
    from SpineSegDiffLib.apps.cli import main

    done, _summary = on_two_workers
    arguments = ["segment", str(cohort), "-o", str(tmp_path), "--preset", "fast", "--device", "cpu", "--seed", "3",
                 "--models", str(MODELS), "--workers", "2", "--quiet"]
    assert main(arguments) == 1  # the constant volume fails, the others are done
    assert outputs(tmp_path) == outputs(done)
    assert "FAILED: 1 of 4 cases failed" in capsys.readouterr().err


def test_bad_worker_counts_and_a_missing_extra_are_one_message(tmp_path, capsys, monkeypatch):
    from SpineSegDiffLib.apps import cluster
    from SpineSegDiffLib.apps.cli import main

    assert main(["segment", str(BUNDLED_SAMPLE), "-o", str(tmp_path / "a"), "--workers", "0"]) == 1
    assert "--workers must be at least 1" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the cluster extra were not installed
    with pytest.raises(SpineSegDiffError, match="distributed"), cluster._client(2, None):
        pass
