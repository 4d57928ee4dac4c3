"""DICOM Segmentation objects for results of inputs read from a DICOM series, so they can go back to a PACS.

Two BINARY SEGs, each its own series on the same source images, neither with overlapping segments (viewers such
as OHIF refuse or flatten overlapping ones): the structure SEG, one segment per structure of the label table (same
names, colours and codes as the ``.seg.nrrd`` and the module's terminology), and the level SEG, one segment per
named level (vertebral bodies and discs, :mod:`.dicom_segments`). Segments without voxels are left out. Every
stored frame references the SOP Instance UID of the source slice it lies on, so a viewer overlays it on the
series; empty frames are not stored. highdicom and pydicom are imported only when a SEG is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..anatomy.report import kind_entries
from ..errors import SpineSegDiffError
from ..io import atomic_path, list_dicom_series
from .dicom_segments import Segment, description, level_segments, structure_segments

if TYPE_CHECKING:
    from pydicom import Dataset

MANUFACTURER = "SpineSegDiff"


class SeriesText(NamedTuple):
    """What tells one SEG series from the other: its description, content label, series number offset (added to
    the source series' number)."""

    description: str
    content_label: str
    number_offset: int


STRUCTURE_SERIES = SeriesText("SpineSegDiff segmentation", "SPINESEGDIFF", 1000)
LEVEL_SERIES = SeriesText("SpineSegDiff levels (vertebral bodies, discs)", "SPINESEG_LEVELS", 2000)
SERIES_DESCRIPTION = STRUCTURE_SERIES.description
DEVICE_SERIAL_NUMBER = "1"
"""Required by the Enhanced General Equipment module; software has no serial number."""
REQUIRED_TAGS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
                 "Rows", "Columns", "PixelSpacing", "ImagePositionPatient", "ImageOrientationPatient")
SAME_FOR_ALL = ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "Rows", "Columns")
ORIENTATION_TOLERANCE = 1e-3
"""Largest difference of direction cosines between slices (and with the labelmap) taken as equal."""
POSITION_TOLERANCE = 0.1
"""Largest distance, in voxels, of a slice's ImagePositionPatient from a voxel corner of the labelmap."""
EXPORT_HINT = ("export the series from the PACS as classic single-frame images (one file per slice) with full "
               "headers; the segmentation is still in the other output files")
GRID_HINT = "DICOM SEG export needs the labelmap on the grid of the series it was read from"


def source_dicom_files(path: str | Path, series_uid: str | None = None) -> list[Path] | None:
    """The files of the DICOM series the input was read from, or ``None`` when the input is not DICOM.

    Args:
        path: the input given to :func:`~SpineSegDiffLib.io.read_volume` (file or folder).
        series_uid: the series chosen in a folder holding several (``--series``).

    Returns:
        The series' files in the reader's order for a DICOM series folder, ``[path]`` for a single DICOM
        file, ``None`` for anything else (NIfTI, NRRD, MHA files, folders without a DICOM series).
    """
    path = Path(path)
    if path.is_file():
        return [path] if _has_dicom_preamble(path) else None
    if not path.is_dir():
        return None
    series = list_dicom_series(path)
    if not series:
        return None
    if series_uid is None and len(series) > 1:
        raise SpineSegDiffError(f"{path} holds {len(series)} DICOM series", "choose one with --series UID")
    uid = series_uid or next(iter(series))
    if uid not in series:
        raise SpineSegDiffError(f"series {uid} is not in {path}", "run again without --series to list them")
    return [Path(name) for name in series[uid]]


def levels_from_report(levels: dict) -> list[dict]:
    """``write_dicom_seg``'s ``levels`` from the report's levels section.

    Args:
        levels: ``{"vertebrae": [...], "discs": [...]}``, entries with ``name`` and ``label_value``.

    Returns:
        ``[{"name", "kind", "label_value"}]``, vertebrae then discs, bottom-up as given
        (:func:`~SpineSegDiffLib.anatomy.report.kind_entries`).
    """
    return [{"name": entry["name"], "kind": kind, "label_value": entry.get("label_value")}
            for kind, entry in kind_entries(levels)]


def _has_dicom_preamble(path: Path) -> bool:
    """DICOM Part 10 files have ``DICM`` after a 128-byte preamble."""
    with open(path, "rb") as stream:
        return stream.read(132)[128:] == b"DICM"


def write_dicom_seg(labels: sitk.Image, source_files: list[Path], path: Path, levels: list[dict] | None = None,
                    level_labels: sitk.Image | None = None, levels_path: Path | None = None) -> list[Path]:
    """Write ``labels`` as a DICOM Segmentation (BINARY) of the series ``source_files`` and, with ``levels``, the
    named levels as a second one (its own series, same source images).

    Args:
        labels: uint8 labelmap (values from the label table) on the grid of the series, i.e. read from
            ``source_files``: size ``(X, Y, Z) = (Columns, Rows, number of slices)``.
        source_files: the series' files (:func:`source_dicom_files`), in any order.
        path: the structure SEG's ``.dcm`` file (written atomically): one segment per structure with voxels.
        levels: optional named levels, dicts with ``name`` (``"L4"``, ``"L4/L5"``), ``kind`` (a level kind of the
            report) and ``label_value`` (their value in ``level_labels``; ``None`` for a level that was not
            segmented), e.g. from :func:`levels_from_report`; one segment each in the level SEG, in this order
            (:func:`~.dicom_segments.level_segments`). Levels without voxels get no segment.
        level_labels: integer labelmap of the levels on the same grid as ``labels``.
        levels_path: the level SEG's ``.dcm`` file; needed with ``levels``. Not written when no level has voxels.

    Returns:
        The files written: ``[path]`` or ``[path, levels_path]``.

    Raises:
        SpineSegDiffError: the files are not a classic single-frame series with parallel slices and full
            geometry, ``labels`` is not on their grid, or ``labels`` holds no structure.
        ValueError: ``levels`` without ``level_labels`` or ``levels_path`` (or the reverse), a level of unknown
            kind, two levels with one label value, or ``level_labels`` of another size than ``labels``.
    """
    level_numbers, level_segs = _level_segments(labels, levels, level_labels, levels_path)
    datasets = _read_sources(source_files)
    slices = _slice_indices(datasets, labels)
    numbers, segments = structure_segments(sitk.GetArrayViewFromImage(labels))
    if not segments:
        raise SpineSegDiffError("the segmentation is empty: a DICOM SEG needs at least one segment",
                                "the other output files show the (empty) result")
    written = [_save(datasets, numbers[slices], segments, Path(path), STRUCTURE_SERIES)]
    if level_segs:
        written.append(_save(datasets, level_numbers[slices], level_segs, Path(levels_path), LEVEL_SERIES))
    return written


def _level_segments(labels: sitk.Image, levels: list[dict] | None, level_labels: sitk.Image | None,
                    levels_path: Path | None) -> tuple[np.ndarray | None, list[Segment]]:
    """The level SEG's segment numbers ``(Z, Y, X)`` and segments (none without ``levels``); checks the arguments."""
    if (levels is None) != (level_labels is None) or (levels is not None and levels_path is None):
        raise ValueError("levels, level_labels and levels_path go together")
    if levels is None:
        return None, []
    if level_labels.GetSize() != labels.GetSize():
        raise ValueError(f"level_labels is {level_labels.GetSize()}, labels {labels.GetSize()}")
    return level_segments(sitk.GetArrayViewFromImage(level_labels), levels)


def _save(datasets: list[Dataset], numbers: np.ndarray, segments: list[Segment], path: Path,
          series: SeriesText) -> Path:
    """Write one BINARY SEG, a new series, of the source slices ``datasets``: ``numbers`` ``(slices, Y, X)`` holds
    each pixel's segment number (0: none), so segments cannot overlap; empty frames are not stored."""
    import highdicom as hd

    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=numbers, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description(segment) for segment in segments], series_instance_uid=hd.UID(),
        series_number=series.number_offset + int(getattr(datasets[0], "SeriesNumber", None) or 0),
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=MANUFACTURER,
        software_versions=__version__, device_serial_number=DEVICE_SERIAL_NUMBER, content_label=series.content_label,
        content_description=series.description, series_description=series.description,
    )
    with atomic_path(path) as temporary:
        seg.save_as(temporary)
    return path


def _read_sources(files: list[Path]) -> list[Dataset]:
    """Headers of the source slices (no pixel data), checked to be one classic single-frame series."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not files:
        raise SpineSegDiffError("no DICOM files were given for the DICOM SEG", "give the input series' files")
    datasets = []
    for file in files:
        try:
            datasets.append(pydicom.dcmread(file, stop_before_pixels=True))
        except (InvalidDicomError, OSError) as error:
            raise SpineSegDiffError(f"{file} could not be read as DICOM ({error})", EXPORT_HINT) from None
    for file, dataset in zip(files, datasets):
        _check_source(dataset, Path(file).name)
    for tag in SAME_FOR_ALL:
        if len({str(getattr(d, tag)) for d in datasets}) > 1:
            raise SpineSegDiffError(f"the DICOM files differ in {tag}: they are not one series", EXPORT_HINT)
    _check_parallel(datasets)
    return datasets


def _check_source(dataset: Dataset, name: str) -> None:
    """One classic single-frame image with the tags that place it in space."""
    if int(getattr(dataset, "NumberOfFrames", None) or 1) > 1 or "PerFrameFunctionalGroupsSequence" in dataset:
        raise SpineSegDiffError(f"{name} is a multi-frame (enhanced) DICOM image; DICOM SEG export needs "
                                "one file per slice", EXPORT_HINT)
    missing = [tag for tag in REQUIRED_TAGS if getattr(dataset, tag, None) in (None, "")]
    if missing:
        raise SpineSegDiffError(f"{name} lacks DICOM tags the DICOM SEG needs: {', '.join(missing)}", EXPORT_HINT)


def _check_parallel(datasets: list[Dataset]) -> None:
    """All slices share one ImageOrientationPatient (oblique is fine, tilted or curved stacks are not)."""
    orientations = np.array([[float(v) for v in d.ImageOrientationPatient] for d in datasets])
    if np.abs(orientations - orientations[0]).max() > ORIENTATION_TOLERANCE:
        raise SpineSegDiffError("the DICOM slices are not parallel (their ImageOrientationPatient differ)",
                                "DICOM SEG export needs one stack of parallel slices; use the other output files")


def _slice_indices(datasets: list[Dataset], labels: sitk.Image) -> list[int]:
    """Index ``k`` of the labelmap slice ``(Y, X)`` each source slice lies on, in the order of ``datasets``."""
    _check_grid(datasets[0], labels)
    indices = []
    for dataset in datasets:
        point = [float(v) for v in dataset.ImagePositionPatient]
        i, j, k = labels.TransformPhysicalPointToContinuousIndex(point)
        if max(abs(i), abs(j), abs(k - round(k))) > POSITION_TOLERANCE or not 0 <= round(k) < labels.GetSize()[2]:
            raise SpineSegDiffError(f"DICOM slice {dataset.SOPInstanceUID} does not lie on a slice of the "
                                    "labelmap (slice positions off one regular grid)", GRID_HINT)
        indices.append(round(k))
    if len(set(indices)) != len(indices):
        raise SpineSegDiffError("several DICOM slices lie at the same position", GRID_HINT)
    return indices


def _check_grid(dataset: Dataset, labels: sitk.Image) -> None:
    """The labelmap's in-plane size, spacing and axes are those of the slices."""
    size_x, size_y, _ = labels.GetSize()
    if (size_x, size_y) != (int(dataset.Columns), int(dataset.Rows)):
        raise SpineSegDiffError(f"the labelmap's slices are {size_x} x {size_y} voxels, the DICOM slices "
                                f"{dataset.Columns} x {dataset.Rows}", GRID_HINT)
    row_spacing, column_spacing = (float(v) for v in dataset.PixelSpacing)
    if not np.allclose(labels.GetSpacing()[:2], (column_spacing, row_spacing), rtol=1e-3, atol=1e-4):
        raise SpineSegDiffError(f"the labelmap's spacing {labels.GetSpacing()[:2]} is not the DICOM "
                                f"PixelSpacing {list(dataset.PixelSpacing)}", GRID_HINT)
    direction = np.array(labels.GetDirection()).reshape(3, 3)
    orientation = np.array([float(v) for v in dataset.ImageOrientationPatient])
    if np.abs(direction[:, :2].T.ravel() - orientation).max() > ORIENTATION_TOLERANCE:
        raise SpineSegDiffError("the labelmap's axes are not the DICOM ImageOrientationPatient", GRID_HINT)
