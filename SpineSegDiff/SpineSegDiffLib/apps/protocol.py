"""The worker protocol's constants and framing, shared by the worker and its clients (standard library only).

One JSON object per line, UTF-8, in both directions; see :mod:`.worker` for the messages. The Slicer
module imports this file without importing anything heavy.
"""

from __future__ import annotations

import json

PROTOCOL_VERSION = 2
"""Version 2 added the ``cancel`` and ``review`` requests and the worker's self-termination when its client goes
away."""

SEGMENT, REVIEW, CANCEL, SHUTDOWN = "segment", "review", "cancel", "shutdown"
READY, PROGRESS, RESULT, ERROR = "ready", "progress", "result", "error"
ENDING_EVENTS = (RESULT, ERROR)
"""Exactly one of these ends each segment request."""

EXIT_CANCELLED = 3
"""Exit status of a worker stopped by a ``cancel`` request."""
EXIT_CLIENT_GONE = 4
"""Exit status of a worker whose client went away (end of its input, or its parent process died) mid-request."""


def encode(message: dict) -> str:
    """One protocol line (with its newline)."""
    return json.dumps(message) + "\n"


def decode(line: str) -> dict | None:
    """The JSON object on one line; None for a line that is not one (e.g. a library's stray output)."""
    try:
        message = json.loads(line)
    except json.JSONDecodeError:
        return None
    return message if isinstance(message, dict) else None


def request_kind(line: str) -> str | None:
    """The ``request`` field of a request line, None if the line is not a protocol object."""
    message = decode(line)
    return None if message is None else message.get("request")
