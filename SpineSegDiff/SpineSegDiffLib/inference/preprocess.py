"""Input grid <-> model space, with an exact inverse.

Model space is what the networks see: sagittal slices of ``size x size`` pixels at ``spacing_mm``
mm, superior up and anterior left, intensities scaled so that the 98th percentile is 255 (the
paper's preprocessing: :class:`Preprocessing`'s defaults; a model folder may say otherwise, see
:mod:`.model_settings`). The input volume is first reoriented by a pure axis permutation
and flip (no interpolation) so that its index axes run posterior, inferior and left; the model grid
then keeps that (possibly oblique) direction, so oblique acquisitions are never resampled across
their own slices. The inverse resamples model-space results onto the *input's own grid*
in physical space, so results land exactly where they were computed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import SpineSegDiffError

MODEL_SIZE = 320
MODEL_SPACING = 1.0
MODEL_ORIENTATION = "PIL"
"""SimpleITK orientation of the reoriented volume: axis 0 -> posterior, 1 -> inferior, 2 -> left.
As a NumPy array that is ``[left-right, superior->inferior, anterior->posterior]``."""
MAX_IN_PLANE_SPACING = 2.0
"""Coarsest sagittal in-plane spacing (mm) accepted; coarser means a thick-slice axial or coronal
acquisition, whose sagittal reformat is too blurred to segment."""
INTENSITY_PERCENTILE = 98.0
INTENSITY_MAX = 255.0
MODEL_ORIENTATION_TEXT = "sagittal, superior up, anterior left"
"""How model folders describe this model space in ``config.json`` (``preprocessing.orientation``)."""


@dataclass(frozen=True)
class Preprocessing:
    """Model-space size (pixels), spacing (mm) and intensity scaling (this percentile -> this value)."""

    size: int = MODEL_SIZE
    spacing_mm: float = MODEL_SPACING
    intensity_percentile: float = INTENSITY_PERCENTILE
    intensity_max: float = INTENSITY_MAX


DEFAULT_PREPROCESSING = Preprocessing()


@dataclass(frozen=True)
class GridGeometry:
    """Size, spacing, origin and direction of an image grid (SimpleITK axis order)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> GridGeometry:
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def apply_to(self, image: sitk.Image) -> sitk.Image:
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def blank(self, pixel_type: int = sitk.sitkUInt8) -> sitk.Image:
        return self.apply_to(sitk.Image(list(self.size), pixel_type))


@dataclass(frozen=True)
class Geometry:
    """Everything needed to map model-space arrays back onto the input grid.

    Attributes:
        input_grid: the input volume's grid.
        model_grid: the model-space grid; its axis 2 runs over the processed sagittal slices.
        slice_indices: for each model slice, its index along the input's sagittal axis.
        sagittal_axis: which input axis (SimpleITK order) runs left-right.
    """

    input_grid: GridGeometry
    model_grid: GridGeometry
    slice_indices: tuple[int, ...]
    sagittal_axis: int


def reorient(image: sitk.Image) -> sitk.Image:
    """Permute and flip axes (no interpolation) to ``MODEL_ORIENTATION``."""
    return sitk.DICOMOrient(image, MODEL_ORIENTATION)


def sagittal_axis_of(image: sitk.Image) -> int:
    """Index of the image axis whose direction is closest to left-right."""
    direction = np.array(image.GetDirection()).reshape(3, 3)
    return int(np.argmax(np.abs(direction[0, :])))


def check_sagittal_resolution(oriented: sitk.Image) -> None:
    """Refuse volumes whose sagittal plane would be reformatted from thick slices."""
    in_plane = oriented.GetSpacing()[:2]
    if max(in_plane) > MAX_IN_PLANE_SPACING:
        raise SpineSegDiffError(
            f"the sagittal plane of this volume has {max(in_plane):.1f} mm pixels: it looks like a "
            "thick-slice axial or coronal acquisition",
            "load the sagittal series of the study (or an isotropic 3D series)",
        )


def intensity_reference(array: np.ndarray, percentile: float = INTENSITY_PERCENTILE) -> float:
    """The intensity that maps to the maximum: the 98th percentile (the maximum if that is 0)."""
    reference = float(np.percentile(array, percentile))
    if reference <= 0:
        reference = float(np.max(array))
    return reference if reference > 0 else 1.0


def normalise_intensity(array: np.ndarray, reference: float, maximum: float = INTENSITY_MAX) -> np.ndarray:
    """Scale so that ``reference`` maps to ``maximum`` and clip to 0..maximum; float32, same shape."""
    return np.clip(array.astype(np.float32) / reference * maximum, 0.0, maximum)


def model_grid_for(oriented: sitk.Image, first_slice: int, num_slices: int,
                   settings: Preprocessing = DEFAULT_PREPROCESSING) -> GridGeometry:
    """The model grid: in-plane centred on ``oriented``, slices ``first_slice ...`` along axis 2."""
    direction = np.array(oriented.GetDirection()).reshape(3, 3)
    centre_index = [(oriented.GetSize()[0] - 1) / 2, (oriented.GetSize()[1] - 1) / 2, first_slice]
    centre = np.array(oriented.TransformContinuousIndexToPhysicalPoint(centre_index))
    half_extent = np.array([(settings.size - 1) / 2 * settings.spacing_mm] * 2 + [0.0])
    origin = centre - direction @ half_extent
    spacing = (settings.spacing_mm, settings.spacing_mm, oriented.GetSpacing()[2])
    size = (settings.size, settings.size, num_slices)
    return GridGeometry(size, spacing, tuple(origin.tolist()), oriented.GetDirection())


def model_point_to_patient(grid: GridGeometry, model_slice: int, row: float, column: float) -> tuple[float, ...]:
    """Patient coordinates (LPS, mm) of a continuous model-space position: element ``[model_slice, row,
    column]`` of an ``(N, H, W)`` model-space array."""
    direction = np.array(grid.direction).reshape(3, 3)
    index = np.array([column, row, model_slice], float)
    point = np.array(grid.origin) + direction @ (np.array(grid.spacing) * index)
    return tuple(round(float(x), 3) for x in point)


def resample(image: sitk.Image, grid: GridGeometry, interpolator: int, default: float = 0.0) -> sitk.Image:
    """Resample ``image`` onto ``grid`` in physical space (identity transform)."""
    return sitk.Resample(image, grid.blank(image.GetPixelID()), sitk.Transform(), interpolator, default)


def to_model_space(image: sitk.Image, slices: str | int = "central",
                   settings: Preprocessing = DEFAULT_PREPROCESSING) -> tuple[np.ndarray, Geometry]:
    """Preprocess a 3D volume for the networks.

    Args:
        image: any 3D scalar volume, any orientation and spacing.
        slices: ``"central"`` (the paper's 2D mode), ``"all"`` (every sagittal slice), or the index
            of one slice along the input's sagittal axis.
        settings: the model space (from the model folder's ``config.json``).

    Returns:
        ``(images, geometry)``: ``images`` is float32 ``(N, size, size)`` in 0..intensity_max,
        ``N`` sagittal slices, row 0 superior, column 0 anterior.
    """
    oriented = reorient(sitk.Cast(image, sitk.sitkFloat32))
    check_sagittal_resolution(oriented)
    first, count = _slice_range(image, oriented, slices)
    grid = model_grid_for(oriented, first, count, settings)
    volume = sitk.GetArrayFromImage(resample(oriented, grid, sitk.sitkLinear))  # (N, 320, 320)
    geometry = Geometry(
        input_grid=GridGeometry.of(image),
        model_grid=grid,
        slice_indices=_input_slice_indices(image, grid),
        sagittal_axis=sagittal_axis_of(image),
    )
    reference = intensity_reference(sitk.GetArrayViewFromImage(oriented), settings.intensity_percentile)
    return normalise_intensity(volume, reference, settings.intensity_max), geometry


def _slice_range(image: sitk.Image, oriented: sitk.Image, slices: str | int) -> tuple[int, int]:
    """First oriented slice index and number of slices for the requested selection."""
    num = oriented.GetSize()[2]
    if slices == "all":
        return 0, num
    axis = sagittal_axis_of(image)
    if slices == "central":
        slices = image.GetSize()[axis] // 2
    if not 0 <= int(slices) < image.GetSize()[axis]:
        raise SpineSegDiffError(
            f"slice index {slices} is outside the volume (0..{image.GetSize()[axis] - 1})",
            "pick a slice index along the left-right axis, or leave it out for the central slice",
        )
    index = [(n - 1) / 2 for n in image.GetSize()]
    index[axis] = int(slices)
    point = image.TransformContinuousIndexToPhysicalPoint(index)
    return int(round(oriented.TransformPhysicalPointToContinuousIndex(point)[2])), 1


def _input_slice_indices(image: sitk.Image, grid: GridGeometry) -> tuple[int, ...]:
    """Index along the input's sagittal axis of each model slice centre."""
    axis = sagittal_axis_of(image)
    direction = np.array(grid.direction).reshape(3, 3)
    indices = []
    for k in range(grid.size[2]):
        centre = np.array(grid.origin) + direction @ np.array(
            [(grid.size[0] - 1) / 2 * grid.spacing[0]] * 2 + [k * grid.spacing[2]]
        )
        indices.append(int(round(image.TransformPhysicalPointToContinuousIndex(centre.tolist())[axis])))
    return tuple(indices)


def labels_to_model_space(labels: sitk.Image, geometry: Geometry) -> np.ndarray:
    """Bring a labelmap on the input grid into model space (nearest neighbour); uint8 (N, H, W)."""
    resampled = resample(labels, geometry.model_grid, sitk.sitkNearestNeighbor)
    return sitk.GetArrayFromImage(resampled).astype(np.uint8)


def from_model_space(array: np.ndarray, geometry: Geometry, interpolator: int) -> sitk.Image:
    """Map a model-space array ``(N, H, W)`` back onto the input grid.

    Voxels outside the processed slices are 0. Use ``sitk.sitkNearestNeighbor`` for labelmaps and
    ``sitk.sitkLinear`` for continuous maps (uncertainty).
    """
    model_image = geometry.model_grid.apply_to(sitk.GetImageFromArray(array))
    return resample(model_image, geometry.input_grid, interpolator)
