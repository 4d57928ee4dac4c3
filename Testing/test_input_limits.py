"""Inputs checked from their headers before any voxel is read: a header bomb costs nothing, limits can be raised,
bad geometry is refused with one message; the same check for files, DICOM series and Slicer volume nodes."""

from __future__ import annotations

import gzip
import json
import struct
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
from conftest import REPO, synthetic_spine

from SpineSegDiffLib import io
from SpineSegDiffLib.apps.cli import main
from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.header import InputLimits, parse_amount
from SpineSegDiffLib.io import check_input, read_volume

FAST = ["--preset", "fast", "--samples", "2", "--steps", "2", "--quiet"]


def nifti_header(size: tuple[int, int, int], datatype: int = 4, bitpix: int = 16) -> bytes:
    """A NIfTI-1 header (348 bytes + the 4-byte extension flag) for ``size`` voxels (default int16), 1 mm, RAS."""
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *size, 1, 1, 1, 1)
    struct.pack_into("<2h", header, 70, datatype, bitpix)
    struct.pack_into("<8f", header, 76, 1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0)
    struct.pack_into("<f", header, 108, 352.0)
    struct.pack_into("<2h", header, 252, 0, 1)  # qform_code 0, sform_code 1 (scanner)
    for row, offset in enumerate((280, 296, 312)):
        struct.pack_into("<4f", header, offset, *[1.0 if k == row else 0.0 for k in range(4)])
    header[344:348] = b"n+1\0"
    return bytes(header)


def write_header_bomb(path, size=(1600, 1600, 1600)):
    """A small .nii.gz whose header claims ``size`` int16 voxels (8 GB for 1600^3), followed by 4 MB of zeros."""
    with gzip.open(path, "wb", compresslevel=1) as stream:
        stream.write(nifti_header(size))
        stream.write(bytes(4 * 1024 * 1024))
    return path


MEASURE = """
import json, resource, sys, time
sys.path.insert(0, {package!r})
import SpineSegDiffLib.apps.cases  # the imports (torch...) are not what is measured
from SpineSegDiffLib.apps.cli import main
from SpineSegDiffLib.errors import SpineSegDiffError
from SpineSegDiffLib.io import read_volume
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.perf_counter()
try:
    read_volume({bomb!r})
    refused = False
except SpineSegDiffError:
    refused = True
seconds = time.perf_counter() - started
code = main(["segment", {bomb!r}, "-o", {out!r}, "--models", {models!r}, "--quiet"])
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({{"code": code, "refused": refused, "seconds": seconds, "cli_seconds": time.perf_counter() - started,
                  "grown_kb": grown, "models_loaded": "nnunetv2" in sys.modules}}))
"""


def test_a_header_bomb_is_refused_from_its_header_fast_and_in_little_memory(tmp_path, tiny_models):
    bomb = write_header_bomb(tmp_path / "bomb.nii.gz")
    assert bomb.stat().st_size < 100_000
    out = tmp_path / "out"
    code = MEASURE.format(package=str(REPO / "SpineSegDiff"), bomb=str(bomb), out=str(out), models=str(tiny_models))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    assert measured["code"] == 1 and measured["refused"] and not measured["models_loaded"]
    assert measured["seconds"] < 2 and measured["cli_seconds"] < 2, measured  # imports excluded
    assert measured["grown_kb"] < 200 * 1024, measured  # ru_maxrss is in KB on Linux
    assert "4,096,000,000 voxels (1600 x 1600 x 1600)" in run.stderr and "--max-voxels" in run.stderr
    assert "Traceback" not in run.stderr
    assert [p.name for p in out.iterdir()] == ["summary.json"]


def test_the_limits_can_be_raised_and_lowered(tmp_path, tiny_models, capsys):
    bomb = write_header_bomb(tmp_path / "bomb.nii.gz")
    raised = InputLimits(max_voxels=parse_amount("4G", "--max-voxels"), max_bytes=parse_amount("8G", "--max-bytes"))
    assert check_input(bomb, limits=raised).size == (1600, 1600, 1600)  # the header passes; nothing was read
    with pytest.raises(SpineSegDiffError, match="holds 7.6 GB of voxels .* 16-bit signed integer.* than the 2 GB"):
        check_input(bomb, limits=InputLimits(max_voxels=raised.max_voxels))
    source = tmp_path / "case.mha"
    sitk.WriteImage(synthetic_spine(), str(source))  # 80 x 96 x 12 float32: 92,160 voxels, 360 KB
    for flag, value, message in (("--max-voxels", "80K", "92,160 voxels (80 x 96 x 12), more than the 81,920 allowed"),
                                 ("--max-bytes", "300K", "holds 360 KB of voxels")):
        code = main(["segment", str(source), "-o", str(tmp_path / "out"), "--models", str(tiny_models), *FAST,
                     flag, value])
        err = capsys.readouterr().err
        assert code == 1 and "FAILED: 1 of 1" in err and flag in err and message in err, err


@pytest.mark.parametrize("extra, named", [(["--max-voxels", "0"], "--max-voxels"),
                                          (["--max-voxels", "lots"], "--max-voxels"),
                                          (["--max-bytes=-5G"], "--max-bytes")])
def test_a_bad_limit_is_one_message_before_anything_runs(tmp_path, tiny_models, capsys, extra, named):
    source = tmp_path / "case.mha"
    sitk.WriteImage(synthetic_spine(), str(source))
    out = tmp_path / "out"
    code = main(["segment", str(source), "-o", str(out), "--models", str(tiny_models), "--quiet", *extra])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: ") and named in err and "Traceback" not in err
    assert not out.exists()


def test_limits_from_a_request_name_the_bad_field():
    assert InputLimits.from_dict(None) == InputLimits() == InputLimits.from_dict({})
    assert InputLimits.from_dict({"max_voxels": 10**9}).max_voxels == 10**9
    with pytest.raises(SpineSegDiffError, match="(?s)unknown limit 'frobnicate'.*max_bytes, max_voxels"):
        InputLimits.from_dict({"frobnicate": 1})
    for bad in ({"max_voxels": "1G"}, {"max_bytes": 0}, {"max_voxels": True}, [1]):
        with pytest.raises(SpineSegDiffError, match="max_voxels|max_bytes|limits"):
            InputLimits.from_dict(bad)


def _mha(path, spacing="1 1 1", direction="1 0 0 0 1 0 0 0 1"):
    voxels = np.random.default_rng(0).integers(0, 1000, (40, 40, 40)).astype(np.int16)
    head = (f"ObjectType = Image\nNDims = 3\nDimSize = 40 40 40\nElementType = MET_SHORT\nElementSpacing = {spacing}\n"
            f"TransformMatrix = {direction}\nElementDataFile = LOCAL\n")
    path.write_bytes(head.encode() + voxels.tobytes())
    return path


@pytest.mark.parametrize("spacing, direction, message", [
    ("1 0 1", "1 0 0 0 1 0 0 0 1", "spacing"),
    ("1 -2 1", "1 0 0 0 1 0 0 0 1", "spacing"),
    ("1 1 1", "1 0 0 1 0 0 0 0 1", "orientation"),
    ("0.8 0.8 5", "1 0 0 0 1 0 0 0 1", "axial"),
], ids=["zero-spacing", "negative-spacing", "degenerate-direction", "thick-axial"])
def test_bad_geometry_is_refused_from_the_header(tmp_path, monkeypatch, spacing, direction, message):
    path = _mha(tmp_path / "bad.mha", spacing, direction)
    monkeypatch.setattr(sitk, "ReadImage", lambda *a, **k: pytest.fail("voxels were read"))
    with pytest.raises(SpineSegDiffError, match=message):
        read_volume(path)


def test_a_gzip_stream_longer_than_its_header_says_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "long.nii.gz"
    with gzip.open(path, "wb", compresslevel=1) as stream:
        stream.write(nifti_header((40, 40, 40)))
        stream.write(np.arange(40**3, dtype=np.int16).tobytes() + bytes(4 * 1024 * 1024))
    monkeypatch.setattr(io, "GZIP_HEADER_ALLOWANCE", 1024)
    with pytest.raises(SpineSegDiffError, match="decompresses to more data than its header describes"):
        read_volume(path)


def test_a_dicom_series_is_checked_from_its_tags(tmp_path, monkeypatch):
    folder = tmp_path / "dicom"
    folder.mkdir()
    image = sitk.Cast(synthetic_spine(size=(48, 40, 5), spacing=(0.7, 0.8, 1.5), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)),
                      sitk.sitkInt16)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(image.GetDepth()):
        plane = image[:, :, k]
        plane.SetMetaData("0020|000e", "1.2.826.0.1.3680043.2.1125.7")
        plane.SetMetaData("0020|0013", str(k + 1))
        plane.SetMetaData("0020|0032", "\\".join(map(str, image.TransformIndexToPhysicalPoint((0, 0, k)))))
        writer.SetFileName(str(folder / f"{k}.dcm"))
        writer.Execute(plane)
    header = check_input(folder)
    assert header.size == (48, 40, 5) and header.bytes_per_component == 2
    np.testing.assert_allclose(header.spacing, (0.7, 0.8, 1.5), atol=1e-4)
    monkeypatch.setattr(sitk.ImageSeriesReader, "Execute", lambda self: pytest.fail("voxels were read"))
    with pytest.raises(SpineSegDiffError, match="9,600 voxels"):
        read_volume(folder, limits=InputLimits(max_voxels=5000))


def test_a_slicer_volume_is_checked_before_its_voxels_are_copied(monkeypatch):
    slicer = pytest.importorskip("slicer")
    vtk = pytest.importorskip("vtk")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("slicer-core (compiled MRML) is not installed")
    from SpineSegDiffSlicer import logic, mrml

    scene = slicer.vtkMRMLScene()
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "huge")
    data = vtk.vtkImageData()
    data.SetDimensions(1600, 1600, 1600)  # no voxels allocated: only the dimensions say 32 GB of doubles
    node.SetAndObserveImageData(data)
    monkeypatch.setattr(mrml, "array_from_volume_node", lambda node: pytest.fail("voxels were copied"))
    with pytest.raises(SpineSegDiffError, match="huge has 4,096,000,000 voxels"):
        logic.image_for_volume_node(node)
    header = logic.volume_node_header(node)
    assert header.bytes_per_component == 8 and header.components == 1
    with pytest.raises(SpineSegDiffError, match="30.5 GB of voxels"):
        logic.image_for_volume_node(node, InputLimits(max_voxels=5 * 10**9))
