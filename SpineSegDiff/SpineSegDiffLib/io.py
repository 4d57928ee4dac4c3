"""Reading volumes (NIfTI, NRRD, MHA/MHD, DICOM series) with checks, and writing files atomically.

Every user mistake becomes one :class:`SpineSegDiffError` that says what is wrong and what to do.
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

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
MIN_VOXELS_IN_PLANE = 32
MAX_VOXELS = 512 * 1024 * 1024
"""Largest volume accepted (voxels): 2 GB as float32, the peak the preprocessing can need."""


def stem_of(path: Path) -> str:
    """File name without image suffixes (``case.nii.gz -> case``); a DICOM folder's own name."""
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def read_volume(path: str | Path, series_uid: str | None = None) -> sitk.Image:
    """Read and validate a 3D scalar volume from a file or a DICOM series folder."""
    path = Path(path)
    if not path.exists():
        raise SpineSegDiffError(f"{path} does not exist", "check the path (and quote names with spaces)")
    image = _read_dicom_folder(path, series_uid) if path.is_dir() else _read_file(path)
    validate_volume(image, str(path))
    return image


def check_input(path: Path, series_uid: str | None = None) -> None:
    """The quick checks made before any model loads: the input exists and its header (or, for a
    folder, its DICOM series) can be read. :func:`read_volume` checks the rest."""
    if not path.exists():
        raise SpineSegDiffError(f"{path} does not exist", "check the path (and quote names with spaces)")
    if path.is_dir():
        series = list_dicom_series(path)
        if not series:
            raise SpineSegDiffError(f"{path} holds no image files and no DICOM series",
                                    "give a DICOM series folder, a folder of image files or an image file")
        if series_uid is not None and series_uid not in series:
            raise SpineSegDiffError(f"series {series_uid} is not in {path}", "run again without --series to list them")
        return
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise SpineSegDiffError(
            f"{path} could not be read as an image ({_first_line(error)})",
            "give a NIfTI, NRRD, MHA/MHD file or a DICOM series folder",
        ) from None


def _read_file(path: Path) -> sitk.Image:
    if path.name.lower().endswith(".gz"):
        _check_gzip_complete(path)
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise SpineSegDiffError(
            f"{path} could not be read as an image ({_first_line(error)})",
            "give a NIfTI, NRRD, MHA/MHD file or a DICOM series folder",
        ) from None


def _check_gzip_complete(path: Path) -> None:
    """SimpleITK reads a truncated .gz silently (zeros for the missing part): read it through."""
    try:
        with gzip.open(path, "rb") as stream:
            while stream.read(16 * 1024 * 1024):
                pass
    except (EOFError, OSError, zlib.error) as error:
        raise SpineSegDiffError(
            f"{path} is truncated or corrupt ({error})", "copy or export the file again"
        ) from None


def list_dicom_series(folder: Path) -> dict[str, list[str]]:
    """Series UID -> sorted file names of every DICOM series in ``folder``."""
    reader = sitk.ImageSeriesReader
    return {uid: list(reader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in reader.GetGDCMSeriesIDs(str(folder))}


def _read_dicom_folder(folder: Path, series_uid: str | None) -> sitk.Image:
    series = list_dicom_series(folder)
    if not series:
        raise SpineSegDiffError(f"{folder} holds no DICOM series", "give a DICOM series folder or an image file")
    if series_uid is None and len(series) > 1:
        listing = "\n".join(f"    {uid} ({len(files)} files)" for uid, files in series.items())
        raise SpineSegDiffError(
            f"{folder} holds {len(series)} DICOM series:\n{listing}", "choose one with --series UID"
        )
    uid = series_uid or next(iter(series))
    if uid not in series:
        raise SpineSegDiffError(f"series {uid} is not in {folder}", "run again without --series to list them")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(series[uid])
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise SpineSegDiffError(f"the DICOM series in {folder} could not be read ({_first_line(error)})") from None


def validate_volume(image: sitk.Image, name: str) -> None:
    """Refuse what the pipeline cannot segment, with the reason."""
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise SpineSegDiffError(
            f"{name} has {image.GetNumberOfComponentsPerPixel()} components per voxel (colour or vector image)",
            "give a grey-scale MRI volume",
        )
    if image.GetDimension() != 3 or (image.GetDimension() == 3 and min(image.GetSize()) < 1):
        raise SpineSegDiffError(
            f"{name} is a {image.GetDimension()}D image; SpineSegDiff needs one 3D volume",
            "give a 3D sagittal volume (for 4D series, extract one time point first)",
        )
    if sorted(image.GetSize())[1] < MIN_VOXELS_IN_PLANE:
        raise SpineSegDiffError(f"{name} is too small ({image.GetSize()})", "give a whole lumbar MRI series")
    if np.prod(image.GetSize()) > MAX_VOXELS:
        raise SpineSegDiffError(
            f"{name} has {np.prod(image.GetSize()):,} voxels, more than the {MAX_VOXELS:,} that fit in memory safely",
            "crop the volume to the lumbar spine or resample it first",
        )
    _check_values(sitk.GetArrayViewFromImage(image), name)


def _check_values(array: np.ndarray, name: str) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise SpineSegDiffError(
            f"{name} has {bad} NaN or infinite voxels", "fix or re-export the volume (NaN voxels cannot be segmented)"
        )
    if array.min() == array.max():
        raise SpineSegDiffError(f"{name} is constant (every voxel is {array.flat[0]})", "check that it is an MRI")


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(error).__name__


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
        temporary.write_text(text)
