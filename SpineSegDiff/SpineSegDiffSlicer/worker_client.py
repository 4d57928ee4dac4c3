"""The module's side of the worker protocol (``SpineSegDiffLib.apps.worker``): start, request, poll, cancel.

The client never blocks, never waits on a process and never runs model code: it writes one request line,
and :meth:`WorkerClient.poll` (called from a Qt timer in the module) returns the events that have arrived.
The process is reached through a :class:`ProcessRunner` (``qt.QProcess`` in Slicer, see
:mod:`.qprocess_runner`), as SlicerNNUnet does with its injected process.

In Slicer the program is ``PythonSlicer``, a launcher that runs the real interpreter as its child: killing
the launcher does not reach the worker. So Cancel sends ``cancel`` (the worker ends itself), kills the
worker's own ``pid`` (from its ``ready`` event) and then the launcher; a worker that loses its client or
its parent ends itself too (:mod:`SpineSegDiffLib.apps.inbox`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from SpineSegDiffLib.apps.protocol import (
    CANCEL,
    ENDING_EVENTS,
    ERROR,
    PROGRESS,
    PROTOCOL_VERSION,
    READY,
    REVIEW,
    SEGMENT,
    SHUTDOWN,
    decode,
    encode,
)

LIB_DIR = Path(__file__).resolve().parents[1]
"""The folder holding ``SpineSegDiffLib`` (the module folder, or Slicer's qt-scripted-modules)."""
BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); from SpineSegDiffLib.apps.inbox import watch_parent; "
             "watch_parent(); from SpineSegDiffLib.apps.worker import main; sys.exit(main(sys.argv[2:]))")
"""The worker's command: it watches its parent before importing anything heavy (see ``SpineSegDiffLib.apps.inbox``)."""
CRASH_HINT = "Click Segment again to restart it."
ERROR_LINES = 20


class ProcessRunner(Protocol):
    """What the client needs of a child process; every call returns at once."""

    def start(self, program: str, arguments: list[str]) -> None: ...

    def write(self, text: str) -> None: ...

    def close_input(self) -> None:
        """Close the child's standard input once what was written has been sent (the child sees end of input)."""

    def read_output(self) -> str:
        """Standard output received since the last call (possibly a partial line)."""

    def error_output(self) -> str:
        """The last few KB of standard error."""

    def running(self) -> bool: ...

    def exit_code(self) -> int | None: ...

    def kill(self) -> None:
        """Kill the process; does not wait (``running()`` turns False once it is gone)."""


def python_executable() -> str:
    """The interpreter ``PythonSlicer`` runs (inside Slicer ``sys.executable`` is the Slicer launcher)."""
    found = shutil.which("PythonSlicer")
    if found:
        return found
    if Path(sys.executable).name.lower().startswith("python"):
        return sys.executable
    raise RuntimeError("PythonSlicer was not found: SpineSegDiff cannot start its worker process. "
                       "Reinstall Slicer, or report this with your Slicer version.")


def kill_process(pid: int | None) -> None:
    """Kill one process by id, now (SIGKILL on POSIX, TerminateProcess on Windows); a gone process is fine."""
    if not pid:
        return
    with contextlib.suppress(OSError):  # already gone
        os.kill(pid, signal.SIGTERM if sys.platform == "win32" else signal.SIGKILL)


@dataclass
class Job:
    """One request in flight: its id, kind (``segment`` or ``review``), private output folder and last stage."""

    id: str
    kind: str
    output_dir: Path
    stage: str = "starting"
    events: list = field(default_factory=list)


class WorkerClient:
    """Starts the worker on demand (once; again after a crash or a cancel) and runs one request at a time."""

    def __init__(self, make_runner: Callable[[], ProcessRunner], python: str | None = None,
                 models_dir: Path | None = None) -> None:
        self.make_runner, self.python, self.models_dir = make_runner, python, models_dir
        self.runner: ProcessRunner | None = None
        self.job: Job | None = None
        self.pid: int | None = None
        self.retired: list[ProcessRunner] = []
        """Runners told to stop, kept until their process is gone (dropping a running QProcess waits on it)."""
        self._buffer = ""
        self._count = 0

    @property
    def busy(self) -> bool:
        return self.job is not None

    def command(self) -> tuple[str, list[str]]:
        arguments = ["-c", BOOTSTRAP, str(LIB_DIR)]
        if self.models_dir is not None:
            arguments += ["--models", str(self.models_dir)]
        return self.python or python_executable(), arguments

    def submit(self, input_path: Path, options: dict, stem: str = "volume") -> Job:
        """Send a segment request; results go to a new private folder, removed by :meth:`discard`."""
        return self._submit(SEGMENT, {"input": str(input_path), "stem": stem, "options": options})

    def submit_review(self, labels_path: Path, heatmap_path: Path) -> Job:
        """Ask for the review regions of an (edited) labelmap and its heatmap; the result names ``review``."""
        return self._submit(REVIEW, {"labels": str(labels_path), "heatmap": str(heatmap_path)})

    def _submit(self, kind: str, fields: dict) -> Job:
        if self.job is not None:
            raise RuntimeError("a request is already running")
        if self.runner is None or not self.runner.running():
            self._start()
        self._count += 1
        self.job = Job(f"request-{self._count}", kind, Path(tempfile.mkdtemp(prefix="SpineSegDiff-")))
        self.runner.write(encode({"request": kind, "id": self.job.id, **fields,
                                  "output_dir": str(self.job.output_dir)}))
        return self.job

    def _start(self) -> None:
        self._retire()
        self.runner, self._buffer, self.pid = self.make_runner(), "", None
        self.runner.start(*self.command())

    def poll(self) -> list[dict]:
        """Events that arrived since the last call; a dead worker during a request gives one ``error``."""
        self.retired = [runner for runner in self.retired if runner.running()]
        if self.runner is None:
            return []
        events = self._read_events()
        if self.job is not None and not self.runner.running() and not self._ended(events):
            events += self._read_events()
            if not self._ended(events):
                events.append(self._crash_event())
        if self.job is not None:
            self._follow(events)
        return events

    def _read_events(self) -> list[dict]:
        self._buffer += self.runner.read_output()
        *lines, self._buffer = self._buffer.split("\n")
        events = []
        for event in filter(None, map(decode, lines)):  # other lines are not protocol output
            if event.get("event") == READY:
                self.pid = event.get("pid")
                if event.get("protocol") != PROTOCOL_VERSION:
                    events.append(self._error(f"the worker speaks protocol {event.get('protocol')}, the module "
                                              f"{PROTOCOL_VERSION}: reinstall the SpineSegDiff extension"))
            events.append(event)
        return events

    def _follow(self, events: list[dict]) -> None:
        """Remember the job's stage; end the job on its ``result`` or ``error`` (an error removes its folder)."""
        for event in events:
            if event.get("event") == PROGRESS:
                self.job.stage = event.get("stage", self.job.stage)
        if self._ended(events):
            if any(e.get("event") == ERROR for e in events):
                shutil.rmtree(self.job.output_dir, ignore_errors=True)
            self.job = None

    @staticmethod
    def _ended(events: list[dict]) -> bool:
        return any(e.get("event") in ENDING_EVENTS for e in events)

    def _crash_event(self) -> dict:
        """The one error of a worker that died mid-request: the stage it was in and its last error lines.

        The exit code is the launcher's, which turns any crash into 1: the worker's stderr tells more."""
        code = self.runner.exit_code()
        lines = [line for line in self.runner.error_output().strip().splitlines() if line.strip()]
        last = lines[-1].strip() if lines else "no error output"
        message = (f"The SpineSegDiff worker process stopped unexpectedly while {self.job.stage} (exit code {code}; "
                   f"last message: {last[:300]}). {CRASH_HINT}")
        self._retire()
        return self._error(message, "\n".join(lines[-ERROR_LINES:]))

    def _error(self, message: str, details: str = "") -> dict:
        return {"event": ERROR, "id": self.job.id if self.job else None, "message": message, "details": details}

    def cancel(self) -> None:
        """Stop the running request now: the worker is told to end and killed, its partial output removed."""
        if self.runner is not None:
            self._send(CANCEL)
            kill_process(self.pid)
            self.runner.kill()
        self._retire()
        if self.job is not None:
            shutil.rmtree(self.job.output_dir, ignore_errors=True)
        self.job = None

    def _send(self, request: str) -> None:
        if self.runner is not None and self.runner.running():
            with contextlib.suppress(OSError, RuntimeError):  # a closed pipe: the worker is going anyway
                self.runner.write(encode({"request": request}))

    def _retire(self) -> None:
        if self.runner is not None:
            self.retired.append(self.runner)
        self.runner, self.pid = None, None

    def discard(self, job: Job) -> None:
        """Remove a finished job's output folder (after its results were loaded)."""
        shutil.rmtree(job.output_dir, ignore_errors=True)

    def close(self) -> None:
        """Module or application closing: an idle worker is asked to exit (and sees end of input), a busy one is
        cancelled. Returns at once."""
        if self.job is not None:
            self.cancel()
            return
        if self.runner is not None and self.runner.running():
            self._send(SHUTDOWN)
            self.runner.close_input()
        self._retire()
