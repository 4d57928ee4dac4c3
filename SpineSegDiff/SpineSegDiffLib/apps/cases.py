"""Image files and DICOM folders as batch cases: planning (inputs checked from their headers, the output folder
and its free space, all before any model loads), the work for one case (read, segment, write every output), and
:func:`run_batch`, the command line's batch."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import SpineSegDiffError
from ..header import ImageHeader, InputLimits, header_of_image
from ..io import check_input, is_image_file, read_volume, stem_of
from ..modelset.model_set import ModelSet, open_models
from ..options import SegmentOptions
from ..outputs.destination import (
    check_free_space,
    check_output_folder,
    check_output_name,
    expected_output_bytes,
    plain_os_errors,
)
from ..outputs.writer import is_complete
from .batch import BatchEngine, Case


def expand_inputs(inputs: list[Path]) -> list[Path]:
    """Files stay; a folder of image files becomes its files; a DICOM folder stays one input."""
    cases: list[Path] = []
    for path in inputs:
        files = sorted(p for p in path.iterdir() if is_image_file(p)) if path.is_dir() else []
        cases.extend(files or [path])  # a folder without image files is read as a DICOM series
    return cases


def file_cases(inputs: list[Path], out_dir: Path, overwrite: bool, series: str | None = None,
               limits: InputLimits | None = None) -> list[Case | dict]:
    """Cases to run, and entries for inputs decided now: missing, unreadable or refused from its header
    (``failed``), name taken by another input or too long (``failed``), results already there (``skipped``)."""
    planned: list[Case | dict] = []
    seen: set[str] = set()
    for path in expand_inputs(inputs):
        stem = stem_of(path)
        if stem in seen:  # e.g. <case>/image.nii.gz for many cases: name them after their folder
            stem = f"{path.parent.name}_{stem}"
        entry = {"input": str(path), "stem": stem}
        if stem in seen:
            planned.append({**entry, "status": "failed",
                            "reason": f"another input has the same name {stem!r}; rename one of them"})
        elif is_complete(out_dir, stem) and not overwrite:
            planned.append({**entry, "status": "skipped", "reason": "results already exist (use --overwrite to redo)"})
        else:
            planned.append(_checked(path, stem, series, out_dir, limits))
        seen.add(stem)
    return planned


def _checked(path: Path, stem: str, series: str | None, out_dir: Path, limits: InputLimits | None) -> Case | dict:
    try:
        header = check_input(path, series, limits)
        check_output_name(out_dir, stem)
    except SpineSegDiffError as error:
        return {"input": str(path), "stem": stem, "status": "failed", "reason": str(error)}
    return Case(str(path), stem, path, expected_output_bytes(header))


def preflight(source: Path, out_dir: Path, stem: str, series: str | None = None,
              limits: InputLimits | None = None) -> ImageHeader:
    """The checks of one case before any model loads (the worker's): the output folder, the input from its
    header, the output names and the free space for the outputs. Raises :class:`SpineSegDiffError`
    (:class:`~..errors.OutputFolderError` for the output folder); returns the input's header."""
    check_output_folder(out_dir)
    header = check_input(Path(source), series, limits)
    check_output_name(out_dir, stem)
    check_free_space(out_dir, expected_output_bytes(header))
    return header


def segment_file(out_dir: Path, options: SegmentOptions, *, overwrite: bool, series: str | None = None,
                 show_progress: bool = False, progress: Callable[[str, float], None] | None = None,
                 limits: InputLimits | None = None):
    """The work for one file case: read (refusing what is over ``limits``), segment, write; returns the summary
    fields. The operating system's errors while writing become one message naming ``out_dir``.

    ``progress(stage, fraction)``, when given, also receives the pipeline's progress (it may raise
    :class:`~.errors.Cancelled`)."""
    from ..outputs.dicom_seg import source_dicom_files
    from ..outputs.writer import write_case

    def work(case: Case, segmenter) -> dict:
        bar = ProgressBar(case.stem, show_progress)
        try:
            image = read_volume(case.source, series, limits)
            result = segmenter.segment(image, options, bar if progress is None else _both(bar, progress))
            dicom_sources = source_dicom_files(case.source, series)
            with plain_os_errors(out_dir, expected_output_bytes(header_of_image(image))):
                report = write_case(result, out_dir, case.stem, case.name, overwrite, dicom_sources)
        finally:
            bar.close()
        return {"slice_index": report["slice_index"], "seconds": report["timings_s"]["total"]}

    return work


def _both(first: Callable[[str, float], None], second: Callable[[str, float], None]) -> Callable[[str, float], None]:
    def report(stage: str, fraction: float) -> None:
        first(stage, fraction)
        second(stage, fraction)

    return report


class ProgressBar:
    """tqdm bar per case, fed by the pipeline's ``progress(stage, fraction)`` calls."""

    def __init__(self, name: str, enabled: bool) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=100, desc=name, unit="%", disable=not enabled, leave=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, stage: str, fraction: float) -> None:
        self.bar.set_postfix_str(stage)
        self.bar.n = round(100 * fraction)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def plan_batch(inputs: list[Path], out_dir: Path, options: SegmentOptions, models_dir: Path | None = None,
               overwrite: bool = False, series: str | None = None, log: Callable[[str], None] = lambda line: None,
               limits: InputLimits | None = None) -> tuple[ModelSet, list[Case | dict]]:
    """What a batch checks before any model loads: the output folder (:class:`~..errors.OutputFolderError`), the
    options against the models, every input from its header, and the free space for the largest case.
    Returns the opened models and the planned cases (single process and cluster alike)."""
    check_output_folder(out_dir)
    models = open_models(models_dir)
    models.check(options)
    cases = file_cases(inputs, out_dir, overwrite, series, limits)
    sizes = [case.output_bytes for case in cases if isinstance(case, Case)]
    check_free_space(out_dir, max(sizes, default=0), sum(sizes), log)
    return models, cases


def run_batch(inputs: list[Path], out_dir: Path, options: SegmentOptions, models_dir: Path | None = None,
              overwrite: bool = False, series: str | None = None, show_progress: bool = True,
              log: Callable[[str], None] = lambda line: None, limits: InputLimits | None = None) -> dict:
    """Segment image files / DICOM folders into ``out_dir`` in this process (the command line's batch), after
    :func:`plan_batch`'s checks."""
    models, cases = plan_batch(inputs, out_dir, options, models_dir, overwrite, series, log, limits)
    engine = BatchEngine(models, options, out_dir, log)
    return engine.run(cases, segment_file(out_dir, options, overwrite=overwrite, series=series,
                                         show_progress=show_progress, limits=limits))
