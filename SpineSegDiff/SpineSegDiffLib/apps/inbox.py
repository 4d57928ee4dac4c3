"""The worker's input, read on a thread so that the client is heard while a request runs.

The worker's main thread runs one request at a time and cannot read its input meanwhile; this reader can.
It makes the worker end itself, at once, whenever its client can no longer want the result:

- a ``cancel`` request (the module's Cancel button) ends the process with :data:`~.protocol.EXIT_CANCELLED`;
- end of input (the client closed the pipe, or died) during a request ends it with
  :data:`~.protocol.EXIT_CLIENT_GONE`; when idle it ends the request loop like ``shutdown``;
- on POSIX, the death of the parent process (a launcher such as Slicer's ``PythonSlicer`` killed
  without its child) ends it with :data:`~.protocol.EXIT_CLIENT_GONE`.

Ending is ``os._exit``: no clean-up runs, which is safe because outputs are written atomically and the
client removes the request's folder.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO

from .protocol import CANCEL, EXIT_CANCELLED, EXIT_CLIENT_GONE, request_kind

PARENT_CHECK_SECONDS = 0.25


class Inbox:
    """Request lines in arrival order (:meth:`lines`), with ``cancel`` and end of input acted on at once.

    Args:
        stream: the worker's input (one request per line).
        end_process: called with an exit status to end the process (``os._exit``; tests pass a recorder).
    """

    def __init__(self, stream: IO[str], end_process: Callable[[int], None] = os._exit) -> None:
        self.stream, self.end_process = stream, end_process
        self.busy = threading.Event()
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, name="worker-input", daemon=True).start()

    def _read(self) -> None:
        for line in self.stream:
            if request_kind(line) == CANCEL:
                self.end_process(EXIT_CANCELLED)
                return
            self._lines.put(line)
        if self.busy.is_set():
            self.end_process(EXIT_CLIENT_GONE)
        self._lines.put(None)

    def lines(self) -> Iterator[str]:
        """Request lines until end of input; ``busy`` is set while the caller handles one (until the next)."""
        while True:
            self.busy.clear()
            line = self._lines.get()
            if line is None:
                return
            self.busy.set()
            yield line


_watched_parent: list[int] = []


def watch_parent(end_process: Callable[[int], None] = os._exit, interval: float = PARENT_CHECK_SECONDS) -> bool:
    """End the process when its parent dies (POSIX: the process is re-parented). False where not supported.

    Call it first thing (the worker's bootstrap does, before the seconds of importing PyTorch), so that a
    client that gives up during start-up leaves no process behind. Later calls do nothing.
    """
    if sys.platform == "win32":
        return False  # no re-parenting on Windows; end of input covers a client that went away
    if _watched_parent:
        return True
    parent = os.getppid()
    _watched_parent.append(parent)

    def check() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        end_process(EXIT_CLIENT_GONE)

    threading.Thread(target=check, name="worker-parent", daemon=True).start()
    return True
