"""The inference worker: a long-lived process that loads the models once and serves requests.

The Slicer module starts it with Slicer's own Python (``PythonSlicer``) and talks to it over
stdin/stdout, so no model code ever runs in Slicer's GUI process. Each request runs on the batch
engine (:class:`~.batch.BatchEngine`, the same one as ``spinesegdiff segment``) with a segmenter
cache kept for the life of the process.

Protocol (version :data:`PROTOCOL_VERSION`), one JSON object per line, UTF-8:

Requests (client -> worker, stdin):
    ``{"request": "segment", "id": "...", "input": "/path/image.nrrd", "output_dir": "/path/out",
    "stem": "image", "options": {"mode": "central", "preset": "fast", "device": "cpu", ...}}``
    (``options``: the fields of :class:`~.options.SegmentOptions`; ``stem`` optional; ``limits`` optional:
    ``{"max_voxels": N, "max_bytes": N}``, see :class:`~..header.InputLimits`); its result also names
    a ``review`` file: the review regions at every threshold (:func:`~.review.regions_by_level`), so that the
    module never computes them on Slicer's GUI thread;
    ``{"request": "review", "id": "...", "labels": "/path/labels.nrrd", "heatmap": "/path/heatmap.nrrd",
    "output_dir": "/path/out"}``: the review regions of an edited result, as a ``result`` naming ``review``;
    ``{"request": "cancel"}``: exit at once, even mid-request (status ``EXIT_CANCELLED``);
    ``{"request": "shutdown"}`` (or end of stdin while idle): exit after the running request.

Events (worker -> client, stdout):
    ``{"event": "ready", "protocol": 2, "version": "...", "pid": N}`` once at start (``pid``: this process,
    which a client reaching it through a launcher such as ``PythonSlicer`` needs to stop it);
    ``{"event": "progress", "id": ..., "stage": "...", "fraction": 0..1}``, fractions non-decreasing;
    ``{"event": "result", "id": ..., "files": {"labels": path, "uncertainty": path, ...}, "models": "loaded" |
    "reused", "load_seconds": s, "seconds": s}``;
    ``{"event": "error", "id": ..., "message": "what went wrong and what to do", "details": "traceback or ''"}``.

Exactly one ``result`` or ``error`` ends each request. The worker ends itself when its client goes away
(end of stdin mid-request, or the death of its parent process) and on ``cancel`` (see :mod:`.inbox`);
a client may also kill the ``pid`` it was given. Anything else the libraries print goes to stderr, never
to the protocol stream. Constants and framing: :mod:`.protocol`.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from dataclasses import fields
from pathlib import Path
from typing import IO, Any

from .. import __version__
from ..errors import SpineSegDiffError
from ..header import InputLimits
from ..io import stem_of
from ..modelset.model_set import ModelSet, open_models
from ..options import SegmentOptions
from ..outputs.destination import plain_os_errors
from ..outputs.writer import output_paths
from .batch import BatchEngine
from .cases import Case, preflight, segment_file
from .inbox import Inbox, watch_parent
from .protocol import PROTOCOL_VERSION, SEGMENT, SHUTDOWN, ProtocolError, checked_request, decode, encode

OPTION_NAMES = tuple(f.name for f in fields(SegmentOptions))
"""What a segment request's ``options`` may name: the fields of :class:`~..options.SegmentOptions`."""
REVIEW_FILE = "review.json"
REVIEW_REGIONS = 20
"""Regions per threshold in a review file (the module's list length)."""


class CaseFailed(Exception):
    """A case the batch engine recorded as failed: its reason, and the original traceback of a bug."""

    def __init__(self, reason: str, details: str = "") -> None:
        super().__init__(reason)
        self.reason, self.details = reason, details


class Worker:
    """Serves segment requests on one model folder; segmenters (per device) are loaded once."""

    def __init__(self, emit, models_dir: Path | None = None) -> None:
        self.emit = emit
        self.models_dir = models_dir
        self._models: ModelSet | None = None
        self._segmenters: dict[str, Any] = {}

    def models(self) -> ModelSet:
        if self._models is None:
            self._models = open_models(self.models_dir)
        return self._models

    def segment(self, request: dict) -> None:
        """One segment request: exactly one ``result`` or ``error`` event."""
        self._answer(request, self._run)

    def review(self, request: dict) -> None:
        """One review request: exactly one ``result`` or ``error`` event."""
        self._answer(request, lambda r: {"files": {"review": str(write_review(
            Path(r["labels"]), Path(r["heatmap"]), Path(r["output_dir"]) / REVIEW_FILE))}})

    def _answer(self, request: dict, handle) -> None:
        request_id = request.get("id")
        try:
            self.emit({"event": "result", "id": request_id, **handle(request)})
        except CaseFailed as failed:
            self.emit({"event": "error", "id": request_id, "message": failed.reason, "details": failed.details})
        except SpineSegDiffError as error:
            self.emit({"event": "error", "id": request_id, "message": str(error), "details": ""})
        except Exception as error:  # a bug or a library failure: say so, keep the details
            self.emit({"event": "error", "id": request_id, "message": f"unexpected error: {type(error).__name__}: "
                       f"{error}", "details": traceback.format_exc()})

    def _run(self, request: dict) -> dict:
        source, out_dir = Path(request["input"]), Path(request["output_dir"])
        options = SegmentOptions(**request.get("options", {}))
        limits = InputLimits.from_dict(request.get("limits"))
        stem = request.get("stem") or stem_of(source)
        preflight(source, out_dir, stem, limits=limits)  # output folder, input header, free space: before loading
        self.models().check(options)
        reporter = ProgressReporter(self.emit, request.get("id"))
        loaded_before = set(self._segmenters)
        engine = BatchEngine(self.models(), options, out_dir, segmenters=self._segmenters)
        started = time.perf_counter()
        reporter("loading models", 0.0)
        engine.segmenter(options.device)
        load_seconds = time.perf_counter() - started
        work = segment_file(out_dir, options, overwrite=True, progress=reporter, limits=limits)
        entry = engine.run_case(Case(str(source), stem, source), work)
        if entry["status"] != "done":
            raise CaseFailed(entry["reason"], entry.get("traceback", ""))
        files = {key: str(path) for key, path in output_paths(out_dir, stem).items() if path.is_file()}
        with plain_os_errors(out_dir):
            review = write_review(Path(files["labels"]), Path(files["uncertainty"]), out_dir / REVIEW_FILE)
        files["review"] = str(review)
        return {"files": files, "models": "reused" if options.device in loaded_before else "loaded",
                "load_seconds": round(load_seconds, 3), "seconds": round(time.perf_counter() - started, 3)}


def write_review(labels_path: Path, heatmap_path: Path, destination: Path) -> Path:
    """The review regions of a labelmap and its heatmap (same grid) at every slider level, as JSON."""
    import SimpleITK as sitk

    from ..review import regions_by_level, regions_to_dict

    heatmap = sitk.ReadImage(str(heatmap_path))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(labels_path)))
    found = regions_by_level(sitk.GetArrayFromImage(heatmap), labels, heatmap.GetSpacing(), max_regions=REVIEW_REGIONS)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staged = destination.with_name(destination.name + ".partial")
    staged.write_text(json.dumps(regions_to_dict(found)), encoding="utf-8")
    staged.replace(destination)
    return destination


class ProgressReporter:
    """The pipeline's ``progress(stage, fraction)`` as ``progress`` events with non-decreasing fractions."""

    def __init__(self, emit, request_id) -> None:
        self.emit, self.request_id, self.fraction = emit, request_id, 0.0

    def __call__(self, stage: str, fraction: float) -> None:
        self.fraction = max(self.fraction, min(max(float(fraction), 0.0), 1.0))
        self.emit({"event": "progress", "id": self.request_id, "stage": stage, "fraction": round(self.fraction, 4)})


def protocol_stream() -> IO[str]:
    """The real stdout for protocol lines; file descriptor 1 is pointed at stderr so stray prints cannot
    corrupt the protocol."""
    stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8", buffering=1)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return stream


def serve(requests: IO[str], out: IO[str], models_dir: Path | None = None, end_process=os._exit) -> int:
    """Serve requests until ``shutdown`` or end of input; returns the exit status.

    ``cancel`` and end of input mid-request end the process through ``end_process`` (see :class:`~.inbox.Inbox`).
    """

    def emit(event: dict) -> None:
        out.write(encode(event))
        out.flush()

    worker = Worker(emit, models_dir)
    emit({"event": "ready", "protocol": PROTOCOL_VERSION, "version": __version__, "pid": os.getpid()})
    for line in Inbox(requests, end_process).lines():
        if not line.strip():
            continue
        request = decode(line)
        if request is None:
            emit({"event": "error", "id": None, "message": f"not a JSON request: {line[:200]!r}", "details": ""})
            continue
        try:
            checked_request(request, OPTION_NAMES)
        except ProtocolError as error:
            request_id = request.get("id") if isinstance(request.get("id"), (str, int)) else None
            emit({"event": "error", "id": request_id, "message": f"protocol error: {error}", "details": ""})
            continue
        if request["request"] == SHUTDOWN:
            break
        worker.segment(request) if request["request"] == SEGMENT else worker.review(request)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m SpineSegDiffLib.apps.worker [--models DIR]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="SpineSegDiffLib.apps.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=None, help="model folder (default: the bundled models)")
    args = parser.parse_args(argv)
    watch_parent()
    return serve(sys.stdin, protocol_stream(), args.models)


if __name__ == "__main__":
    sys.exit(main())
