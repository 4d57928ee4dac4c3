"""Writing one case's results: labelmap, heatmap, .seg.nrrd, level labelmap, levels CSV (per slice too in
the volumetric modes), report JSON, preview PNG.

All files go to a hidden staging folder first and are renamed into place one by one, the report
last: a case is complete exactly when its report exists, so an interrupted run never leaves a
half-written file that looks like a result.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..anatomy.report import write_levels_csv, write_slice_levels_csv
from ..errors import SpineSegDiffError
from ..inference.pipeline import SegmentationResult
from ..labels import STRUCTURES
from .dicom_seg import levels_from_report, write_dicom_seg
from .preview import write_preview
from .segfile import write_seg_nrrd

SUFFIXES = {
    "labels": "_labels.nii.gz",
    "uncertainty": "_uncertainty.nii.gz",
    "segmentation": ".seg.nrrd",
    "level_labels": "_level_labels.nii.gz",
    "preview": "_preview.png",
    "dicom_seg": "_seg.dcm",
    "level_seg": "_levels_seg.dcm",
    "levels": "_levels.csv",
    "slice_levels": "_levels_per_slice.csv",
    "report": "_report.json",
}


def output_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    return {key: out_dir / f"{stem}{suffix}" for key, suffix in SUFFIXES.items()}


def is_complete(out_dir: Path, stem: str) -> bool:
    """A case is done when its report exists (the report is written last)."""
    return output_paths(out_dir, stem)["report"].is_file()


def check_writable(out_dir: Path, stem: str, overwrite: bool) -> None:
    """Refuse to replace a finished result unless ``overwrite``."""
    if is_complete(out_dir, stem) and not overwrite:
        raise SpineSegDiffError(
            f"results for {stem} already exist in {out_dir}", "use --overwrite to replace them, or another -o folder"
        )


def structure_statistics(result: SegmentationResult) -> dict[str, dict[str, float]]:
    """Per structure: voxels, area (mm^2, summed over processed slices), volume (mm^3), mean uncertainty."""
    labels = sitk.GetArrayViewFromImage(result.labels)
    heatmap = sitk.GetArrayViewFromImage(result.uncertainty)
    spacing = result.labels.GetSpacing()
    axis = result.geometry.sagittal_axis
    pixel_area = float(np.prod([s for i, s in enumerate(spacing) if i != axis]))
    stats = {}
    for s in STRUCTURES:
        mask = labels == s.value
        count = int(mask.sum())
        stats[s.key] = {
            "name": s.name, "voxels": count, "area_mm2": round(count * pixel_area, 2),
            "volume_mm3": round(count * float(np.prod(spacing)), 2),
            "mean_uncertainty": round(float(heatmap[mask].mean()), 4) if count else None,
        }
    return stats


def build_report(result: SegmentationResult, source: str, timings: dict[str, float]) -> dict:
    return {
        "input": source,
        "slice_index": result.slice_indices[0] if len(result.slice_indices) == 1 else None,
        "slice_indices": list(result.slice_indices),
        "sagittal_axis": result.geometry.sagittal_axis,
        "models": result.models,
        "options": result.options,
        "structures": structure_statistics(result),
        **(result.levels or {}),
        "timings_s": timings,
    }


def write_dicom_seg_or_warn(result: SegmentationResult, sources: list[Path], paths: dict[str, Path],
                            level_labels: sitk.Image | None) -> list[str]:
    """Write the DICOM SEGs of the structures and of the named levels (``level_labels``: the level labelmap on the
    input grid) to ``paths["dicom_seg"]`` and ``paths["level_seg"]``; returns the warning if they could not be
    written."""
    levels = levels_from_report(result.levels) if result.levels and level_labels is not None else None
    try:
        write_dicom_seg(result.labels, sources, paths["dicom_seg"], levels, level_labels if levels else None,
                        paths["level_seg"] if levels else None)
    except SpineSegDiffError as error:
        return [f"no DICOM SEG: {error}"]
    return []


def write_case(result: SegmentationResult, out_dir: Path, stem: str, source: str, overwrite: bool = False,
               dicom_sources: list[Path] | None = None) -> dict:
    """Write every output of one case; returns the report. Nothing is left behind on failure.

    With ``dicom_sources`` (the files of the DICOM series the input was read from) DICOM SEGs are written too
    (structures; named levels); when the series cannot carry them, the report's ``warnings`` say why and the rest
    is written."""
    check_writable(out_dir, stem, overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = output_paths(out_dir, stem)
    staging = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=out_dir))
    try:
        staged = output_paths(staging, stem)
        sitk.WriteImage(result.labels, str(staged["labels"]), useCompression=True)
        sitk.WriteImage(result.uncertainty, str(staged["uncertainty"]), useCompression=True)
        write_seg_nrrd(result.labels, staged["segmentation"])
        level_labels = result.level_labels()
        if level_labels is not None:
            sitk.WriteImage(level_labels, str(staged["level_labels"]), useCompression=True)
        write_preview(result, staged["preview"])
        write_levels_csv(result.levels or {}, staged["levels"])
        if result.slice_levels is not None:
            write_slice_levels_csv(result.slice_levels, staged["slice_levels"])
        report = build_report(result, source, dict(result.timings))
        if dicom_sources:
            report["warnings"] = write_dicom_seg_or_warn(result, dicom_sources, staged, level_labels)
        staged["report"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        for key in SUFFIXES:  # report last
            if staged[key].exists() or key == "report":
                staged[key].replace(paths[key])
        return report
    finally:
        shutil.rmtree(staging, ignore_errors=True)
