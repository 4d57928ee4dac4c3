"""The module's one running job, held in one place: the worker request in flight, its temporary input folder
and the node it was made from. Standard library only (the widget and the tests drive it the same way)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from SpineSegDiffLib.apps.protocol import ENDING_EVENTS

from .worker_client import Job, WorkerClient


class Jobs:
    """Starts, polls, cancels and closes the module's job; every path removes the job's input folder.

    Args:
        make_client: builds the :class:`WorkerClient` on first use (the worker process starts with the
            first request).
    """

    def __init__(self, make_client: Callable[[], WorkerClient]) -> None:
        self.make_client = make_client
        self.client: WorkerClient | None = None
        self.source: Any = None
        """What the running job was made from (the input volume node of a segment job)."""
        self.input_dir: Path | None = None

    @property
    def running(self) -> Job | None:
        """The request in flight, or None."""
        return self.client.job if self.client is not None else None

    def worker(self) -> WorkerClient:
        if self.client is None:
            self.client = self.make_client()
        return self.client

    def start(self, submit: Callable[[WorkerClient, Path], Job], source: Any = None) -> Job:
        """``submit(client, folder)`` with a new temporary input folder; on failure the folder is removed."""
        if self.running is not None:
            raise RuntimeError("a SpineSegDiff job is already running")
        folder = Path(tempfile.mkdtemp(prefix="SpineSegDiff-input-"))
        try:
            job = submit(self.worker(), folder)
        except Exception:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self.input_dir, self.source = folder, source
        return job

    def poll(self) -> list[dict]:
        """The worker's new events; the input folder goes when the job ends."""
        events = self.client.poll() if self.client is not None else []
        if any(e.get("event") in ENDING_EVENTS for e in events):
            self._remove_input()
        return events

    def cancel(self) -> None:
        if self.client is not None:
            self.client.cancel()
        self._remove_input()

    def close(self) -> None:
        """Module or scene closing: cancel a running job, let an idle worker exit; returns at once."""
        if self.client is not None:
            self.client.close()
        self._remove_input()

    def discard(self, job: Job) -> None:
        """Remove a finished job's output folder (after its results were loaded)."""
        shutil.rmtree(job.output_dir, ignore_errors=True)

    def _remove_input(self) -> None:
        if self.input_dir is not None:
            shutil.rmtree(self.input_dir, ignore_errors=True)
        self.input_dir = None
