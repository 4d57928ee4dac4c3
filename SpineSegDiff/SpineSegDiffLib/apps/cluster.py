"""Cohorts on a Dask cluster: one task per case on ``distributed`` workers that each load the models once.

The client plans the cases exactly as the single-process batch does (:func:`~.cases.file_cases`: inputs
checked, finished cases skipped, taken names failed), submits one task per remaining case and merges one
``summary.json`` in input order, rewritten after every finished case. On each worker a
:class:`SegmenterPlugin` holds the model set and the segmenters (loaded with the worker's first case, on its
GPU when it has one), and each task runs the batch engine's own :meth:`~.batch.BatchEngine.run_case`, so
outputs, failure records and resume are the single-process ones. A worker that dies takes only its case
with it (recorded as failed); run again to redo it.

``--workers N`` starts a ``LocalCluster`` of N processes on this machine; ``--scheduler ADDRESS`` uses a
running cluster (``dask scheduler`` by hand, ``dask-jobqueue`` on Slurm/PBS, Kubernetes): its workers need
SpineSegDiff installed and must see the inputs, the models and the output folder at the same paths.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import SpineSegDiffError
from ..header import InputLimits
from ..modelset.model_set import open_models
from ..options import SegmentOptions
from .batch import BatchEngine, case_line, write_summary
from .cases import Case, plan_batch, segment_file

PLUGIN_NAME = "spinesegdiff-segmenter"
INSTALL_HINT = "install the cluster extra: pip install 'spinesegdiff[cluster]' (Dask distributed)"

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # the cluster extra is not installed: the single-process batch still works
    WorkerPlugin = object


class SegmenterPlugin(WorkerPlugin):
    """On each Dask worker: the model set and its segmenters, loaded on the worker's first case.

    Args:
        models_dir: the model folders (a path every worker sees).
        threads: PyTorch threads per worker (None: PyTorch's default).
    """

    idempotent = True

    def __init__(self, models_dir: str, threads: int | None = None) -> None:
        self.models_dir, self.threads = models_dir, threads
        self.models = None
        self.segmenters: dict[str, Any] = {}

    def engine(self, options: SegmentOptions, out_dir: Path) -> BatchEngine:
        """A batch engine on this worker's (cached) segmenters, for a task running in the calling thread.

        PyTorch's thread count is set here, in the task's thread: OpenMP keeps it per thread, and Dask starts
        its workers with ``OMP_NUM_THREADS=1``."""
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)
        if self.models is None:
            self.models = open_models(self.models_dir)
        return BatchEngine(self.models, options, out_dir, segmenters=self.segmenters)


def segment_on_worker(case: Case, out_dir: str, options: SegmentOptions, overwrite: bool,
                      series: str | None, limits: InputLimits | None) -> dict:
    """The task of one case: the batch engine's ``run_case`` with the worker's segmenters; a summary entry."""
    from distributed import get_worker

    engine = get_worker().plugins[PLUGIN_NAME].engine(options, Path(out_dir))
    work = segment_file(Path(out_dir), options, overwrite=overwrite, series=series, limits=limits)
    return engine.run_case(case, work)


def run_on_cluster(inputs: list[Path], out_dir: Path, options: SegmentOptions, models_dir: Path | None = None,
                   overwrite: bool = False, series: str | None = None, workers: int | None = None,
                   scheduler: str | None = None, show_progress: bool = True,
                   log: Callable[[str], None] = lambda line: None, limits: InputLimits | None = None) -> dict:
    """Segment image files / DICOM folders into ``out_dir`` on a Dask cluster (``workers`` local processes,
    or the running cluster at ``scheduler``), after the single-process batch's checks (:func:`~.cases.plan_batch`);
    returns the summary, also written to ``out_dir/summary.json``."""
    models, planned = plan_batch(inputs, out_dir, options, models_dir, overwrite, series, log, limits)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries: list[dict | None] = [None if isinstance(c, Case) else c for c in planned]
    summary = {"options": asdict(options), "models": str(models.root), "cases": []}
    run = uuid.uuid4().hex[:8]
    with _client(workers, scheduler) as client:
        client.register_plugin(SegmenterPlugin(str(models.root), threads_per_worker(workers)), name=PLUGIN_NAME)
        futures = {client.submit(segment_on_worker, case, str(out_dir), options, overwrite, series, limits,
                                 pure=False, key=f"spinesegdiff-{run}-{index}"): index
                   for index, case in enumerate(planned) if isinstance(case, Case)}
        for entry in (e for e in entries if e is not None):
            log(case_line(entry))
        for index, entry in _finished(futures, planned, show_progress):
            entries[index] = entry
            summary["cases"] = [e for e in entries if e is not None]
            write_summary(summary, out_dir)
            log(case_line(entry))
    summary["cases"] = [e for e in entries if e is not None]
    write_summary(summary, out_dir)
    return summary


def _finished(futures: dict, planned: list, show_progress: bool) -> Iterator[tuple[int, dict]]:
    """``(index, summary entry)`` of each case as its task ends; a task whose worker died is a failed entry."""
    from distributed import as_completed
    from tqdm import tqdm

    with tqdm(total=len(futures), desc="cases", unit="case", disable=not show_progress) as bar:
        for future in as_completed(futures):
            index = futures[future]
            case = planned[index]
            try:
                entry = future.result()
            except Exception as error:  # the worker process died (out of memory, killed): only this case
                entry = {"input": case.name, "stem": case.stem, "status": "failed",
                         "reason": f"the Dask worker running this case failed ({type(error).__name__}: {error}); "
                                   "run again to redo it"}
            bar.update()
            yield index, entry


@contextmanager
def _client(workers: int | None, scheduler: str | None):
    """A client on a new local cluster of ``workers`` processes, or on the cluster at ``scheduler``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SpineSegDiffError("running on several workers needs Dask's distributed package", INSTALL_HINT) from None
    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    import dask

    with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environment(threads_per_worker(workers))}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=40)
    with cluster, Client(cluster) as client:
        yield client


def worker_environment(threads: int) -> dict[str, str]:
    """The environment local workers start with: ``threads`` for OpenMP, MKL and OpenBLAS. Dask's default
    (1 thread, and its own ``MALLOC_TRIM_THRESHOLD_``) made a central case take 5.9 s instead of 3.0 s on a
    one-worker cluster on 2 cores; with this environment it takes what it takes in one process."""
    return {name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}


def threads_per_worker(workers: int | None) -> int | None:
    """PyTorch threads for each of ``workers`` local processes: the cores shared out (None on a remote cluster)."""
    return max(1, (os.cpu_count() or 1) // workers) if workers else None
