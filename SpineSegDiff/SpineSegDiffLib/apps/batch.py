"""The batch engine: many cases, models loaded once, every failure recorded, finished cases kept.

The command line, the Slicer batch script and the Slicer module share it; each gives the work for
one case (read, segment, write) and how to tell a finished case. Before any model is loaded the
options are checked against the model folders and every input is checked from its header alone (exists,
readable, within the size limits: see :mod:`..header`), so such mistakes come back in well under a second.
Then each case runs on its own: any exception, including running out of GPU memory, becomes a ``failed``
entry with a reason a user can act on, and the batch goes on. With ``device="auto"`` a case that runs out
of GPU memory is retried on the CPU. Only an unusable output folder (full disk, permission denied, read-only:
:class:`~..errors.OutputFolderError`) stops the batch, since every later case would fail the same way; the
finished cases are kept.

``OUT/summary.json`` lists every case with its status (``done``, ``skipped`` when its results already
existed, ``failed`` with the reason) and is rewritten atomically after each case, so an interrupted
run can simply be started again: finished cases are skipped, the rest are done once.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import Cancelled, OutputFolderError, SpineSegDiffError
from ..io import write_text
from ..modelset.model_set import ModelSet
from ..options import SegmentOptions, resolve_device
from ..outputs.destination import plain_os_errors

OUT_OF_MEMORY_HINT = "use a lighter preset or fewer --samples, or --device cpu"


@dataclass(frozen=True)
class Case:
    """One thing to segment: ``source`` is what the work function reads (a path, a volume node...);
    ``output_bytes``: the most its outputs can take on disk (0: unknown)."""

    name: str
    stem: str
    source: Any
    output_bytes: int = 0


Work = Callable[[Case, Any], dict]
"""``work(case, segmenter) -> dict`` of extra summary fields; raises on failure."""


class BatchEngine:
    """Runs cases one by one with shared, lazily loaded segmenters (one per device)."""

    def __init__(self, models: ModelSet, options: SegmentOptions, out_dir: Path,
                 log: Callable[[str], None] = lambda line: None, segmenters: dict[str, Any] | None = None) -> None:
        """``segmenters``: a cache shared with other engines on the same models (the worker process keeps
        one across requests, so the models load once); by default this engine's own."""
        self.models, self.options, self.out_dir, self.log = models, options, Path(out_dir), log
        self.device = resolve_device(options.device)
        self._segmenters: dict[str, Any] = {} if segmenters is None else segmenters

    def segmenter(self, device: str):
        """The segmenter on ``device`` (``auto`` or ``cpu``), loaded on first use."""
        if device not in self._segmenters:
            from ..inference.pipeline import Segmenter

            self.log(f"loading models on {resolve_device(device)}")
            self._segmenters[device] = Segmenter(device=device, models=self.models)
        return self._segmenters[device]

    def run(self, cases: list[Case | dict], work: Work) -> dict:
        """Run ``work`` on every :class:`Case`; a ``dict`` is a case already decided (skipped or failed).
        Returns the summary, also written to ``out_dir/summary.json`` after each case."""
        with plain_os_errors(self.out_dir):
            self.out_dir.mkdir(parents=True, exist_ok=True)
        summary = {"options": asdict(self.options), "models": str(self.models.root), "cases": []}
        for case in cases:
            entry = case if isinstance(case, dict) else self._run_case(case, work)
            summary["cases"].append(entry)
            write_summary(summary, self.out_dir)
            self.log(case_line(entry))
        return summary

    def run_case(self, case: Case, work: Work) -> dict:
        """One case on its own (the worker's and the cluster's): every exception but a cancel becomes a ``failed``
        entry."""
        try:
            return self._run_case(case, work)
        except OutputFolderError as error:
            return {"input": case.name, "stem": case.stem, "status": "failed", "reason": str(error)}

    def _run_case(self, case: Case, work: Work) -> dict:
        """:meth:`run_case`, but an unusable output folder is raised: it stops :meth:`run`."""
        entry = {"input": case.name, "stem": case.stem}
        try:
            return {**entry, "status": "done", **self._with_cpu_fallback(case, work)}
        except (Cancelled, KeyboardInterrupt, OutputFolderError):
            raise
        except SpineSegDiffError as error:
            return {**entry, "status": "failed", "reason": str(error)}
        except Exception as error:  # a bug or a library failure: keep going, keep the details
            return {**entry, "status": "failed", "reason": f"unexpected error: {type(error).__name__}: {error}",
                    "traceback": traceback.format_exc()}

    def _with_cpu_fallback(self, case: Case, work: Work) -> dict:
        result, on_cpu = on_gpu_or_cpu(lambda segmenter: work(case, segmenter), self.segmenter(self.options.device),
                                       self.device, self.options.device, lambda: self.segmenter("cpu"), case.name,
                                       self.log)
        return {**result, "note": "ran out of GPU memory; done on the CPU"} if on_cpu else result


def on_gpu_or_cpu(run: Callable[[Any], Any], segmenter, device, requested: str, cpu_segmenter: Callable[[], Any],
                  name: str, log: Callable[[str], None] = lambda line: None) -> tuple[Any, bool]:
    """``run(segmenter)`` on ``device``; when it runs out of GPU memory and the user asked for ``auto``,
    ``run(cpu_segmenter())`` instead. Returns the result and whether the CPU took over; otherwise out
    of memory becomes a :class:`SpineSegDiffError` saying what to do."""
    try:
        return run(segmenter), False
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        if requested != "auto" or device.type == "cpu":
            raise SpineSegDiffError(f"{name}: out of {device.type.upper()} memory", OUT_OF_MEMORY_HINT) from None
    log(f"{name}: out of GPU memory; retrying on the CPU")
    _free_gpu_memory()
    return run(cpu_segmenter()), True


def is_out_of_memory(error: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError``, or the ``RuntimeError`` other backends (MPS, cuDNN) raise for it."""
    return type(error).__name__ == "OutOfMemoryError" or (
        isinstance(error, RuntimeError) and "out of memory" in str(error).lower())


def _free_gpu_memory() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def write_summary(summary: dict, out_dir: Path) -> None:
    """``out_dir/summary.json``, atomically; the operating system's errors as one message naming the folder."""
    with plain_os_errors(out_dir):
        write_text(json.dumps(summary, indent=2) + "\n", out_dir / "summary.json")


def case_line(entry: dict) -> str:
    """One line per finished case; a reason that already names the input is not prefixed with it."""
    if entry["status"] != "failed":
        return f"{entry['input']}: {entry['status']}" + (f" ({entry['note']})" if "note" in entry else "")
    reason = entry["reason"]
    return f"error: {reason}" if entry["input"] in reason else f"error: {entry['input']}: {reason}"


def summary_line(summary: dict, out_dir: Path) -> str:
    """The last line of a run: says plainly whether anything failed."""
    counts = {s: sum(c["status"] == s for c in summary["cases"]) for s in ("done", "skipped", "failed")}
    others = ", ".join(f"{counts[s]} {s}" for s in ("done", "skipped") if counts[s])
    if counts["failed"]:
        return (f"FAILED: {counts['failed']} of {len(summary['cases'])} cases failed"
                f"{f' ({others})' if others else ''}; reasons above and in {out_dir / 'summary.json'}")
    return f"finished: {others or 'nothing to do'}; outputs in {out_dir}"
