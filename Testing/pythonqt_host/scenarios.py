"""The module's worker client under Slicer's real Qt binding: run by the PythonQt host (``host.cpp``).

Each scenario drives the module's own :class:`WorkerClient` and :class:`QProcessRunner` from a real
``QTimer`` inside the Qt event loop, as the module's widget does, against the real worker process started
through a launcher that runs Python as its child (``PythonSlicer``'s shape). A scenario is a generator
that yields :class:`Wait` conditions; the driver polls the client on every tick and resumes the scenario
when its condition holds. Results go to a JSON file that ``Testing/test_under_pythonqt.py`` asserts on.

host_arguments: ``[this script, results.json, models folder, input image, [scenario,scenario...]]``; ``PythonSlicer``
must be on PATH. ``SPINESEGDIFF_PYTHONQT_MUTANT=bytes`` puts the old ``bytes(QByteArray)`` conversion back.
"""

import json
import os
import signal
import sys
import time
import traceback
import types
from pathlib import Path

import PythonQt
from PythonQt import QtCore

REPO = Path(host_arguments[0]).resolve().parents[2]  # noqa: F821 (set by the host)
RESULTS, MODELS, IMAGE = (Path(a) for a in host_arguments[1:4])  # noqa: F821
POLL_MS = 150  # the module's timer interval
GONE_SECONDS = 2.0
SCENARIO_SECONDS = 240.0


def install_slicer_qt_module() -> None:
    """``import qt`` as in Slicer, whose ``qt`` package gathers PythonQt's Qt modules into one namespace."""
    qt = types.ModuleType("qt")
    for name in ("QtCore", "QtGui"):
        module = getattr(PythonQt, name)
        for attribute in dir(module):
            if not attribute.startswith("__"):
                setattr(qt, attribute, getattr(module, attribute))
    sys.modules["qt"] = qt


install_slicer_qt_module()
sys.path.insert(0, str(REPO / "SpineSegDiff"))

import qt  # noqa: E402

from SpineSegDiffSlicer.qprocess_runner import QProcessRunner, text_of  # noqa: E402
from SpineSegDiffSlicer.worker_client import BOOTSTRAP, WorkerClient  # noqa: E402

if os.environ.get("SPINESEGDIFF_PYTHONQT_MUTANT") == "bytes":  # the old bug, to prove the scenarios catch it
    import SpineSegDiffSlicer.qprocess_runner as runner_module

    runner_module.text_of = lambda array: bytes(array).decode("utf-8", errors="replace")

CENTRAL = {"preset": "fast", "device": "cpu"}
VOLUME = {"preset": "fast", "device": "cpu", "mode": "volume"}


class Wait:
    """Resume the scenario when ``condition()`` holds; fail it after ``seconds``."""

    def __init__(self, what: str, condition, seconds: float = SCENARIO_SECONDS) -> None:
        self.what, self.condition, self.deadline = what, condition, time.monotonic() + seconds


def alive(pid) -> bool:
    """Whether a process exists and is not a zombie (a killed orphan may wait to be reaped)."""
    if not pid:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0] not in ("Z", "X")
    except (FileNotFoundError, IndexError):
        return False


def describe(pid: int) -> str:
    """State, parent and command line of a process, for failure messages."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return f"{pid}: gone"
    return f"{pid}: state {stat[0]}, parent {stat[1]}, {command[:160]}"


def worker_processes() -> list[int]:
    """Ids of live worker processes started by this client (their command line holds the bootstrap)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            program = Path(command.split(" ", 1)[0]).name
            if BOOTSTRAP in command and program.startswith("python") and alive(int(entry.name)):
                found.append(int(entry.name))
    return found


class Context:
    """What a scenario sees: the client, the events of the scenario so far, measurements to report."""

    def __init__(self, client: WorkerClient) -> None:
        self.client, self.events, self.measured = client, [], {}

    def ended(self) -> bool:
        return not self.client.busy

    def computing(self, job) -> bool:
        """Whether ``job`` reported progress past loading the models."""
        return any(e.get("event") == "progress" and e["stage"] != "loading models" for e in self.request_events(job))

    def request_events(self, job) -> list:
        return [e for e in self.events if e.get("id") == job.id]


def ended_with_result(ctx: Context, job) -> dict:
    events = ctx.request_events(job)
    ending = [e for e in events if e["event"] in ("result", "error")]
    assert len(ending) == 1, f"one ending event expected, got {ending}"
    assert ending[0]["event"] == "result", ending[0].get("message")
    return ending[0]


def wait_gone(what: str, pid):
    return Wait(f"{what} (pid {pid}) gone", lambda: not alive(pid), GONE_SECONDS)


# --- scenarios -------------------------------------------------------------------------------------------------


def binding_facts(ctx):
    """What the runner relies on: PythonQt's QByteArray has ``data()`` and no buffer protocol."""
    array = qt.QByteArray(b"one line\n")
    try:
        bytes(array)
    except TypeError:
        pass
    else:
        raise AssertionError("bytes(QByteArray) worked: this binding is not PythonQt as Slicer embeds it")
    assert text_of(array) == "one line\n"
    return
    yield


def a_result_arrives(ctx):
    job = ctx.client.submit(IMAGE, CENTRAL, stem="sample")
    yield Wait("the request ended", ctx.ended)
    result = ended_with_result(ctx, job)
    progress = [e for e in ctx.request_events(job) if e["event"] == "progress"]
    fractions = [e["fraction"] for e in progress]
    assert progress and progress[0]["stage"] == "loading models", progress[:1]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0, fractions
    for key in ("labels", "uncertainty", "report", "review"):
        assert Path(result["files"][key]).is_file(), key
    assert result["models"] == "loaded"
    ctx.measured.update(progress_events=len(progress), seconds=result["seconds"])
    files = result["files"]
    review = ctx.client.submit_review(Path(files["labels"]), Path(files["uncertainty"]))
    yield Wait("the review request ended", ctx.ended)
    answer = ended_with_result(ctx, review)
    assert json.loads(Path(answer["files"]["review"]).read_text())["levels"], answer
    for finished in (job, review):
        ctx.client.discard(finished)
        assert not finished.output_dir.exists()


def two_requests_reuse_the_models(ctx):
    pid = ctx.client.pid
    job = ctx.client.submit(IMAGE, CENTRAL, stem="again")
    yield Wait("the second request ended", ctx.ended)
    result = ended_with_result(ctx, job)
    assert result["models"] == "reused" and ctx.client.pid == pid, (result["models"], pid, ctx.client.pid)
    ctx.measured.update(load_seconds=result["load_seconds"], seconds=result["seconds"])
    ctx.client.discard(job)


def cancel_stops_the_real_worker(ctx):
    job = ctx.client.submit(IMAGE, VOLUME, stem="volume")
    yield Wait("volume mode computing", lambda: ctx.computing(job))
    pid, launcher = ctx.client.pid, ctx.client.runner.process.processId()
    started = time.monotonic()
    ctx.client.cancel()
    ctx.measured["cancel_call_seconds"] = round(time.monotonic() - started, 4)
    yield wait_gone("worker", pid)
    ctx.measured["worker_gone_seconds"] = round(time.monotonic() - started, 3)
    yield wait_gone("launcher", launcher)
    assert not job.output_dir.exists() and not ctx.client.busy
    job = ctx.client.submit(IMAGE, CENTRAL, stem="after-cancel")
    yield Wait("a new worker ready", lambda: ctx.client.pid is not None)
    assert ctx.client.pid != pid and worker_processes() == [ctx.client.pid], [describe(p) for p in worker_processes()]
    yield Wait("the request after cancel ended", ctx.ended)
    ended_with_result(ctx, job)
    ctx.client.discard(job)


def a_killed_worker_gives_one_clear_error(ctx):
    job = ctx.client.submit(IMAGE, CENTRAL, stem="killed")
    yield Wait("the worker ready", lambda: ctx.client.pid is not None)
    pid = ctx.client.pid
    os.kill(pid, signal.SIGKILL)
    yield Wait("the request ended", ctx.ended, 30)
    errors = [e for e in ctx.request_events(job) if e["event"] == "error"]
    assert len(errors) == 1 and not [e for e in ctx.request_events(job) if e["event"] == "result"], errors
    assert "stopped unexpectedly" in errors[0]["message"] and "Click Segment again" in errors[0]["message"]
    assert not job.output_dir.exists()
    ctx.measured["message"] = errors[0]["message"]
    job = ctx.client.submit(IMAGE, CENTRAL, stem="restarted")
    yield Wait("the next request ended", ctx.ended)
    ended_with_result(ctx, job)
    assert ctx.client.pid not in (None, pid)
    ctx.client.discard(job)


def a_killed_launcher_takes_the_worker_with_it(ctx):
    """The client loses the worker's parent (e.g. the launcher killed from outside): the worker ends itself."""
    job = ctx.client.submit(IMAGE, VOLUME, stem="orphan")
    yield Wait("volume mode computing", lambda: ctx.computing(job))
    pid = ctx.client.pid
    started = time.monotonic()
    os.kill(ctx.client.runner.process.processId(), signal.SIGKILL)
    yield wait_gone("orphaned worker", pid)
    ctx.measured["worker_gone_seconds"] = round(time.monotonic() - started, 3)
    yield Wait("the request ended", ctx.ended, 30)
    assert [e["event"] for e in ctx.request_events(job) if e["event"] in ("result", "error")] == ["error"]


def closing_leaves_no_process(ctx):
    job = ctx.client.submit(IMAGE, CENTRAL, stem="idle")
    yield Wait("the request ended", ctx.ended)
    ended_with_result(ctx, job)
    ctx.client.discard(job)
    pid, launcher = ctx.client.pid, ctx.client.runner.process.processId()
    ctx.client.close()
    yield wait_gone("idle worker after close", pid)
    yield wait_gone("launcher after close", launcher)
    job = ctx.client.submit(IMAGE, VOLUME, stem="busy")
    yield Wait("volume mode computing", lambda: ctx.computing(job))
    pid = ctx.client.pid
    ctx.client.close()
    yield wait_gone("busy worker after close", pid)
    yield Wait("no runner left", lambda: not ctx.client.retired and not ctx.client.runner, GONE_SECONDS)
    assert worker_processes() == [], [describe(p) for p in worker_processes()]


def cancel_during_start_up_leaves_no_process(ctx):
    """Cancel before the worker said ``ready`` (its pid unknown): killing the launcher must be enough."""
    ctx.client.close()
    yield Wait("no worker left", lambda: not worker_processes(), GONE_SECONDS)
    job = ctx.client.submit(IMAGE, CENTRAL, stem="start-up")
    yield Wait("the worker importing", lambda: len(worker_processes()) == 1, 10)
    assert ctx.client.pid is None, "the worker was ready before it could be cancelled during start-up"
    ctx.client.cancel()
    started = time.monotonic()
    yield Wait("no worker left", lambda: not worker_processes(), GONE_SECONDS)
    ctx.measured["worker_gone_seconds"] = round(time.monotonic() - started, 3)
    assert not job.output_dir.exists()


SCENARIOS = [binding_facts, a_result_arrives, two_requests_reuse_the_models, cancel_stops_the_real_worker,
             cancel_during_start_up_leaves_no_process, a_killed_worker_gives_one_clear_error,
             a_killed_launcher_takes_the_worker_with_it,
             closing_leaves_no_process]


# --- driver ----------------------------------------------------------------------------------------------------


class Driver:
    """Runs the scenarios one after the other from a QTimer, polling the client on every tick."""

    def __init__(self) -> None:
        self.client = WorkerClient(QProcessRunner, models_dir=MODELS)
        chosen = host_arguments[4].split(",") if len(host_arguments) > 4 else None  # noqa: F821
        self.results, self.pending = {}, [s for s in SCENARIOS if chosen is None or s.__name__ in chosen]
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.connect("timeout()", self.tick)
        self.current = None
        self.longest_poll = 0.0

    def start(self) -> None:
        self.timer.start()

    def tick(self) -> None:
        try:
            started = time.monotonic()
            events = self.client.poll()
            self.longest_poll = max(self.longest_poll, time.monotonic() - started)
            self.advance(events)
        except Exception:  # keep the event loop alive whatever a scenario does
            self.finish_scenario(False, traceback.format_exc())

    def advance(self, events) -> None:
        if self.current is None:
            self.begin_next()
            return
        self.context.events += events
        if self.wait.condition():
            self.resume()
        elif time.monotonic() > self.wait.deadline:
            self.finish_scenario(False, f"timed out waiting for: {self.wait.what}")

    def begin_next(self) -> None:
        if not self.pending:
            self.end()
            return
        scenario = self.pending.pop(0)
        self.current, self.context, self.began = scenario, Context(self.client), time.monotonic()
        self.generator = scenario(self.context)
        self.resume()

    def resume(self) -> None:
        try:
            self.wait = next(self.generator)
        except StopIteration:
            self.finish_scenario(True, "")

    def finish_scenario(self, passed: bool, message: str) -> None:
        name = self.current.__name__ if self.current else "driver"
        self.results[name] = {"passed": passed, "message": message, "measured": self.context.measured,
                              "seconds": round(time.monotonic() - self.began, 2)}
        print(f"{name}: {'passed' if passed else 'FAILED ' + message}", flush=True)
        if self.client.busy:
            self.client.cancel()
        self.current = None

    def end(self) -> None:
        self.timer.stop()
        self.client.close()
        self.results["_host"] = {"python": sys.version.split()[0], "qt": QtCore.qVersion(),
                                 "longest_poll_seconds": round(self.longest_poll, 4)}
        RESULTS.write_text(json.dumps(self.results, indent=1))
        QtCore.QCoreApplication.exit(0)


driver = Driver()
driver.start()
