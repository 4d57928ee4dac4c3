"""The real worker process on the bundled sample, driven by the module's own client code.

Only the process runner differs from Slicer (a plain subprocess instead of ``qt.QProcess``, injected as
SlicerNNUnet's tests do); the worker, the batch engine, the models and the MRML scene (slicer-core) are real.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

slicer = pytest.importorskip("slicer")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("slicer-core (compiled MRML) is not installed", allow_module_level=True)

from conftest import BUNDLED_SAMPLE, REPO  # noqa: E402
from process_runner import SubprocessRunner  # noqa: E402

from SpineSegDiffLib.labels import STRUCTURES  # noqa: E402
from SpineSegDiffSlicer import levels_mrml, logic  # noqa: E402
from SpineSegDiffSlicer.worker_client import WorkerClient  # noqa: E402

MODELS = REPO / "Resources" / "Models"
OPTIONS = {"preset": "fast", "device": "cpu"}
if not (MODELS / "nnunet-2d-t2").is_dir() or not BUNDLED_SAMPLE.is_file():
    pytest.skip("bundled models or sample missing", allow_module_level=True)


def run_until_end(client: WorkerClient, timeout: float = 300.0) -> list[dict]:
    """Poll like the module's timer until the request ends; every event, in arrival order."""
    events, deadline = [], time.monotonic() + timeout
    while client.busy and time.monotonic() < deadline:
        events += client.poll()
        time.sleep(0.05)
    assert not client.busy, "the request did not end in time"
    return events


def wait_for(client: WorkerClient, predicate, timeout: float = 300.0) -> list[dict]:
    events, deadline = [], time.monotonic() + timeout
    while not any(predicate(e) for e in events) and time.monotonic() < deadline:
        events += client.poll()
        time.sleep(0.05)
    assert any(predicate(e) for e in events), events
    return events


@pytest.fixture(scope="module")
def client():
    worker = WorkerClient(SubprocessRunner, python=sys.executable, models_dir=MODELS)
    yield worker
    worker.close()


@pytest.fixture
def scene_and_volume():
    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLVolumeArchetypeStorageNode()
    node.SetFileName(str(BUNDLED_SAMPLE))
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "sample")
    assert node.ReadData(volume)
    return scene, volume


def ended(event: dict) -> bool:
    return event["event"] in ("result", "error")


def test_two_requests_reuse_the_models_and_results_load_into_mrml(client, scene_and_volume, tmp_path):
    scene, volume = scene_and_volume
    input_path = logic.write_input(volume, tmp_path)
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        job = client.submit(input_path, OPTIONS, stem="sample")
        events = [e for e in run_until_end(client) if e.get("id") == job.id]
        timings.append(time.perf_counter() - started)
        progress = [e for e in events if e["event"] == "progress"]
        result = events[-1]
        assert result["event"] == "result", result
        assert [e for e in events if ended(e)] == [result]
        assert progress and progress[0]["stage"] == "loading models"
        fractions = [e["fraction"] for e in progress]
        assert fractions == sorted(fractions) and fractions[-1] == 1.0
        nodes = logic.load_result_nodes(scene, volume, result["files"], closed_surface=False)
        review_cache = logic.ReviewCache()
        review_cache.load(nodes, result["files"]["review"])
        assert review_cache.regions(nodes, 0.05), "the worker's result names no review regions"
        assert nodes.segmentation.GetSegmentation().GetNumberOfSegments() == len(STRUCTURES)
        assert nodes.heatmap.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions()
        client.discard(job)
        assert not job.output_dir.exists()
        timings.append(result)
    first, second = timings[1], timings[3]
    assert (first["models"], second["models"]) == ("loaded", "reused")
    assert second["load_seconds"] < 0.05 < first["load_seconds"]
    print(f"\nfirst request {timings[0]:.1f} s (models loaded in {first['load_seconds']:.1f} s), "
          f"second {timings[2]:.1f} s (load {second['load_seconds']:.3f} s)")


def test_a_run_adds_the_levels_table_segments_lines_and_names(client, scene_and_volume, tmp_path):
    """After a real run on the sample: the levels from L5/S1 up as a table, segments, markups lines, names."""
    scene, volume = scene_and_volume
    scene.AddNode(slicer.vtkMRMLSelectionNode())  # units for the markups measurements
    job = client.submit(logic.write_input(volume, tmp_path), OPTIONS, stem="sample")
    result = run_until_end(client)[-1]
    assert result["event"] == "result", result
    report = logic.read_report(result["files"])
    nodes = levels_mrml.load_levels(scene, volume, report, logic.read_level_labels(result["files"]))
    client.discard(job)
    names = [row["name"] for row in levels_mrml.level_rows(report)]
    assert names[:3] == ["L5/S1", "L5", "L4/L5"] and len(report["discs"]) >= 5
    assert nodes.table.GetNumberOfRows() == len(names)
    segments = nodes.segmentation.GetSegmentation()
    assert [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())] == [
        row["name"] for row in levels_mrml.level_rows(report) if row.get("label_value")]
    l4_l5 = nodes.lines[("L4/L5", "middle_height")]
    assert l4_l5.GetMeasurement("length").GetValue() == pytest.approx(
        next(d for d in report["discs"] if d["name"] == "L4/L5")["middle_height_mm"], abs=0.06)
    assert 5 <= l4_l5.GetMeasurement("length").GetValue() <= 20  # a lumbar disc, in mm
    assert nodes.names.GetNumberOfControlPoints() == len(names)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


def test_cancel_stops_the_worker_within_two_seconds_and_leaves_nothing(client, scene_and_volume, tmp_path):
    scene, volume = scene_and_volume
    input_path = logic.write_input(volume, tmp_path)
    nodes_before = scene.GetNumberOfNodes()
    job = client.submit(input_path, OPTIONS, stem="sample")
    wait_for(client, lambda e: e["event"] == "progress" and e["stage"] != "loading models")
    pid = client.pid
    started = time.perf_counter()
    client.cancel()
    assert not client.busy and client.runner is None
    while alive(pid) and time.perf_counter() - started < 2.0:
        time.sleep(0.02)
    print(f"\nworker gone {time.perf_counter() - started:.2f} s after cancel")
    assert not alive(pid)
    assert not job.output_dir.exists()
    assert scene.GetNumberOfNodes() == nodes_before


def test_killed_worker_gives_one_clear_error_then_the_next_request_restarts_it(client, scene_and_volume, tmp_path):
    _scene, volume = scene_and_volume
    input_path = logic.write_input(volume, tmp_path)
    job = client.submit(input_path, OPTIONS, stem="sample")
    wait_for(client, lambda e: e["event"] == "ready" or e["event"] == "progress")
    old_pid = client.runner.process.pid
    os.kill(old_pid, signal.SIGKILL)
    events = run_until_end(client, timeout=30)
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 1 and not [e for e in events if e["event"] == "result"]
    assert "stopped unexpectedly" in errors[0]["message"] and "Click Segment again" in errors[0]["message"]
    assert not job.output_dir.exists()
    job = client.submit(input_path, OPTIONS, stem="sample")
    assert client.runner.process.pid != old_pid
    assert run_until_end(client)[-1]["event"] == "result"
    client.discard(job)


def test_worker_reports_a_bad_input_as_an_error_event(client, tmp_path):
    client.submit(tmp_path / "missing.nii.gz", OPTIONS)
    error = run_until_end(client)[-1]
    assert error["event"] == "error" and "does not exist" in error["message"]


def test_a_review_request_lists_the_regions_of_edited_segments(client, scene_and_volume, tmp_path):
    scene, volume = scene_and_volume
    job = client.submit(logic.write_input(volume, tmp_path / "in"), OPTIONS, stem="sample")
    result = run_until_end(client)[-1]
    nodes = logic.load_result_nodes(scene, volume, result["files"], closed_surface=False)
    client.discard(job)
    nodes.segmentation.GetSegmentation().RemoveSegment("VB")  # the reader deletes the vertebrae
    review_job = client.submit_review(*logic.write_review_input(scene, nodes, tmp_path / "review"))
    answer = run_until_end(client)[-1]
    assert answer["event"] == "result" and review_job.kind == "review", answer
    cache = logic.ReviewCache()
    cache.load(nodes, answer["files"]["review"])
    keys = {region.structure_key for region, _ras in cache.regions(nodes, 0.05)}
    assert keys and "VB" not in keys
    client.discard(review_job)


def test_a_bug_in_a_case_reaches_the_client_with_its_original_traceback(tmp_path, monkeypatch):
    """The batch engine records a bug in a case with its traceback; the worker's error carries that traceback."""
    from SpineSegDiffLib.apps import worker as worker_module

    def failing_case(self, case, work):
        return {"input": case.name, "stem": case.stem, "status": "failed",
                "reason": "unexpected error: ZeroDivisionError: division by zero",
                "traceback": 'Traceback (most recent call last):\n  File "refiner.py", line 42\nZeroDivisionError'}

    monkeypatch.setattr(worker_module.BatchEngine, "run_case", failing_case)
    monkeypatch.setattr(worker_module.BatchEngine, "segmenter", lambda self, device: None)
    events = []
    worker = worker_module.Worker(events.append, MODELS)
    worker.segment({"id": "x", "input": str(BUNDLED_SAMPLE), "output_dir": str(tmp_path), "options": OPTIONS})
    error = events[-1]
    assert error["event"] == "error" and error["message"].endswith("division by zero")
    assert error["details"].endswith('File "refiner.py", line 42\nZeroDivisionError')
