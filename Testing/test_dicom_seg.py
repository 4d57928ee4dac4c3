"""DICOM SEG export: two non-overlapping SEGs (structures; named levels) that viewers load, no empty segment, codes
of what each segment holds, frames on the right source slices, refusals with a reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import BUNDLED_SAMPLE, REPO, oblique_direction, synthetic_spine
from dicom_series import (
    assert_frames_match,
    masks_of,
    on_grid,
    read_back,
    referenced_images,
    source_uid_by_slice,
    synthetic_case,
    write_series,
)

from SpineSegDiffLib import __version__
from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.io import read_volume
from SpineSegDiffLib.labels import LEVEL_TYPES, STRUCTURES
from SpineSegDiffLib.outputs.dicom_seg import (
    LEVEL_SERIES,
    SERIES_DESCRIPTION,
    levels_from_report,
    source_dicom_files,
    write_dicom_seg,
)
from SpineSegDiffLib.outputs.dicom_segments import VERTEBRAL_BODY

pydicom = pytest.importorskip("pydicom")
hd = pytest.importorskip("highdicom")

TERMINOLOGY = REPO / "SpineSegDiff" / "Resources" / "Terminology"
TERM_JSON = TERMINOLOGY / "SegmentationCategoryTypeModifier-SpineSegDiff.term.json"


STRUCTURE_VALUES = [s.value for s in STRUCTURES]


def type_code(item) -> tuple[str, str, str]:
    """``(scheme, value, meaning)`` of a segment's property type."""
    code = item.SegmentedPropertyTypeCodeSequence[0]
    return code.CodingSchemeDesignator, code.CodeValue, code.CodeMeaning


def test_structures_become_three_coded_segments_on_the_source_slices(tmp_path):
    files, labels = synthetic_case(tmp_path / "dicom")
    [out] = write_dicom_seg(labels, list(reversed(files)), tmp_path / "case_seg.dcm")

    seg, _ = read_back(out, files)
    source = pydicom.dcmread(files[0])
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY" and seg.SegmentsOverlap == "NO"
    assert seg.Manufacturer == "SpineSegDiff" and seg.SoftwareVersions == __version__
    assert seg.SeriesDescription == SERIES_DESCRIPTION
    assert (seg.StudyInstanceUID, seg.FrameOfReferenceUID, seg.PatientID) == (
        source.StudyInstanceUID, source.FrameOfReferenceUID, source.PatientID)
    assert seg.number_of_segments == 3
    codes = [(d.SegmentLabel, *type_code(d)) for d in seg.SegmentSequence]
    assert codes == [(s.name, s.coding_scheme, s.code, s.meaning) for s in STRUCTURES]
    for d in seg.SegmentSequence:
        category = d.SegmentedPropertyCategoryCodeSequence[0]
        assert (category.CodingSchemeDesignator, category.CodeValue) == ("SCT", "123037004")
        assert d.SegmentAlgorithmType == "AUTOMATIC" and d.SegmentAlgorithmName == "SpineSegDiff"
        assert "AnatomicRegionSequence" not in d
    schemes = {item.CodingSchemeDesignator for item in seg.get("CodingSchemeIdentificationSequence", [])}
    assert not any(scheme.startswith("99") for scheme in schemes), "no private coding scheme is used"
    assert_frames_match(out, files, labels, masks_of(labels, STRUCTURE_VALUES))


def test_segment_codes_are_those_of_the_module_terminology(tmp_path):
    files, labels = synthetic_case(tmp_path / "dicom")
    [out] = write_dicom_seg(labels, files, tmp_path / "seg.dcm")
    seg = pydicom.dcmread(out)
    types = json.loads(TERM_JSON.read_text())["SegmentationCodes"]["Category"][0]["Type"]
    terminology = {(t["CodingSchemeDesignator"], t["CodeValue"], t["CodeMeaning"]) for t in types}
    written = {type_code(d) for d in seg.SegmentSequence}
    assert written == {(s.coding_scheme, s.code, s.meaning) for s in STRUCTURES} and written <= terminology


def test_empty_structures_get_no_segment_and_the_numbers_stay_consecutive(tmp_path):
    files, labels = synthetic_case(tmp_path / "dicom")
    array = sitk.GetArrayFromImage(labels)
    array[array == STRUCTURES[0].value] = 0  # no spinal canal
    no_canal = on_grid(array, labels)
    [out] = write_dicom_seg(no_canal, files, tmp_path / "seg.dcm")

    seg, masks = read_back(out, files)
    assert [(d.SegmentNumber, d.SegmentLabel) for d in seg.SegmentSequence] == [
        (1, STRUCTURES[1].name), (2, STRUCTURES[2].name)]
    assert_frames_match(out, files, no_canal, masks_of(no_canal, STRUCTURE_VALUES[1:]))
    with pytest.raises(SpineSegDiffError, match="empty") as error:
        write_dicom_seg(on_grid(array * 0, labels), files, tmp_path / "empty.dcm")
    assert error.value.hint and not (tmp_path / "empty.dcm").exists()


def level_case(tmp_path: Path) -> tuple[list[Path], sitk.Image, sitk.Image, list[dict]]:
    """The synthetic case with a level labelmap inside its structures (so the levels overlap the structures) and
    levels from a report: one without voxels, one without a level code, one not segmented."""
    files, labels = synthetic_case(tmp_path / "dicom")
    array = sitk.GetArrayFromImage(labels)
    levels_array = np.zeros_like(array, np.int32)
    levels_array[(array == 2) & (np.arange(16)[None, :, None] < 10)] = 7
    levels_array[array == 3] = 8
    levels_array[array == 1] = 6
    report = {"vertebrae": [{"name": "L4", "label_value": 7}, {"name": "L3", "label_value": 9},  # L3: no voxels
                            {"name": "C7", "label_value": 6},  # no level code: no anatomic region
                            {"name": "L2", "label_value": None}],  # not segmented
              "discs": [{"name": "L4/L5", "label_value": 8}]}
    levels = levels_from_report(report)
    assert levels[-1] == {"name": "L4/L5", "kind": "disc", "label_value": 8}
    return files, labels, on_grid(levels_array, labels), levels


def test_levels_go_to_a_second_seg_series_without_overlap_or_empty_segments(tmp_path):
    files, labels, level_labels, levels = level_case(tmp_path)
    out, levels_out = write_dicom_seg(labels, files, tmp_path / "seg.dcm", levels, level_labels,
                                      tmp_path / "levels_seg.dcm")
    assert levels_out == tmp_path / "levels_seg.dcm"

    seg, _ = read_back(out, files)
    level_seg, masks = read_back(levels_out, files)
    assert seg.number_of_segments == 3, "the structure SEG holds the structures only"
    assert level_seg.SeriesInstanceUID != seg.SeriesInstanceUID and level_seg.SOPInstanceUID != seg.SOPInstanceUID
    assert level_seg.SeriesDescription == LEVEL_SERIES.description != seg.SeriesDescription
    assert (level_seg.StudyInstanceUID, level_seg.FrameOfReferenceUID) == (seg.StudyInstanceUID,
                                                                           seg.FrameOfReferenceUID)
    assert referenced_images(level_seg) == referenced_images(seg)
    assert referenced_images(seg) == (pydicom.dcmread(files[0]).SeriesInstanceUID,
                                      {pydicom.dcmread(f).SOPInstanceUID for f in files})
    described = [(d.SegmentNumber, d.SegmentLabel, type_code(d), getattr(d, "TrackingID", None),
                  [(r.CodingSchemeDesignator, r.CodeValue, r.CodeMeaning) for r in d.get("AnatomicRegionSequence", [])])
                 for d in level_seg.SegmentSequence]
    disc = STRUCTURES[2]
    assert described == [(1, "L4 vertebral body", VERTEBRAL_BODY, "L4", [LEVEL_TYPES["L4"]]),
                         (2, "C7 vertebral body", VERTEBRAL_BODY, "C7", []),
                         (3, "L4/L5 intervertebral disc", (disc.coding_scheme, disc.code, disc.meaning), "L4/L5", [])]
    assert VERTEBRAL_BODY == ("SCT", "3572006", "Vertebral body")
    assert_frames_match(levels_out, files, labels, masks_of(level_labels, (7, 6, 8)))
    assert_frames_match(out, files, labels, masks_of(labels, STRUCTURE_VALUES))


def test_level_arguments_are_checked_and_a_seg_without_named_voxels_is_not_written(tmp_path):
    files, labels, level_labels, levels = level_case(tmp_path)
    with pytest.raises(ValueError, match="kind"):
        write_dicom_seg(labels, files, tmp_path / "bad.dcm", [{"name": "X", "kind": "rib", "label_value": 7}],
                        level_labels, tmp_path / "bad_levels.dcm")
    with pytest.raises(ValueError, match="share a label value"):
        write_dicom_seg(labels, files, tmp_path / "bad.dcm", [*levels, {**levels[0], "name": "L1"}], level_labels,
                        tmp_path / "bad_levels.dcm")
    with pytest.raises(ValueError, match="go together"):
        write_dicom_seg(labels, files, tmp_path / "bad.dcm", levels, level_labels)
    assert not list(tmp_path.glob("bad*"))
    unnamed = [level for level in levels if level["name"] in ("L3", "L2")]
    written = write_dicom_seg(labels, files, tmp_path / "seg.dcm", unnamed, level_labels, tmp_path / "levels.dcm")
    assert written == [tmp_path / "seg.dcm"] and not (tmp_path / "levels.dcm").exists()


def test_oblique_parallel_slices_are_fine(tmp_path):
    files, labels = synthetic_case(tmp_path / "dicom", direction=oblique_direction(15))
    [out] = write_dicom_seg(labels, files, tmp_path / "seg.dcm")
    read_back(out, files)
    assert_frames_match(out, files, labels, masks_of(labels, STRUCTURE_VALUES))


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

    [out] = write_dicom_seg(labels_image, source_dicom_files(tmp_path / "dicom"), tmp_path / "image_seg.dcm")

    seg, _ = read_back(out, files)
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
    labels = sitk.ReadImage(str(out / "series_labels.nii.gz"))
    seg, _ = read_back(out / "series_seg.dcm", files)
    present = [s for s in STRUCTURES if (sitk.GetArrayFromImage(labels) == s.value).any()]
    assert [d.SegmentLabel for d in seg.SegmentSequence] == [s.name for s in present]
    assert referenced_images(seg)[1] == {pydicom.dcmread(f).SOPInstanceUID for f in files}
    assert seg.get_pixels_by_source_instance(sorted(referenced_images(seg)[1]), segment_numbers=[2]).sum() > 0
    assert sitk.GetArrayFromImage(labels).max() > 0
    level_file = out / "series_level_labels.nii.gz"
    level_labels = sitk.GetArrayFromImage(sitk.ReadImage(str(level_file))) if level_file.is_file() else None
    named = [level for level in levels_from_report(report)
             if level["label_value"] and (level_labels == level["label_value"]).any()]
    assert (out / "series_levels_seg.dcm").is_file() == bool(named)
    if named:
        level_seg, _ = read_back(out / "series_levels_seg.dcm", files)
        assert [d.TrackingID for d in level_seg.SegmentSequence] == [level["name"] for level in named]
        assert level_seg.SeriesInstanceUID != seg.SeriesInstanceUID
        assert referenced_images(level_seg) == referenced_images(seg)
