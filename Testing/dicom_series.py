"""DICOM series for the DICOM SEG tests (single-frame MR files in a tmp folder, a labelmap on their grid) and the
checks of a SEG read back: what a viewer needs (BINARY, no overlap, no empty segment, segments 1..N) and frames
on the right source slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk
from conftest import synthetic_spine

from SpineSegDiffLib.outputs.dicom_seg import source_dicom_files


def write_series(image: sitk.Image, folder: Path) -> list[Path]:
    """Write ``image`` (size ``(X, Y, Z)``) as an MR series: ``Z`` single-frame files of ``Y`` rows, ``X`` columns."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    array = sitk.GetArrayFromImage(image)
    array = (array - array.min()).astype(np.uint16)  # (Z, Y, X)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    files = []
    for k in range(array.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.Modality = MRImageStorage, "MR"
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Spine", "SSD001", "", "O"
        ds.StudyInstanceUID, ds.StudyID, ds.StudyDate, ds.StudyTime = study, "1", "20240101", "120000"
        ds.AccessionNumber, ds.ReferringPhysicianName = "", ""
        ds.SeriesInstanceUID, ds.SeriesNumber, ds.InstanceNumber = series, 3, k + 1
        ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = frame, ""
        ds.ImagePositionPatient = [round(v, 5) for v in image.TransformIndexToPhysicalPoint((0, 0, k))]
        ds.ImageOrientationPatient = [round(v, 6) for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [round(image.GetSpacing()[1], 6), round(image.GetSpacing()[0], 6)]
        ds.SliceThickness = round(image.GetSpacing()[2], 6)
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = array[k].tobytes()
        files.append(folder / f"slice{k:03d}.dcm")
        ds.save_as(files[-1], enforce_file_format=True)
    return files


def synthetic_case(folder: Path, direction=None) -> tuple[list[Path], sitk.Image]:
    """Six 16 x 16 sagittal slices and a labelmap on the grid read back from them, with known voxels."""
    files = write_series(synthetic_spine(size=(16, 16, 6), spacing=(0.9, 0.8, 3.5), direction=direction), folder)
    grid = sitk.ReadImage([str(f) for f in source_dicom_files(folder)])
    labels = np.zeros(grid.GetSize()[::-1], np.uint8)  # (Z, Y, X)
    labels[1:3, 2:6, 3:9] = 1
    labels[2:5, 8:12, 1:7] = 2
    labels[4, 13:15, 10:15] = 3
    return files, on_grid(labels, grid)


def on_grid(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    """``array`` ``(Z, Y, X)`` as an image with the geometry of ``grid``."""
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    return image


def source_uid_by_slice(files: list[Path], labels: sitk.Image) -> dict[str, int]:
    """SOP Instance UID -> index ``k`` of the labelmap slice each file lies on."""
    import pydicom

    out = {}
    for file in files:
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        index = labels.TransformPhysicalPointToIndex([float(v) for v in ds.ImagePositionPatient])
        assert index[:2] == (0, 0)
        out[ds.SOPInstanceUID] = index[2]
    return out


def masks_of(labelmap: sitk.Image, values) -> list[np.ndarray]:
    """Boolean ``(Z, Y, X)`` mask of each value of ``labelmap``, in the order of ``values`` (segment order)."""
    array = sitk.GetArrayFromImage(labelmap)
    return [array == value for value in values]


def assert_frames_match(seg_path: Path, files: list[Path], labels: sitk.Image, masks: list[np.ndarray]) -> None:
    """Each stored frame references the source slice it lies on and holds that slice's mask; no frame is missing."""
    import pydicom

    seg = pydicom.dcmread(seg_path)
    uid_to_k = source_uid_by_slice(files, labels)
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    stored = set()
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        number = int(segment_items(seg, item)[0].ReferencedSegmentNumber)
        source = pydicom.dcmread([f for f in files if pydicom.dcmread(f).SOPInstanceUID == uid][0])
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, [float(v) for v in source.ImagePositionPatient])
        np.testing.assert_array_equal(frame.astype(bool), masks[number - 1][uid_to_k[uid]])
        stored.add((uid, number))
    expected = {(uid, n) for uid, k in uid_to_k.items() for n in range(1, len(masks) + 1) if masks[n - 1][k].any()}
    assert stored == expected


def segment_items(seg, frame_item) -> list:
    """The Segment Identification items of one frame: its own, or the shared ones (highdicom shares them when the
    SEG has one segment)."""
    own = frame_item.get("SegmentIdentificationSequence")
    return list(own if own is not None else seg.SharedFunctionalGroupsSequence[0].SegmentIdentificationSequence)


def read_back(seg_path: Path, files: list[Path]):
    """The SEG read back with highdicom, checked as a viewer needs it: BINARY, ``SegmentsOverlap`` "NO", segments
    numbered 1..N, each frame in one segment and at most one frame per (source slice, segment), no pixel in two
    segments, no empty segment. Returns the SEG and its segments' masks ``(slices, Y, X, N)`` in the order of
    ``files``."""
    import highdicom as hd
    import pydicom

    seg = hd.seg.segread(seg_path)
    assert seg.SegmentationType == "BINARY" and seg.SegmentsOverlap == "NO"
    numbers = [int(d.SegmentNumber) for d in seg.SegmentSequence]
    assert numbers == list(range(1, len(numbers) + 1))
    frames = [(item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID,
               [int(s.ReferencedSegmentNumber) for s in segment_items(seg, item)])
              for item in seg.PerFrameFunctionalGroupsSequence]
    assert all(len(segments) == 1 for _, segments in frames), "a frame belongs to one segment"
    assert len({(uid, segments[0]) for uid, segments in frames}) == len(frames)
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in files]
    masks = seg.get_pixels_by_source_instance(uids, segment_numbers=numbers)
    assert masks.shape[-1] == len(numbers) and masks.sum(axis=-1).max() <= 1, "no pixel is in two segments"
    assert all(masks[..., n].any() for n in range(len(numbers))), "no segment is empty"
    return seg, masks


def referenced_images(seg) -> tuple[str, set[str]]:
    """The series and the SOP Instance UIDs a SEG references as its source."""
    (series,) = seg.ReferencedSeriesSequence
    return series.SeriesInstanceUID, {item.ReferencedSOPInstanceUID for item in series.ReferencedInstanceSequence}
