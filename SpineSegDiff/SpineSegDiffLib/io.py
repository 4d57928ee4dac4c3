"""Reading volumes (NIfTI, NRRD, MHA/MHD, DICOM series) with checks, and writing files atomically.

Every user mistake becomes one :class:`SpineSegDiffError` that says what is wrong and what to do. Every input
is checked from its header first (:mod:`.header`), so a volume too large to read is refused before it is read.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import SpineSegDiffError
from .header import (  # noqa: F401 (MAX_VOXELS, MIN_VOXELS_IN_PLANE, InputLimits: re-exported)
    MAX_VOXELS,
    MIN_VOXELS_IN_PLANE,
    ImageHeader,
    InputLimits,
    check_header,
    first_line,
    header_of_image,
    read_dicom_header,
    read_file_header,
)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
GZIP_HEADER_ALLOWANCE = 64 * 1024 * 1024
"""Bytes a ``.gz`` stream may hold beyond its voxel data (header, extensions) before it counts as a bomb."""


def stem_of(path: Path) -> str:
    """File name without image suffixes (``case.nii.gz -> case``); a DICOM folder's own name."""
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def read_volume(path: str | Path, series_uid: str | None = None, limits: InputLimits | None = None) -> sitk.Image:
    """Read and validate a 3D scalar volume from a file or a DICOM series folder.

    The header is checked first (:func:`check_input`), so a volume over ``limits`` is refused before any
    voxel is read."""
    path = Path(path)
    header = check_input(path, series_uid, limits)
    if path.is_dir():
        image = _read_dicom_folder(path, series_uid)
    else:
        image = _read_file(path, header.data_bytes + GZIP_HEADER_ALLOWANCE)
    validate_volume(image, str(path), limits)
    return image


def check_input(path: Path, series_uid: str | None = None, limits: InputLimits | None = None) -> ImageHeader:
    """The checks made before any model loads and before any voxel is read: the input exists, its header (or,
    for a folder, the tags of its one DICOM series) can be read and passes :func:`~.header.check_header`.
    Returns the header. :func:`read_volume` checks the voxel values."""
    path = Path(path)
    if not path.exists():
        raise SpineSegDiffError(f"{path} does not exist", "check the path (and quote names with spaces)")
    header = read_dicom_header(_series_files(path, series_uid)) if path.is_dir() else read_file_header(path)
    check_header(header, str(path), limits)
    return header


def _read_file(path: Path, most_bytes: int) -> sitk.Image:
    if path.name.lower().endswith(".gz"):
        _check_gzip_complete(path, most_bytes)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise SpineSegDiffError(
            f"{path} could not be read as an image ({first_line(error)})",
            "give a NIfTI, NRRD, MHA/MHD file or a DICOM series folder",
        ) from None


def _check_gzip_complete(path: Path, most_bytes: int) -> None:
    """SimpleITK reads a truncated .gz silently (zeros for the missing part): read it through, in constant
    memory, refusing a stream that decompresses to more than ``most_bytes`` (more than its header says)."""
    total = 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(16 * 1024 * 1024):
                total += len(chunk)
                if total > most_bytes:
                    raise SpineSegDiffError(f"{path} decompresses to more data than its header describes",
                                            "export the volume again")
    except (EOFError, OSError, zlib.error) as error:
        raise SpineSegDiffError(
            f"{path} is truncated or corrupt ({error})", "copy or export the file again"
        ) from None


def list_dicom_series(folder: Path) -> dict[str, list[str]]:
    """Series UID -> sorted file names of every DICOM series in ``folder``."""
    reader = sitk.ImageSeriesReader
    return {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in reader.GetGDCMSeriesIDs(str(folder))}


def _series_files(folder: Path, series_uid: str | None) -> list[str]:
    """The files of the one DICOM series in ``folder`` (or of ``series_uid``), else the reason."""
    series = list_dicom_series(folder)
    if not series:
        raise SpineSegDiffError(f"{folder} holds no image files and no DICOM series",
                                "give a DICOM series folder, a folder of image files or an image file")
    if series_uid is None and len(series) > 1:
        listing = "\n".join(f"    {uid} ({len(files)} files)" for uid, files in series.items())
        raise SpineSegDiffError(
            f"{folder} holds {len(series)} DICOM series:\n{listing}", "choose one with --series UID"
        )
    uid = series_uid or next(iter(series))
    if uid not in series:
        raise SpineSegDiffError(f"series {uid} is not in {folder}", "run again without --series to list them")
    return series[uid]


def _read_dicom_folder(folder: Path, series_uid: str | None) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(_series_files(folder, series_uid))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise SpineSegDiffError(f"the DICOM series in {folder} could not be read ({first_line(error)})") from None


def validate_volume(image: sitk.Image, name: str, limits: InputLimits | None = None) -> None:
    """Refuse what the pipeline cannot segment, with the reason: the header checks, then NaN and constant voxels."""
    check_header(header_of_image(image), name, limits)
    _check_values(sitk.GetArrayViewFromImage(image), name)


def _check_values(array: np.ndarray, name: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise SpineSegDiffError(
            f"{name} has {bad} NaN or infinite voxels", "fix or re-export the volume (NaN voxels cannot be segmented)"
        )
    if array.min() == array.max():
        raise SpineSegDiffError(f"{name} is constant (every voxel is {array.flat[0]})", "check that it is an MRI")


@contextlib.contextmanager
def atomic_path(destination: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``destination``; rename it into place only on success."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(destination.suffixes) or ".tmp"
    handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=suffix, dir=destination.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, destination)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(text: str, destination: Path) -> None:
    with atomic_path(destination) as temporary:
        temporary.write_text(text, encoding="utf-8")
