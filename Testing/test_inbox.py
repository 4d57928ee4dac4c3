"""The worker ends itself when its client can no longer want the result (``SpineSegDiffLib.apps.inbox``)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time

import pytest
from conftest import BUNDLED_SAMPLE, REPO

from SpineSegDiffLib.apps.inbox import Inbox
from SpineSegDiffLib.apps.protocol import EXIT_CANCELLED, EXIT_CLIENT_GONE, encode
from SpineSegDiffSlicer.worker_client import BOOTSTRAP, LIB_DIR


class Recorder:
    """``end_process`` stand-in: records the exit status instead of ending the test process."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.called = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.called.set()


class SlowStream:
    """A client's pipe: lines arrive when the test releases them, then end of input."""

    def __init__(self, lines: list[str]) -> None:
        self.lines, self.release = lines, threading.Event()

    def __iter__(self):
        yield self.lines[0]
        self.release.wait(5)
        yield from self.lines[1:]


def test_requests_come_in_order_and_end_of_input_while_idle_ends_the_loop():
    recorder = Recorder()
    lines = [encode({"request": "segment", "id": "a"}), encode({"request": "shutdown"})]
    assert list(Inbox(io.StringIO("".join(lines)), recorder).lines()) == lines
    assert recorder.codes == []


def test_cancel_ends_the_process_even_while_a_request_runs():
    stream = SlowStream([encode({"request": "segment", "id": "a"}), encode({"request": "cancel"})])
    recorder = Recorder()
    lines = Inbox(stream, recorder).lines()
    next(lines)  # the request is being handled: busy
    stream.release.set()
    assert recorder.called.wait(5) and recorder.codes == [EXIT_CANCELLED]


def test_end_of_input_during_a_request_ends_the_process():
    recorder, stream = Recorder(), SlowStream([encode({"request": "segment", "id": "a"})])
    lines = Inbox(stream, recorder).lines()
    next(lines)
    stream.release.set()
    assert recorder.called.wait(5) and recorder.codes == [EXIT_CLIENT_GONE]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process ids")
def test_a_real_worker_whose_client_closes_its_input_mid_request_exits(tmp_path):
    """The real worker on the bundled sample in volume mode: closing its stdin mid-request ends it at once."""
    if not BUNDLED_SAMPLE.is_file():
        pytest.skip("the bundled sample is missing")
    worker = subprocess.Popen([sys.executable, "-c", BOOTSTRAP, str(LIB_DIR), "--models", str(REPO / "Resources" /
                               "Models")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    request = {"request": "segment", "id": "1", "input": str(BUNDLED_SAMPLE), "output_dir": str(tmp_path / "out"),
               "options": {"preset": "fast", "device": "cpu", "mode": "volume"}}
    worker.stdin.write(encode(request))
    worker.stdin.flush()
    for line in worker.stdout:
        event = json.loads(line)
        if event["event"] == "progress" and event["stage"] == "diffusion":
            break
    worker.stdin.close()
    started = time.monotonic()
    assert worker.wait(timeout=30) == EXIT_CLIENT_GONE
    print(f"\nworker exited {time.monotonic() - started:.2f} s after its input closed")
    assert not (tmp_path / "out" / "image_labels.nii.gz").exists()
