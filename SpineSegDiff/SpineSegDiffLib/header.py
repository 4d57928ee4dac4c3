"""Checking an input from its header before any voxel is read: size, dimension, pixel type, spacing, orientation.

A file's header is read with SimpleITK's ``ImageFileReader.ReadImageInformation`` (for ``.nii.gz`` only the
first few hundred bytes are decompressed); a DICOM series' from the tags of its first files (rows, columns,
bits, the number of files). :func:`check_header` refuses what cannot be segmented, and what is larger than
:class:`InputLimits` allows, in milliseconds, whatever the header claims: a small ``.nii.gz`` that says it
holds 1600 x 1600 x 1600 voxels is refused without decompressing it. The same check serves the command
line, the batch engine, the worker and the Slicer module (a volume node's dimensions, before it is copied).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import SimpleITK as sitk

from .errors import SpineSegDiffError

MIN_VOXELS_IN_PLANE = 32
MAX_VOXELS = 512 * 1024 * 1024
"""Default largest volume (voxels): 2 GB as float32, the peak the preprocessing can need."""
MAX_BYTES = 2 * 1024 * 1024 * 1024
"""Default largest voxel data (bytes, decompressed, in the file's own pixel type)."""
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@dataclass(frozen=True)
class InputLimits:
    """The largest input accepted. Raise them only for a volume this machine has the memory for: command
    line ``--max-voxels`` / ``--max-bytes``, worker request ``"limits": {"max_voxels": N, "max_bytes": N}``,
    Python ``InputLimits(max_voxels=N)``."""

    max_voxels: int = MAX_VOXELS
    max_bytes: int = MAX_BYTES

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise SpineSegDiffError(f"{name} must be a positive whole number, not {value!r}",
                                        f"give e.g. --{name.replace('_', '-')} 1G (K, M, G: powers of 1024)")

    @classmethod
    def from_dict(cls, values: Mapping | None) -> InputLimits:
        """Limits from a mapping (a worker request's ``limits``); None or {} gives the defaults. An unknown
        field or a bad value is a :class:`SpineSegDiffError` naming it."""
        if values is None:
            return cls()
        if not isinstance(values, Mapping):
            raise SpineSegDiffError(f"limits must be an object, not {values!r}", "e.g. {\"max_voxels\": 1000000000}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpineSegDiffError(f"unknown limit {unknown[0]!r}", f"known limits: {', '.join(sorted(known))}")
        return cls(**values)


def parse_amount(text: str, flag: str) -> int:
    """``"600M"`` -> 629145600: a whole number, optionally followed by K, M, G or T (powers of 1024)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)(?:i?B)?\s*", str(text), re.IGNORECASE)
    if match is None or int(match[1]) < 1:
        raise SpineSegDiffError(f"{flag} {text!r} is not a positive amount", f"give e.g. {flag} 1G or {flag} 800M")
    return int(match[1]) * UNITS[match[2].upper()]


@dataclass(frozen=True)
class ImageHeader:
    """What a header says about the voxels, in SimpleITK axis order; nothing here needs the voxels."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    direction: tuple[float, ...]
    pixel_type: str
    bytes_per_component: int
    components: int = 1

    @property
    def voxels(self) -> int:
        return math.prod(self.size)

    @property
    def data_bytes(self) -> int:
        """The decompressed size of the voxel data."""
        return self.voxels * self.components * self.bytes_per_component


def human_bytes(count: int) -> str:
    """``count`` bytes as KB, MB or GB (powers of 1024), as the limits are given."""
    for unit, size in (("GB", 1024**3), ("MB", 1024**2)):
        if count >= size:
            return f"{count / size:,.1f} {unit}".replace(".0 ", " ")
    return f"{math.ceil(count / 1024):,} KB"


def pixel_type_bytes(pixel_type: str) -> int:
    """Bytes per component of a SimpleITK pixel type name (``"16-bit signed integer"`` -> 2)."""
    bits = re.search(r"(\d+)-bit", pixel_type)
    return (int(bits[1]) // 8 if bits else 8) * (2 if "complex" in pixel_type else 1)


def _header_of(source, components: int) -> ImageHeader:
    """From a SimpleITK reader or image (both have the same getters)."""
    pixel_type = sitk.GetPixelIDValueAsString(source.GetPixelID())
    return ImageHeader(tuple(source.GetSize()), tuple(source.GetSpacing()), tuple(source.GetDirection()),
                       pixel_type, pixel_type_bytes(pixel_type), components)


def header_of_image(image: sitk.Image) -> ImageHeader:
    """The header of an image already in memory."""
    return _header_of(image, image.GetNumberOfComponentsPerPixel())


def read_file_header(path: Path) -> ImageHeader:
    """The header of an image file, without reading its voxels."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise SpineSegDiffError(
            f"{path} could not be read as an image ({first_line(error)})",
            "give a NIfTI, NRRD, MHA/MHD file or a DICOM series folder",
        ) from None
    return _header_of(reader, reader.GetNumberOfComponents())


def read_dicom_header(files: list[str]) -> ImageHeader:
    """The header of a DICOM series from the tags of its first files (one slice per file, or the frames of
    multi-frame files); the slice spacing from the first two positions."""
    first = read_file_header(Path(files[0]))
    columns, rows, frames = (*first.size, 1)[:3]
    size = (columns, rows, frames * len(files))
    spacing = (*first.spacing[:2], _slice_spacing(files) or (first.spacing + (1.0,))[2])
    return ImageHeader(size, spacing, first.direction if len(first.direction) == 9 else _identity(),
                       first.pixel_type, first.bytes_per_component, first.components)


def _slice_spacing(files: list[str]) -> float | None:
    if len(files) < 2:
        return None
    try:
        points = [_position(name) for name in files[:2]]
    except (RuntimeError, ValueError):
        return None
    return math.dist(*points) or None


def _position(name: str) -> tuple[float, ...]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(name)
    reader.ReadImageInformation()
    return tuple(float(v) for v in reader.GetMetaData("0020|0032").split("\\"))


def _identity() -> tuple[float, ...]:
    return (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def first_line(error: Exception) -> str:
    """The last non-empty line of a library's error (SimpleITK puts the reason there), at most 200 characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1][:200] if lines else type(error).__name__


def check_header(header: ImageHeader, name: str, limits: InputLimits | None = None) -> None:
    """Refuse, from the header alone, what the pipeline cannot segment or what is over ``limits``."""
    limits = limits or InputLimits()
    if header.components != 1:
        raise SpineSegDiffError(f"{name} has {header.components} components per voxel (colour or vector image)",
                                "give a grey-scale MRI volume")
    if len(header.size) != 3 or min(header.size) < 1:
        raise SpineSegDiffError(f"{name} is a {len(header.size)}D image; SpineSegDiff needs one 3D volume",
                                "give a 3D sagittal volume (for 4D series, extract one time point first)")
    if sorted(header.size)[1] < MIN_VOXELS_IN_PLANE:
        raise SpineSegDiffError(f"{name} is too small ({header.size})", "give a whole lumbar MRI series")
    _check_size(header, name, limits)
    _check_geometry(header, name)


def _check_size(header: ImageHeader, name: str, limits: InputLimits) -> None:
    shape = " x ".join(map(str, header.size))
    if header.voxels > limits.max_voxels:
        raise SpineSegDiffError(
            f"{name} has {header.voxels:,} voxels ({shape}), more than the {limits.max_voxels:,} allowed",
            "crop the volume to the lumbar spine or resample it first; if this machine has the memory, "
            "raise the limit (spinesegdiff --max-voxels N)",
        )
    if header.data_bytes > limits.max_bytes:
        raise SpineSegDiffError(
            f"{name} holds {human_bytes(header.data_bytes)} of voxels ({shape}, {header.pixel_type}), "
            f"more than the {human_bytes(limits.max_bytes)} allowed",
            "crop or resample the volume, or store it as 16-bit integers; if this machine has the memory, "
            "raise the limit (spinesegdiff --max-bytes SIZE)",
        )


def _check_geometry(header: ImageHeader, name: str) -> None:
    import numpy as np

    from .inference.preprocess import check_sagittal_resolution, reorient

    if not all(math.isfinite(s) and s > 0 for s in header.spacing):
        raise SpineSegDiffError(f"{name} has voxel spacing {header.spacing}: every spacing must be a positive "
                                "number of mm", "fix the header (e.g. NIfTI pixdim) or export the volume again")
    direction = np.array(header.direction, float).reshape(3, 3)
    if not np.isfinite(direction).all() or abs(np.linalg.det(direction)) < 1e-3:
        raise SpineSegDiffError(f"{name} has no valid orientation (direction matrix {header.direction})",
                                "fix the header (e.g. NIfTI qform/sform) or export the volume again")
    probe = sitk.Image([1, 1, 1], sitk.sitkUInt8)  # the pipeline's own reorientation, on one voxel
    probe.SetSpacing(header.spacing)
    probe.SetDirection(header.direction)
    check_sagittal_resolution(reorient(probe))
