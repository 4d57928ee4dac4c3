"""The module's side of the worker protocol (``SpineSegDiffLib.worker``): start, request, poll, cancel.

The client never blocks and never runs model code: it writes one request line, and :meth:`WorkerClient.poll`
(called from a Qt timer in the module) returns the events that have arrived. The process is reached through
a :class:`ProcessRunner` (``qt.QProcess`` in Slicer, see :mod:`.qprocess_runner`; tests inject a plain
subprocess-based one), as SlicerNNUnet does with its injected process.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

PROTOCOL_VERSION = 1
LIB_DIR = Path(__file__).resolve().parents[1]
"""The folder holding ``SpineSegDiffLib`` (the module folder, or Slicer's qt-scripted-modules)."""
BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv[1]); from SpineSegDiffLib.worker import main; "
             "sys.exit(main(sys.argv[2:]))")
CRASH_HINT = "Click Segment again to restart it; the Python console has the worker's last messages."


class ProcessRunner(Protocol):
    """What the client needs of a child process; every call returns at once."""

    def start(self, program: str, arguments: list[str]) -> None: ...

    def write(self, text: str) -> None: ...

    def read_output(self) -> str:
        """Standard output received since the last call (possibly a partial line)."""

    def error_output(self) -> str:
        """The last few KB of standard error."""

    def running(self) -> bool: ...

    def exit_code(self) -> int | None: ...

    def kill(self) -> None:
        """Stop the process now and wait (briefly) until it is gone."""


def python_executable() -> str:
    """The interpreter ``PythonSlicer`` runs (inside Slicer ``sys.executable`` is the Slicer launcher)."""
    found = shutil.which("PythonSlicer")
    if found:
        return found
    if Path(sys.executable).name.lower().startswith("python"):
        return sys.executable
    raise RuntimeError("PythonSlicer was not found: SpineSegDiff cannot start its worker process. "
                       "Reinstall Slicer, or report this with your Slicer version.")


@dataclass
class Job:
    """One request in flight: its id, its private output folder and the events seen so far."""

    id: str
    output_dir: Path
    stages: list = field(default_factory=list)


class WorkerClient:
    """Starts the worker on demand (once; again after a crash or a cancel) and runs one request at a time."""

    def __init__(self, make_runner: Callable[[], ProcessRunner], python: str | None = None,
                 models_dir: Path | None = None) -> None:
        self.make_runner, self.python, self.models_dir = make_runner, python, models_dir
        self.runner: ProcessRunner | None = None
        self.job: Job | None = None
        self.pid: int | None = None
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
        if self.job is not None:
            raise RuntimeError("a segmentation is already running")
        if self.runner is None or not self.runner.running():
            self._start()
        self._count += 1
        self.job = Job(f"request-{self._count}", Path(tempfile.mkdtemp(prefix="SpineSegDiff-")))
        request = {"request": "segment", "id": self.job.id, "input": str(input_path), "stem": stem,
                   "output_dir": str(self.job.output_dir), "options": options}
        self.runner.write(json.dumps(request) + "\n")
        return self.job

    def _start(self) -> None:
        self.runner, self._buffer, self.pid = self.make_runner(), "", None
        self.runner.start(*self.command())

    def poll(self) -> list[dict]:
        """Events that arrived since the last call; a dead worker during a request gives one ``error``."""
        if self.runner is None:
            return []
        events = self._read_events()
        if self.job is not None and not self.runner.running() and not self._ended(events):
            events += self._read_events()
            if not self._ended(events):
                events.append(self._crash_event())
        if self._ended(events):
            self.job = None if self.job is None else self._finish_job(events)
        return events

    def _read_events(self) -> list[dict]:
        self._buffer += self.runner.read_output()
        *lines, self._buffer = self._buffer.split("\n")
        events = []
        for line in lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # not protocol output
            if event.get("event") == "ready":
                self.pid = event.get("pid")
                if event.get("protocol") != PROTOCOL_VERSION:
                    events.append(self._error(f"the worker speaks protocol {event.get('protocol')}, the module "
                                              f"{PROTOCOL_VERSION}: reinstall the SpineSegDiff extension"))
            events.append(event)
        return events

    def _ended(self, events: list[dict]) -> bool:
        return any(e.get("event") in ("result", "error") for e in events)

    def _finish_job(self, events: list[dict]) -> None:
        if any(e.get("event") == "error" for e in events) and self.job is not None:
            shutil.rmtree(self.job.output_dir, ignore_errors=True)
        return None

    def _crash_event(self) -> dict:
        code = self.runner.exit_code()
        tail = self.runner.error_output().strip().splitlines()[-5:]
        self.runner = None
        return self._error(f"The SpineSegDiff worker process stopped unexpectedly (exit code {code}). "
                           + CRASH_HINT, "\n".join(tail))

    def _error(self, message: str, details: str = "") -> dict:
        return {"event": "error", "id": self.job.id if self.job else None, "message": message, "details": details}

    def cancel(self) -> None:
        """Stop the running request now: the worker is killed, its partial output removed."""
        if self.runner is not None:
            self.runner.kill()
        self.runner = None
        if self.job is not None:
            shutil.rmtree(self.job.output_dir, ignore_errors=True)
        self.job = None

    def discard(self, job: Job) -> None:
        """Remove a finished job's output folder (after its results were loaded)."""
        shutil.rmtree(job.output_dir, ignore_errors=True)

    def close(self) -> None:
        """Ask the worker to exit (module or application closing); kill it if it is busy."""
        if self.runner is not None and self.runner.running() and self.job is None:
            self.runner.write(json.dumps({"request": "shutdown"}) + "\n")
        else:
            self.cancel()
        self.runner = None
