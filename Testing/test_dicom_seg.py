"""DICOM SEG export: segments and codes, frames on the right source slices, refusals with a reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import BUNDLED_SAMPLE, REPO, oblique_direction, synthetic_spine

from SpineSegDiffLib import __version__
from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.io import read_volume
from SpineSegDiffLib.labels import STRUCTURES
from SpineSegDiffLib.outputs.dicom_seg import (
    SERIES_DESCRIPTION,
    levels_from_report,
    source_dicom_files,
    write_dicom_seg,
)

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

TERMINOLOGY = REPO / "SpineSegDiff" / "Resources" / "Terminology"
TERM_JSON = TERMINOLOGY / "SegmentationCategoryTypeModifier-SpineSegDiff.term.json"


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
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(grid)
    return files, image


def source_uid_by_slice(files: list[Path], labels: sitk.Image) -> dict[str, int]:
    """SOP Instance UID -> index ``k`` of the labelmap slice each file lies on."""
    out = {}
    for file in files:
        ds = pydicom.dcmread(file, stop_before_pixels=True)
        index = labels.TransformPhysicalPointToIndex([float(v) for v in ds.ImagePositionPatient])
        assert index[:2] == (0, 0)
        out[ds.SOPInstanceUID] = index[2]
    return out


def expected_masks(labels: sitk.Image, level_labels: sitk.Image | None = None, level_values=()) -> list[np.ndarray]:
    """Boolean ``(Z, Y, X)`` mask of each segment, in segment-number order."""
    array = sitk.GetArrayFromImage(labels)
    masks = [array == s.value for s in STRUCTURES]
    if level_labels is not None:
        masks += [sitk.GetArrayFromImage(level_labels) == v for v in level_values]
    return masks


def assert_frames_match(seg_path: Path, files: list[Path], labels: sitk.Image, masks: list[np.ndarray]) -> None:
    """Each stored frame references the source slice it lies on and holds that slice's mask; no frame is missing."""
    seg = pydicom.dcmread(seg_path)
    uid_to_k = source_uid_by_slice(files, labels)
    frames = seg.pixel_array.reshape(int(seg.NumberOfFrames), seg.Rows, seg.Columns)
    stored = set()
    for frame, item in zip(frames, seg.PerFrameFunctionalGroupsSequence):
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        number = int(item.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        source = pydicom.dcmread([f for f in files if pydicom.dcmread(f).SOPInstanceUID == uid][0])
        position = [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]
        assert np.allclose(position, [float(v) for v in source.ImagePositionPatient])
        np.testing.assert_array_equal(frame.astype(bool), masks[number - 1][uid_to_k[uid]])
        stored.add((uid, number))
    expected = {(uid, n) for uid, k in uid_to_k.items() for n in range(1, len(masks) + 1) if masks[n - 1][k].any()}
    assert stored == expected


def test_structures_become_three_coded_segments_on_the_source_slices(tmp_path):
    files, labels = synthetic_case(tmp_path / "dicom")
    out = write_dicom_seg(labels, list(reversed(files)), tmp_path / "case_seg.dcm")

    seg = hd.seg.segread(out)
    source = pydicom.dcmread(files[0])
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.Manufacturer == "SpineSegDiff" and seg.SoftwareVersions == __version__
    assert seg.SeriesDescription == SERIES_DESCRIPTION
    assert (seg.StudyInstanceUID, seg.FrameOfReferenceUID, seg.PatientID) == (
        source.StudyInstanceUID, source.FrameOfReferenceUID, source.PatientID)
    assert seg.number_of_segments == 3
    codes = [(d.SegmentLabel, d.SegmentedPropertyTypeCodeSequence[0].CodingSchemeDesignator,
              d.SegmentedPropertyTypeCodeSequence[0].CodeValue, d.SegmentedPropertyTypeCodeSequence[0].CodeMeaning)
             for d in seg.SegmentSequence]
    assert codes == [(s.name, s.coding_scheme, s.code, s.meaning) for s in STRUCTURES]
    for d in seg.SegmentSequence:
        category = d.SegmentedPropertyCategoryCodeSequence[0]
        assert (category.CodingSchemeDesignator, category.CodeValue) == ("SCT", "123037004")
        assert d.SegmentAlgorithmType == "AUTOMATIC" and d.SegmentAlgorithmName == "SpineSegDiff"
    schemes = {item.CodingSchemeDesignator for item in seg.get("CodingSchemeIdentificationSequence", [])}
    assert not any(scheme.startswith("99") for scheme in schemes), "no private coding scheme is used"
    assert_frames_match(out, files, labels, expected_masks(labels))


def test_segment_codes_are_those_of_the_module_terminology(tmp_path):
    files, labels = synthetic_case(tmp_path / "dicom")
    seg = pydicom.dcmread(write_dicom_seg(labels, files, tmp_path / "seg.dcm"))
    types = json.loads(TERM_JSON.read_text())["SegmentationCodes"]["Category"][0]["Type"]
    terminology = {(t["CodingSchemeDesignator"], t["CodeValue"], t["CodeMeaning"]) for t in types}
    written = {(c.CodingSchemeDesignator, c.CodeValue, c.CodeMeaning)
               for c in (d.SegmentedPropertyTypeCodeSequence[0] for d in seg.SegmentSequence)}
    assert written == {(s.coding_scheme, s.code, s.meaning) for s in STRUCTURES} and written <= terminology


def test_levels_become_extra_segments_and_empty_levels_are_left_out(tmp_path):
    files, labels = synthetic_case(tmp_path / "dicom")
    array = sitk.GetArrayFromImage(labels)
    levels_array = np.zeros_like(array, np.int32)
    levels_array[(array == 2) & (np.arange(16)[None, :, None] < 10)] = 7
    levels_array[array == 3] = 8
    levels_array[array == 1] = 6
    level_labels = sitk.GetImageFromArray(levels_array)
    level_labels.CopyInformation(labels)
    report = {"vertebrae": [{"name": "L4", "label_value": 7}, {"name": "L3", "label_value": 9},  # L3: no voxels
                            {"name": "C7", "label_value": 6},  # no level code: the generic one
                            {"name": "L2", "label_value": None}],  # not segmented
              "discs": [{"name": "L4/L5", "label_value": 8}]}
    levels = levels_from_report(report)
    assert levels[-1] == {"name": "L4/L5", "kind": "disc", "label_value": 8}

    out = write_dicom_seg(labels, files, tmp_path / "seg.dcm", levels=levels, level_labels=level_labels)

    seg = pydicom.dcmread(out)
    described = [(d.SegmentNumber, d.SegmentLabel, d.SegmentedPropertyTypeCodeSequence[0].CodeValue,
                  getattr(d, "TrackingID", None)) for d in seg.SegmentSequence]
    assert described[3:] == [(4, "L4", "11994002", "L4"), (5, "C7", "51282000", "C7"),
                             (6, "L4/L5", "360499006", "L4/L5")]
    types = json.loads(TERM_JSON.read_text())["SegmentationCodes"]["Category"][0]["Type"]
    assert {d.SegmentedPropertyTypeCodeSequence[0].CodeValue for d in seg.SegmentSequence} <= {
        t["CodeValue"] for t in types}
    assert_frames_match(out, files, labels, expected_masks(labels, level_labels, (7, 6, 8)))
    with pytest.raises(ValueError, match="kind"):
        write_dicom_seg(labels, files, tmp_path / "bad.dcm", [{"name": "X", "kind": "rib", "label_value": 7}],
                        level_labels)


def test_oblique_parallel_slices_are_fine(tmp_path):
    files, labels = synthetic_case(tmp_path / "dicom", direction=oblique_direction(15))
    out = write_dicom_seg(labels, files, tmp_path / "seg.dcm")
    assert_frames_match(out, files, labels, expected_masks(labels))


def test_non_dicom_inputs_get_no_source_files(tmp_path):
    nifti = tmp_path / "case.nii.gz"
    sitk.WriteImage(synthetic_spine(size=(16, 16, 4)), str(nifti))
    assert source_dicom_files(nifti) is None
    assert source_dicom_files(tmp_path) is None  # a folder of image files
    assert source_dicom_files(tmp_path / "missing") is None
    files, _ = synthetic_case(tmp_path / "dicom")
    assert sorted(source_dicom_files(tmp_path / "dicom")) == sorted(files)
    assert source_dicom_files(files[0]) == [files[0]]
    with pytest.raises(SpineSegDiffError, match="is not in"):
        source_dicom_files(tmp_path / "dicom", "1.2.3")


def _tilt_one_slice(ds):
    ds.ImageOrientationPatient = [0, 0.98, 0.2, 0, 0.2, -0.98]


def _make_multiframe(ds):
    ds.NumberOfFrames = 2


def _drop_position(ds):
    del ds.ImagePositionPatient


@pytest.mark.parametrize("spoil, message", [
    (_tilt_one_slice, "not parallel"),
    (_make_multiframe, "multi-frame"),
    (_drop_position, "lacks DICOM tags the DICOM SEG needs: ImagePositionPatient"),
])
def test_unusable_sources_are_refused_with_the_reason(tmp_path, spoil, message):
    files, labels = synthetic_case(tmp_path / "dicom")
    ds = pydicom.dcmread(files[3])
    spoil(ds)
    ds.save_as(files[3])
    with pytest.raises(SpineSegDiffError, match=message) as error:
        write_dicom_seg(labels, files, tmp_path / "seg.dcm")
    assert error.value.hint
    assert not (tmp_path / "seg.dcm").exists()


def test_a_labelmap_off_the_series_grid_is_refused(tmp_path):
    files, labels = synthetic_case(tmp_path / "dicom")
    shifted = sitk.Image(labels)
    shifted.SetOrigin([v + 1.7 for v in labels.GetOrigin()])
    with pytest.raises(SpineSegDiffError, match="does not lie on a slice"):
        write_dicom_seg(shifted, files, tmp_path / "seg.dcm")
    with pytest.raises(SpineSegDiffError, match="voxels"):
        write_dicom_seg(labels[:8], files, tmp_path / "seg.dcm")
    with pytest.raises(SpineSegDiffError, match="could not be read as DICOM"):
        write_dicom_seg(labels, [*files, REPO / "README.md"], tmp_path / "seg.dcm")


def test_the_module_imports_without_dicom_libraries():
    code = ("import sys; import SpineSegDiffLib.outputs.dicom_seg; "
            "assert not {'pydicom', 'highdicom'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO / "SpineSegDiff")


def test_the_bundled_sample_as_a_dicom_series_round_trips(tmp_path):
    sagittal = sitk.PermuteAxes(sitk.ReadImage(str(BUNDLED_SAMPLE)), [1, 2, 0])  # slices along the 18-voxel axis
    files = write_series(sagittal, tmp_path / "dicom")
    volume = read_volume(tmp_path / "dicom")
    array = sitk.GetArrayFromImage(volume)  # (Z, Y, X)
    labels = np.zeros(array.shape, np.uint8)
    labels[array > np.percentile(array, 80)] = 2
    labels[array > np.percentile(array, 95)] = 3
    labels[:, :40][labels[:, :40] == 2] = 1
    labels_image = sitk.GetImageFromArray(labels)
    labels_image.CopyInformation(volume)

    out = write_dicom_seg(labels_image, source_dicom_files(tmp_path / "dicom"), tmp_path / "image_seg.dcm")

    seg = hd.seg.segread(out)
    uids = list(source_uid_by_slice(files, labels_image))
    decoded = seg.get_pixels_by_source_instance(uids, segment_numbers=[1, 2, 3])  # (N, Y, X, 3)
    order = [source_uid_by_slice(files, labels_image)[u] for u in uids]
    for n, structure in enumerate(STRUCTURES):
        np.testing.assert_array_equal(decoded[..., n].astype(bool), labels[order] == structure.value)


def test_a_dicom_series_input_gets_a_seg_beside_the_other_outputs(tmp_path, tiny_models):
    from SpineSegDiffLib.apps.cli import main

    files = write_series(synthetic_spine(size=(60, 64, 8), spacing=(0.9, 0.8, 3.5)), tmp_path / "series")
    out = tmp_path / "out"
    code = main(["segment", str(tmp_path / "series"), "-o", str(out), "--models", str(tiny_models), "--no-refine",
                 "--quiet"])
    assert code == 0
    report = json.loads((out / "series_report.json").read_text())
    assert report["warnings"] == []
    seg = hd.seg.segread(out / "series_seg.dcm")
    labels = sitk.ReadImage(str(out / "series_labels.nii.gz"))
    named = [level for level in levels_from_report(report) if level["label_value"]]
    assert seg.number_of_segments == len(STRUCTURES) + len(named)
    referenced = {item.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced <= {pydicom.dcmread(f).SOPInstanceUID for f in files}
    assert seg.get_pixels_by_source_instance(sorted(referenced), segment_numbers=[2]).sum() > 0
    assert sitk.GetArrayFromImage(labels).max() > 0
