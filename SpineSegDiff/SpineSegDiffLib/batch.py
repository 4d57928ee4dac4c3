"""Many volumes in one run: models loaded once, failures recorded and skipped, finished cases kept.

``OUT/summary.json`` lists every case with its status (``done``, ``skipped`` when its results already
existed, ``failed`` with the reason) and is rewritten atomically after each case, so an interrupted
run can simply be started again: finished cases are skipped, the rest are done once.
"""

from __future__ import annotations

import json
from pathlib import Path

from tqdm import tqdm

from .errors import SpineSegDiffError
from .io import read_volume, stem_of, write_text
from .options import SegmentOptions
from .outputs import is_complete, write_case
from .pipeline import Segmenter


class _ProgressBar:
    """tqdm bar per case, fed by the pipeline's ``progress(stage, fraction)`` calls."""

    def __init__(self, name: str, enabled: bool) -> None:
        self.bar = tqdm(total=100, desc=name, unit="%", disable=not enabled, leave=True,
                        bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")

    def __call__(self, stage: str, fraction: float) -> None:
        self.bar.set_postfix_str(stage)
        self.bar.n = round(100 * fraction)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def run_batch(cases: list[Path], out_dir: Path, options: SegmentOptions, models_dir: Path | None = None,
              overwrite: bool = False, series: str | None = None, show_progress: bool = True) -> dict:
    """Segment every case; returns the summary (also written to ``out_dir/summary.json``)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {"options": vars(options).copy(), "cases": []}
    segmenter: Segmenter | None = None
    seen: set[str] = set()
    for path in cases:
        stem = stem_of(path)
        if stem in seen:  # e.g. <case>/image.nii.gz for many cases: name them after their folder
            stem = f"{path.parent.name}_{stem}"
        entry = {"input": str(path), "stem": stem}
        if stem in seen:
            entry.update(status="failed", reason=f"another input has the same name {stem!r}; rename one")
        elif is_complete(out_dir, stem) and not overwrite:
            entry.update(status="skipped", reason="results already exist (use --overwrite to redo)")
        else:
            segmenter = segmenter or Segmenter(models_dir, options.device)
            entry.update(_segment_one(segmenter, path, stem, out_dir, options, overwrite, series, show_progress))
        seen.add(stem)
        summary["cases"].append(entry)
        write_text(json.dumps(summary, indent=2) + "\n", out_dir / "summary.json")
    return summary


def _segment_one(segmenter, path, stem, out_dir, options, overwrite, series, show_progress) -> dict:
    bar = _ProgressBar(stem, show_progress)
    try:
        image = read_volume(path, series)
        result = segmenter.segment(image, options, bar)
        report = write_case(result, out_dir, stem, str(path), overwrite)
        return {"status": "done", "slice_index": report["slice_index"], "seconds": report["timings_s"]["total"]}
    except SpineSegDiffError as error:
        return {"status": "failed", "reason": str(error)}
    finally:
        bar.close()
