"""The worker checks every request against its protocol: a malformed one gets exactly one ``error`` naming the
field, and the worker keeps serving (a fuzz test sends a few hundred malformed or random requests)."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import pytest
from conftest import REPO

from SpineSegDiffLib.apps.protocol import ProtocolError, checked_request, encode
from SpineSegDiffLib.apps.worker import OPTION_NAMES
from SpineSegDiffSlicer.worker_client import BOOTSTRAP, LIB_DIR

MODELS = REPO / "Resources" / "Models"
SEGMENT = {"request": "segment", "id": "a", "input": "/x.nrrd", "output_dir": "/tmp/out"}


@pytest.mark.parametrize(("request_", "named"), [
    ({**SEGMENT, "options": {"frobnicate": 1}}, "'frobnicate'"),
    ({"request": "segment", "id": "a", "output_dir": "/tmp/out"}, "'input'"),
    ({**SEGMENT, "input": 5}, "'input'"),
    ({**SEGMENT, "options": "fast"}, "'options'"),
    ({**SEGMENT, "colour": "red"}, "'colour'"),
    ({"request": "review", "labels": "l.nrrd", "output_dir": "/tmp"}, "'heatmap'"),
    ({"request": "dance"}, "'dance'"),
    ({"id": 3}, "None"),
])
def test_a_malformed_request_is_refused_naming_the_field(request_, named):
    with pytest.raises(ProtocolError, match=named):
        checked_request(request_, OPTION_NAMES)


def test_a_well_formed_request_passes():
    request = {**SEGMENT, "stem": "s", "options": {"preset": "fast", "seed": 3}}
    assert checked_request(request, OPTION_NAMES) is request


def junk(rng: random.Random, depth: int = 0):
    """A random JSON value."""
    choices = [lambda: None, lambda: rng.random() < 0.5, lambda: rng.randint(-10**9, 10**9), lambda: rng.random(),
               lambda: "".join(rng.choice("ab/.\\\"'{}[] \t\u00e9\u4e2d") for _ in range(rng.randint(0, 30)))]
    if depth < 2:
        choices += [lambda: [junk(rng, depth + 1) for _ in range(rng.randint(0, 3))],
                    lambda: {str(junk(rng, depth + 1)): junk(rng, depth + 1) for _ in range(rng.randint(0, 3))}]
    return rng.choice(choices)()


def malformed_requests(count: int, seed: int = 0) -> list[str]:
    """Lines a careless or hostile client might send: junk JSON, wrong types, unknown fields and options,
    missing fields, not JSON at all (never ``cancel`` or ``shutdown``, which end the worker by design)."""
    rng = random.Random(seed)
    fields = ["id", "input", "output_dir", "stem", "options", "labels", "heatmap", "colour"]
    lines = []
    for n in range(count):
        shape = n % 5
        if shape == 0:
            line = json.dumps(junk(rng))
        elif shape == 1:
            line = "{" + "".join(rng.choice("abc:,\"{}[]0") for _ in range(rng.randint(1, 40)))
        elif shape == 2:
            message = {"request": rng.choice(["segment", "review", "dance", 7, None])}
            message.update({rng.choice(fields): junk(rng) for _ in range(rng.randint(0, 4))})
            line = json.dumps(message)
        elif shape == 3:
            line = json.dumps({**SEGMENT, "id": n, "options": {rng.choice([*OPTION_NAMES, "zzz"]): junk(rng)}})
        else:
            line = json.dumps({**SEGMENT, "id": n, "input": f"/nonexistent/{n}.nii.gz"})
        if '"cancel"' not in line and '"shutdown"' not in line and line.strip():
            lines.append(line)
    return lines


def test_the_real_worker_answers_every_malformed_request_once_and_stays_alive(tmp_path):
    lines = malformed_requests(300)
    worker = subprocess.Popen([sys.executable, "-c", BOOTSTRAP, str(LIB_DIR), "--models", str(MODELS)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert json.loads(worker.stdout.readline())["event"] == "ready"
        for line in lines:
            worker.stdin.write(line.replace("/tmp/out", str(tmp_path / "out")) + "\n")
            worker.stdin.flush()
            event = json.loads(worker.stdout.readline())
            assert event["event"] == "error" and event["message"], (line, event)
            assert "unexpected error" not in event["message"] and not event["details"], (line, event)
        assert worker.poll() is None
        worker.stdin.write(encode({"request": "shutdown"}))
        worker.stdin.flush()
        assert worker.wait(timeout=30) == 0 and worker.stdout.read() == ""  # no event left unread: one per request
    finally:
        worker.kill()
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
