"""The worker's process in Slicer: a ``qt.QProcess`` (non-blocking reads, so the GUI never waits)."""

from __future__ import annotations

import qt

ERROR_TAIL_CHARS = 8000
KILL_WAIT_MS = 2000


class QProcessRunner:
    """:class:`~.worker_client.ProcessRunner` on ``qt.QProcess``."""

    def __init__(self) -> None:
        self.process = qt.QProcess()
        self._errors = ""

    def start(self, program: str, arguments: list[str]) -> None:
        self.process.start(program, arguments)

    def write(self, text: str) -> None:
        self.process.write(qt.QByteArray(text.encode("utf-8")))

    def read_output(self) -> str:
        self._collect_errors()
        return bytes(self.process.readAllStandardOutput()).decode("utf-8", errors="replace")

    def error_output(self) -> str:
        self._collect_errors()
        return self._errors

    def _collect_errors(self) -> None:
        text = bytes(self.process.readAllStandardError()).decode("utf-8", errors="replace")
        self._errors = (self._errors + text)[-ERROR_TAIL_CHARS:]

    def running(self) -> bool:
        return self.process.state() != qt.QProcess.NotRunning

    def exit_code(self) -> int | None:
        return None if self.running() else int(self.process.exitCode())

    def kill(self) -> None:
        if self.running():
            self.process.kill()
            self.process.waitForFinished(KILL_WAIT_MS)
