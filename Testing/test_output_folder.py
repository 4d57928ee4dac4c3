"""The output folder checked before any model loads, and the operating system's errors while writing said plainly:
one message naming the folder, the documented exit status (2), nothing partial left behind."""

from __future__ import annotations

import errno
import os
import shutil

import pytest
import SimpleITK as sitk
from conftest import synthetic_spine

from SpineSegDiffLib.apps import cases
from SpineSegDiffLib.apps.cli import main
from SpineSegDiffLib.errors import OutputFolderError, SpineSegDiffError
from SpineSegDiffLib.outputs import destination
from SpineSegDiffLib.outputs.destination import plain_os_errors

FAST = ["--preset", "fast", "--samples", "2", "--steps", "2", "--quiet"]


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "in" / "case.mha"
    path.parent.mkdir()
    sitk.WriteImage(synthetic_spine(), str(path))
    return path


def _segment(inputs, out, models, capsys):
    code = main(["segment", *map(str, inputs), "-o", str(out), "--models", str(models), *FAST])
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected error" not in err, err
    return code, err


def _no_models(monkeypatch):
    monkeypatch.setattr(cases, "open_models", lambda *a: pytest.fail("models were opened before the folder check"))


def _files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_an_existing_file_as_output_folder_is_one_message_and_exit_2(tmp_path, tiny_models, source, capsys,
                                                                     monkeypatch):
    _no_models(monkeypatch)
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    before = _files(tmp_path)
    for out in (afile, afile / "sub"):
        code, err = _segment([source], out, tiny_models, capsys)
        assert code == 2 and err.count("error: ") == 1 and "is a file" in err and str(out) in err
    assert _files(tmp_path) == before and afile.read_text() == "keep me"


def test_a_folder_that_is_not_writable_is_refused_before_models_load(tmp_path, tiny_models, source, capsys,
                                                                     monkeypatch):
    _no_models(monkeypatch)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    if os.geteuid() == 0:  # root writes anywhere: make os.access answer as for a normal user
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    code, err = _segment([source], locked / "out", tiny_models, capsys)
    assert code == 2 and f"{locked} is not writable" in err and "-> choose an output folder" in err
    assert list(locked.iterdir()) == []


def test_a_read_only_filesystem_is_refused_before_models_load(tmp_path, tiny_models, source, capsys, monkeypatch):
    _no_models(monkeypatch)
    real_statvfs = os.statvfs

    def read_only(path):
        found = real_statvfs(path)
        return os.statvfs_result((*found[:8], found.f_flag | os.ST_RDONLY, *found[9:]))

    monkeypatch.setattr(os, "statvfs", read_only)
    code, err = _segment([source], tmp_path / "out", tiny_models, capsys)
    assert code == 2 and f"{tmp_path} is on a read-only filesystem" in err
    assert not (tmp_path / "out").exists()


def test_too_little_free_space_is_refused_before_models_load(tmp_path, tiny_models, source, capsys, monkeypatch):
    monkeypatch.setattr(destination.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12, 10**5))
    code, err = _segment([source], tmp_path / "out", tiny_models, capsys)
    assert code == 2 and f"not enough space on {tmp_path}" in err and "-> free 1.6 MB or choose another" in err
    assert not (tmp_path / "out").exists()


def test_a_name_too_long_for_the_filesystem_fails_that_case_only(tmp_path, tiny_models, source, capsys):
    long_name = source.with_name("x" * 240 + ".mha")
    source.rename(long_name)
    code, err = _segment([long_name], tmp_path / "out", tiny_models, capsys)
    assert code == 1 and "would be longer than the 255 characters" in err and "rename the input" in err


def _full_disk_on(name: str, monkeypatch, error: Exception) -> None:
    """Writing the image file ``name`` fails with ``error``: the disk fills up there."""
    real_write = sitk.WriteImage

    def write(image, path, *args, **kwargs):
        if str(path).endswith(name):
            monkeypatch.setattr(destination.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
            raise error
        return real_write(image, path, *args, **kwargs)

    monkeypatch.setattr(sitk, "WriteImage", write)


@pytest.mark.parametrize("error", [
    OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
    RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute: /tmp/itkNiftiImageIO.cxx:2011:\n"
                 "ITK ERROR: NiftiImageIO(0x55d): Could not write: No space left on device"),
], ids=["OSError", "SimpleITK"])
def test_a_disk_that_fills_while_writing_is_one_plain_message_and_nothing_partial(tmp_path, tiny_models, capsys,
                                                                                  monkeypatch, error):
    inputs = []
    for k in range(3):
        inputs.append(tmp_path / "in" / f"case{k}.mha")
        inputs[-1].parent.mkdir(exist_ok=True)
        sitk.WriteImage(synthetic_spine(seed=k), str(inputs[-1]))
    out = tmp_path / "out"
    _full_disk_on("case1_uncertainty.nii.gz", monkeypatch, error)  # the second case's heatmap, in its staging folder
    code, err = _segment(inputs, out, tiny_models, capsys)
    assert code == 2
    assert f"error: no space left on {out}\n  -> free 1.7 MB or choose another output folder\n" in err
    files = {p.name for p in out.iterdir()}
    assert "case0_report.json" in files and not any(name.startswith(("case1", "case2", ".")) for name in files)
    monkeypatch.undo()
    assert _segment(inputs, out, tiny_models, capsys)[0] == 0  # the re-run finishes what is missing
    assert {p.name for p in out.glob("*_report.json")} == {f"case{k}_report.json" for k in range(3)}


@pytest.mark.parametrize("number, kind, message", [
    (errno.ENOSPC, OutputFolderError, "no space left on"),
    (errno.EACCES, OutputFolderError, r"is not writable \(permission denied\)"),
    (errno.EROFS, OutputFolderError, "is on a read-only filesystem"),
    (errno.ENAMETOOLONG, SpineSegDiffError, "too long"),
])
def test_os_errors_while_writing_name_the_folder(tmp_path, number, kind, message):
    with pytest.raises(kind, match=message) as caught, plain_os_errors(tmp_path, needed_bytes=10**6):
        raise OSError(number, os.strerror(number))
    assert str(tmp_path) in str(caught.value) and caught.value.__cause__ is None
    with pytest.raises(RuntimeError, match="Could not create IO object"), plain_os_errors(tmp_path):
        raise RuntimeError("Could not create IO object for writing file x.foo")  # not an OS error: unchanged
    with pytest.raises(FileNotFoundError), plain_os_errors(tmp_path):
        raise FileNotFoundError(errno.ENOENT, "gone")


def test_the_workers_preflight_checks_folder_input_and_space(tmp_path, source):
    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(OutputFolderError, match="is a file"):
        cases.preflight(source, afile, "case")
    with pytest.raises(SpineSegDiffError, match="does not exist"):
        cases.preflight(tmp_path / "missing.nii.gz", tmp_path / "out", "case")
    assert cases.preflight(source, tmp_path / "out", "case").size == (80, 96, 12)
    assert not (tmp_path / "out").exists()


def test_a_single_case_reports_a_full_disk_and_a_batch_stops_on_it(tmp_path, tiny_models):
    from SpineSegDiffLib.apps.batch import BatchEngine, Case
    from SpineSegDiffLib.modelset.model_set import open_models
    from SpineSegDiffLib.options import SegmentOptions

    def work(case, segmenter):
        with plain_os_errors(tmp_path, 10**6):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    engine = BatchEngine(open_models(tiny_models), SegmentOptions(device="cpu", refine=False), tmp_path)
    engine._segmenters["cpu"] = "a loaded segmenter"
    entry = engine.run_case(Case("scan.nii.gz", "scan", None), work)  # the worker's and the cluster's way
    assert entry["status"] == "failed" and entry["reason"].startswith(f"no space left on {tmp_path}")
    assert "traceback" not in entry
    with pytest.raises(OutputFolderError, match="no space left"):
        engine.run([Case("a", "a", None), Case("b", "b", None)], work)
