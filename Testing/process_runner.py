"""A plain-subprocess :class:`~SpineSegDiffSlicer.worker_client.ProcessRunner` for headless tests.

Slicer uses ``qt.QProcess``; outside Slicer there is no Qt, so the tests inject this one (as SlicerNNUnet's
tests inject their process). Reader threads drain both pipes so that :meth:`read_output` never blocks.
"""

from __future__ import annotations

import subprocess
import threading


class SubprocessRunner:
    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None
        self._out: list[str] = []
        self._err = ""
        self._lock = threading.Lock()

    def start(self, program: str, arguments: list[str]) -> None:
        self.process = subprocess.Popen([program, *arguments], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, bufsize=1)
        self._threads = [threading.Thread(target=self._drain, args=(stream, is_error), daemon=True)
                         for stream, is_error in ((self.process.stdout, False), (self.process.stderr, True))]
        for thread in self._threads:
            thread.start()

    def _drain(self, stream, is_error: bool) -> None:
        for line in stream:
            with self._lock:
                if is_error:
                    self._err = (self._err + line)[-8000:]
                else:
                    self._out.append(line)

    def write(self, text: str) -> None:
        self.process.stdin.write(text)
        self.process.stdin.flush()

    def read_output(self) -> str:
        with self._lock:
            text, self._out = "".join(self._out), []
        return text

    def error_output(self) -> str:
        with self._lock:
            return self._err

    def running(self) -> bool:
        """Until the process has exited and both pipes are drained (so no output is lost)."""
        return self.process is not None and (self.process.poll() is None or any(t.is_alive() for t in self._threads))

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def close_input(self) -> None:
        self.process.stdin.close()

    def kill(self) -> None:
        """Kill without waiting, as ``QProcess.kill`` (``running()`` turns False once the process is gone)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
