"""Throughput of a cohort on a local Dask cluster: cases per minute and peak memory per worker (not a test).

    python bench/bench_cluster.py [--cases 8] [--workers 1 2] [--preset standard] [--mode central]

Copies the bundled sample ``--cases`` times, then for each worker count runs
:func:`SpineSegDiffLib.apps.cluster.run_on_cluster` into a fresh folder (models loaded once per worker,
PyTorch threads = cores / workers) and the single-process batch for reference. Reports wall time (including
starting the cluster and loading the models on every worker), cases per minute, and each worker's peak RSS.
Writes ``bench/results/cluster.md`` (+ ``.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "SpineSegDiff"))

from SpineSegDiffLib.apps import cluster  # noqa: E402
from SpineSegDiffLib.apps.cases import run_batch  # noqa: E402
from SpineSegDiffLib.options import SegmentOptions  # noqa: E402

SAMPLE = REPO / "Resources" / "Samples" / "spider_t2_sample" / "image.nii.gz"


def cohort(folder: Path, cases: int) -> Path:
    folder.mkdir(parents=True)
    for n in range(cases):
        shutil.copy(SAMPLE, folder / f"case{n:03d}.nii.gz")
    return folder


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class ChildMemory:
    """Samples the resident memory of this process's children (the Dask workers) while a run lasts."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval, self.peaks, self._stop = interval, {}, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        me = psutil.Process()
        while not self._stop.wait(self.interval):
            for child in me.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    rss = child.memory_info().rss / 2**20
                    self.peaks[child.pid] = max(self.peaks.get(child.pid, 0.0), rss)

    def workers(self, count: int) -> list[int]:
        """The ``count`` largest peaks (the workers; the nannies and the resource tracker stay small)."""
        return sorted(round(p) for p in sorted(self.peaks.values())[-count:])


def run_cluster(inputs: Path, out: Path, options: SegmentOptions, workers: int) -> dict:
    with ChildMemory() as memory:
        started = time.perf_counter()
        summary = cluster.run_on_cluster([inputs], out, options, workers=workers, show_progress=False)
        seconds = time.perf_counter() - started
    return {"workers": workers, "seconds": round(seconds, 1), "done": _done(summary),
            "cases_per_minute": round(60 * _done(summary) / seconds, 2),
            "peak_rss_mb_per_worker": memory.workers(workers)}


def run_single(inputs: Path, out: Path, options: SegmentOptions) -> dict:
    started = time.perf_counter()
    summary = run_batch([inputs], out, options, show_progress=False)
    seconds = time.perf_counter() - started
    return {"workers": "one process", "seconds": round(seconds, 1), "done": _done(summary),
            "cases_per_minute": round(60 * _done(summary) / seconds, 2),
            "peak_rss_mb_per_worker": [round(peak_rss_mb())]}


def _done(summary: dict) -> int:
    return sum(case["status"] == "done" for case in summary["cases"])


def markdown(rows: list[dict], arguments: argparse.Namespace) -> str:
    lines = [f"# Cohort throughput on a local Dask cluster ({os.cpu_count()} CPU cores)", "",
             f"{arguments.cases} copies of the bundled sample, `--mode {arguments.mode} --preset {arguments.preset}`, "
             "device cpu; wall time includes starting the cluster and loading the models on every worker.", "",
             "| workers | wall (s) | cases done | cases / minute | peak RSS per worker (MB) |", "|---|---|---|---|---|"]
    lines += [f"| {r['workers']} | {r['seconds']} | {r['done']} | {r['cases_per_minute']} | "
              f"{', '.join(map(str, r['peak_rss_mb_per_worker']))} |" for r in rows]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=8)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--mode", default="central")
    parser.add_argument("--name", default="cluster")
    arguments = parser.parse_args()
    options = SegmentOptions(mode=arguments.mode, preset=arguments.preset, device="cpu")
    with tempfile.TemporaryDirectory() as work:
        inputs = cohort(Path(work) / "in", arguments.cases)
        rows = [run_cluster(inputs, Path(work) / f"out{n}", options, n) for n in arguments.workers]
        rows.append(run_single(inputs, Path(work) / "single", options))
    results = REPO / "bench" / "results"
    (results / f"{arguments.name}.json").write_text(json.dumps(rows, indent=1) + "\n")
    (results / f"{arguments.name}.md").write_text(markdown(rows, arguments))
    print(markdown(rows, arguments))
    return 0


if __name__ == "__main__":
    sys.exit(main())
