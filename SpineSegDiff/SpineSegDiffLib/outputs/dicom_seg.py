"""DICOM Segmentation objects for results of inputs read from a DICOM series, so they can go back to a PACS.

One BINARY segment per structure of the label table (same names, colours and codes as the ``.seg.nrrd`` and
the module's terminology), optionally followed by one segment per named level. Every stored frame references
the SOP Instance UID of the source slice it lies on, so a viewer overlays it on the series; empty frames are
not stored. highdicom and pydicom are imported only when a SEG is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import SimpleITK as sitk

from .. import __version__
from ..anatomy.report import KIND_NAMES, kind_entries, level_terminology, structure_of
from ..errors import SpineSegDiffError
from ..io import atomic_path, list_dicom_series
from ..labels import CATEGORY, STRUCTURES

if TYPE_CHECKING:
    from pydicom import Dataset

SERIES_DESCRIPTION = "SpineSegDiff segmentation"
MANUFACTURER = "SpineSegDiff"
CONTENT_LABEL = "SPINESEGDIFF"
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


def write_dicom_seg(labels: sitk.Image, source_files: list[Path], path: Path,
                    levels: list[dict] | None = None, level_labels: sitk.Image | None = None) -> Path:
    """Write ``labels`` as a DICOM Segmentation (BINARY) of the series ``source_files``.

    Args:
        labels: uint8 labelmap (values from the label table) on the grid of the series, i.e. read from
            ``source_files``: size ``(X, Y, Z) = (Columns, Rows, number of slices)``.
        source_files: the series' files (:func:`source_dicom_files`), in any order.
        path: the ``.dcm`` file to write (written atomically).
        levels: optional named levels, dicts with ``name`` (``"L4"``, ``"L4/L5"``), ``kind`` (``"vertebra"``
            or ``"disc"``) and ``label_value`` (their value in ``level_labels``; ``None`` for a level that was
            not segmented), e.g. from :func:`levels_from_report`; one segment each, after the structures, in
            this order. Levels without voxels get no segment.
        level_labels: integer labelmap of the levels on the same grid as ``labels``.

    Returns:
        ``path``.

    Raises:
        SpineSegDiffError: the files are not a classic single-frame series with parallel slices and full
            geometry, or ``labels`` is not on their grid.
        ValueError: ``levels`` without ``level_labels`` (or the reverse), or a level of unknown kind.
    """
    import highdicom as hd

    datasets = _read_sources(source_files)
    slices = _slice_indices(datasets, labels)
    masks, descriptions = _segments(labels, levels, level_labels)
    seg = hd.seg.Segmentation(
        source_images=datasets, pixel_array=masks[slices], segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(),
        series_number=1000 + int(getattr(datasets[0], "SeriesNumber", None) or 0), sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer=MANUFACTURER, manufacturer_model_name=MANUFACTURER,
        software_versions=__version__, device_serial_number=DEVICE_SERIAL_NUMBER, content_label=CONTENT_LABEL,
        content_description=SERIES_DESCRIPTION, series_description=SERIES_DESCRIPTION,
    )
    path = Path(path)
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


def _segments(labels: sitk.Image, levels: list[dict] | None,
              level_labels: sitk.Image | None) -> tuple[np.ndarray, list[Any]]:
    """Boolean masks ``(Z, Y, X, S)`` and the ``S`` highdicom segment descriptions, numbered from 1."""
    if (levels is None) != (level_labels is None):
        raise ValueError("levels and level_labels go together")
    array = sitk.GetArrayViewFromImage(labels)
    masks = [array == s.value for s in STRUCTURES]
    descriptions = [_description(n, s.name, _type_code(s.terminology), s.color)
                    for n, s in enumerate(STRUCTURES, start=1)]
    if levels:
        if level_labels.GetSize() != labels.GetSize():
            raise ValueError(f"level_labels is {level_labels.GetSize()}, labels {labels.GetSize()}")
        level_array = sitk.GetArrayViewFromImage(level_labels)
        for level in levels:
            mask = level_array == int(level["label_value"] or 0)
            if level["label_value"] and mask.any():
                masks.append(mask)
                descriptions.append(_level_description(len(masks), level))
    return np.stack(masks, axis=-1), descriptions


def _level_description(number: int, level: dict) -> Any:
    """A named level's segment: its name as label and tracking ID, its type code
    (:func:`~SpineSegDiffLib.anatomy.report.level_terminology`), its structure's colour."""
    if level.get("kind") not in KIND_NAMES:
        raise ValueError(f"level {level.get('name')!r} has kind {level.get('kind')!r}, not one of "
                         f"{sorted(KIND_NAMES)}")
    kind = _type_code(level_terminology(level["kind"], level["name"]))
    color = structure_of(level["kind"]).color
    return _description(number, level["name"], kind, color, tracking_id=level["name"])


def _type_code(terminology: str) -> tuple[str, str, str]:
    """``(scheme, value, meaning)`` of the type in a Slicer terminology entry (its third ``~`` field)."""
    scheme, value, meaning = terminology.split("~")[2].split("^")
    return scheme, value, meaning


def _description(number: int, label: str, kind: tuple[str, str, str], color: tuple[float, float, float],
                 tracking_id: str | None = None) -> Any:
    """highdicom ``SegmentDescription`` of type code ``kind`` = ``(scheme, value, meaning)`` in the Anatomical
    Structure category, RGB ``color`` in 0..1, made by the SpineSegDiff algorithm."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    category_scheme, category_code, category_meaning = CATEGORY.split("^")
    scheme, value, meaning = kind
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=label,
        segmented_property_category=hd.sr.CodedConcept(category_code, category_scheme, category_meaning),
        segmented_property_type=hd.sr.CodedConcept(value, scheme, meaning),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=MANUFACTURER, family=codes.cid7162.ArtificialIntelligence, version=__version__),
        tracking_id=tracking_id, tracking_uid=hd.UID() if tracking_id else None,
        display_color=hd.color.CIELabColor.from_rgb(*(round(255 * c) for c in color)),
    )
