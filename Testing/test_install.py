"""The dependency check reads installed versions; the install keeps Slicer's and PyTorch's packages."""

from __future__ import annotations

import sys

from SpineSegDiffSlicer import install


def test_this_environment_meets_the_requirements_by_version():
    assert install.missing_or_outdated() == []


def test_a_wrong_version_counts_as_missing(monkeypatch):
    versions = {"torch": "2.3.0", "monai": "1.5.0", "nnunetv2": "2.8.1", "scipy": "1.0"}
    monkeypatch.setattr(install, "installed_version", versions.get)
    assert install.missing_or_outdated() == ["torch>=2.8", "monai==1.6.1"]


def test_dependencies_never_include_what_slicer_or_pytorch_provide():
    wanted = {d.split("<")[0].split(">")[0].split("=")[0].split("[")[0].strip().lower()
              for d in install.dependencies_to_install("nnunetv2")}
    assert wanted and wanted.isdisjoint(install.KEEP)


def test_too_old_a_python_gets_one_clear_message(monkeypatch):
    assert install.unsupported_python_message() is None
    monkeypatch.setattr(sys, "version_info", (3, 9, 18))
    message = install.unsupported_python_message()
    assert "Slicer 5.10 or newer" in message and "Python 3.9" in message
