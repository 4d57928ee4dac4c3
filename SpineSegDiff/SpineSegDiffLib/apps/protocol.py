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


FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    SEGMENT: {"id": (str, int), "input": (str,), "output_dir": (str,), "stem": (str,), "options": (dict,),
              "limits": (dict,)},
    REVIEW: {"id": (str, int), "labels": (str,), "heatmap": (str,), "output_dir": (str,)},
    SHUTDOWN: {"id": (str, int)},
}
"""The fields each request the worker's loop handles may carry, with their JSON types (``cancel`` is read by the
inbox before the loop)."""
REQUIRED: dict[str, tuple[str, ...]] = {SEGMENT: ("input", "output_dir"), REVIEW: ("labels", "heatmap", "output_dir")}


class ProtocolError(ValueError):
    """A request that does not follow the protocol; ``str()`` names the field and what is allowed."""


def checked_request(message: dict, option_names: tuple[str, ...] = ()) -> dict:
    """``message`` if it is a well-formed request (known kind, required fields, JSON types, no unknown field,
    ``options`` naming only ``option_names``); else :class:`ProtocolError`."""
    kind = message.get("request")
    if kind not in FIELDS:
        raise ProtocolError(f"unknown request {kind!r}; known: {', '.join(sorted([*FIELDS, CANCEL]))}")
    allowed = FIELDS[kind]
    for name in REQUIRED.get(kind, ()):
        if name not in message:
            raise ProtocolError(f"a {kind} request needs the field {name!r}")
    for name, value in message.items():
        if name == "request":
            continue
        if name not in allowed:
            raise ProtocolError(f"field {name!r} is not part of a {kind} request; allowed: {', '.join(allowed)}")
        if not isinstance(value, allowed[name]) or isinstance(value, bool):
            types = " or ".join(t.__name__ for t in allowed[name])
            raise ProtocolError(f"field {name!r} must be a JSON {types}, got {type(value).__name__}")
    unknown = sorted(set(message.get("options", {})) - set(option_names))
    if unknown:
        raise ProtocolError(f"option {unknown[0]!r} is not a segmentation option; allowed: {', '.join(option_names)}")
    return message
