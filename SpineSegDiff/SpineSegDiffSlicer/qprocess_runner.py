"""The worker's process in Slicer: a ``qt.QProcess`` (non-blocking reads, so the GUI never waits).

Slicer's Qt binding is PythonQt: ``readAllStandardOutput()`` returns a wrapped ``QByteArray`` that has no
buffer protocol and no ``__bytes__`` (``bytes(array)`` raises ``TypeError``); its ``data()`` gives the
bytes. Nothing here waits on the process: ``kill`` returns at once and the client keeps the runner until
the process is gone (``Testing/test_under_pythonqt.py`` runs this file under a real PythonQt build).
"""

from __future__ import annotations

import qt

ERROR_TAIL_CHARS = 8000


def text_of(array) -> str:
    """The text of a PythonQt ``QByteArray`` (UTF-8; undecodable bytes replaced)."""
    return array.data().decode("utf-8", errors="replace")


class QProcessRunner:
    """:class:`~.worker_client.ProcessRunner` on ``qt.QProcess``."""

    def __init__(self) -> None:
        self.process = qt.QProcess()
        self._errors = ""

    def start(self, program: str, arguments: list[str]) -> None:
        self.process.start(program, arguments)

    def write(self, text: str) -> None:
        self.process.write(qt.QByteArray(text.encode("utf-8")))

    def close_input(self) -> None:
        self.process.closeWriteChannel()

    def read_output(self) -> str:
        self._collect_errors()
        return text_of(self.process.readAllStandardOutput())

    def error_output(self) -> str:
        self._collect_errors()
        return self._errors

    def _collect_errors(self) -> None:
        self._errors = (self._errors + text_of(self.process.readAllStandardError()))[-ERROR_TAIL_CHARS:]

    def running(self) -> bool:
        return self.process.state() != qt.QProcess.NotRunning

    def exit_code(self) -> int | None:
        return None if self.running() else int(self.process.exitCode())

    def kill(self) -> None:
        if self.running():
            self.process.kill()
