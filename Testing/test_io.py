"""Bad input: one clear message, a non-zero exit, and no output file."""

import gzip
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import synthetic_spine

from SpineSegDiffLib.apps.cli import main

FAST = ["--preset", "fast", "--samples", "2", "--steps", "2", "--quiet"]


def _run(tmp_path, tiny_models, input_path, *extra):
    out = tmp_path / "out"
    code = main(["segment", str(input_path), "-o", str(out), "--models", str(tiny_models), *FAST, *extra])
    produced = [p.name for p in out.glob("*") if p.name != "summary.json"] if out.exists() else []
    return code, produced


def _text_file(path):
    path.write_text("not an image")
    return path


def _write(image, path):
    sitk.WriteImage(image, str(path))
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.nii.gz", "does not exist"),
        (lambda d: _text_file(d / "notes.nii"), "could not be read"),
        (lambda d: _write(sitk.Image([64, 64], sitk.sitkFloat32) + 1, d / "flat2d.nrrd"), "2D image"),
        (lambda d: _write(sitk.Image([40, 40, 10], sitk.sitkVectorFloat32, 3), d / "rgb.mha"), "components"),
        (lambda d: _write(sitk.Image([40, 40, 10], sitk.sitkFloat32) + 7, d / "constant.mha"), "constant"),
        (lambda d: _write(synthetic_spine(size=(96, 80, 20), spacing=(0.8, 0.8, 5.0),
                                          direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)), d / "axial.nrrd"), "axial"),
        (lambda d: _write(synthetic_spine(size=(8, 8, 4)), d / "tiny.mha"), "too small"),
        (lambda d: d, "no DICOM series"),
    ],
    ids=["missing", "not-image", "2d", "multi-component", "constant", "thick-axial", "too-small", "empty-folder"],
)
def test_bad_input_is_refused_with_a_message(tmp_path, tiny_models, capsys, make, message):
    source = tmp_path / "in"
    source.mkdir()
    code, produced = _run(tmp_path, tiny_models, make(source))
    assert code != 0
    assert message in capsys.readouterr().err
    assert produced == []


def test_nan_voxels_are_refused(tmp_path, tiny_models, capsys):
    image = synthetic_spine()
    array = sitk.GetArrayFromImage(image)
    array[2, 10, 10] = np.nan
    bad = sitk.GetImageFromArray(array)
    bad.CopyInformation(image)
    path = _write(bad, tmp_path / "nan.mha")
    code, produced = _run(tmp_path, tiny_models, path)
    assert code != 0 and "NaN" in capsys.readouterr().err and produced == []


def test_truncated_gzip_is_refused(tmp_path, tiny_models, capsys):
    whole = _write(synthetic_spine(), tmp_path / "whole.nii.gz")
    data = whole.read_bytes()
    truncated = tmp_path / "truncated.nii.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(EOFError):
        gzip.decompress(truncated.read_bytes())  # the fixture really is truncated
    code, produced = _run(tmp_path, tiny_models, truncated)
    assert code != 0 and "truncated or corrupt" in capsys.readouterr().err and produced == []


def test_dicom_folder_with_several_series_lists_them(tmp_path, tiny_models, capsys):
    folder = tmp_path / "dicom"
    folder.mkdir()
    for series in range(2):
        image = sitk.Cast(synthetic_spine(size=(48, 48, 4), seed=series), sitk.sitkInt16)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        uid = f"1.2.826.0.1.3680043.2.1125.{series + 1}"
        for k in range(image.GetDepth()):
            plane = image[:, :, k]
            plane.SetMetaData("0020|000e", uid)
            plane.SetMetaData("0020|0013", str(k + 1))
            plane.SetMetaData("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))))
            writer.SetFileName(str(folder / f"s{series}_{k}.dcm"))
            writer.Execute(plane)
    code, produced = _run(tmp_path, tiny_models, folder)
    err = capsys.readouterr().err
    assert code != 0 and "2 DICOM series" in err and "--series" in err and produced == []


def test_existing_results_are_not_overwritten(tmp_path, tiny_models, capsys):
    path = _write(synthetic_spine(), tmp_path / "case.nrrd")
    assert _run(tmp_path, tiny_models, path)[0] == 0
    report = tmp_path / "out" / "case_report.json"
    before = report.stat().st_mtime_ns
    code, _ = _run(tmp_path, tiny_models, path)
    assert code == 0 and report.stat().st_mtime_ns == before  # skipped, untouched
    assert _run(tmp_path, tiny_models, path, "--overwrite")[0] == 0
    assert report.stat().st_mtime_ns != before
    shutil.rmtree(tmp_path / "out")
