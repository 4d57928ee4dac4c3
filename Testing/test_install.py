"""Installing into Slicer's Python: minimum versions shared with the peer extensions, every requirement checked
recursively from real metadata, protected packages never passed to pip, failures collected, repair, platform.

The site-packages are synthetic folders of real ``*.dist-info/METADATA`` files read by ``importlib.metadata``;
the pip stand-in records each command and writes the dist-info pip would have written (or fails like pip)."""

from __future__ import annotations

import ast
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from SpineSegDiffSlicer import install

REPO = Path(__file__).resolve().parents[1]
INDEX = {  # what the package index offers here: name -> (version, Requires-Dist), shaped like the real metadata
    "torch": ("2.13.0", ["filelock"]),
    "numpy": ("2.4.6", []),
    "SimpleITK": ("2.5.7", []),
    "requests": ("2.34.2", ["urllib3"]),
    "monai": ("1.6.1", ["torch>=2.8.0", "numpy<3.0,>=1.24", 'einops; extra == "all"']),
    "nnunetv2": ("2.8.1", ["torch!=2.9.*,>=2.1.2", "acvl-utils<0.3,>=0.2.6",
                           "dynamic-network-architectures<0.5,>=0.4.4", "tqdm", "scipy", "numpy>=1.24",
                           "SimpleITK>=2.2.1", "requests", "matplotlib",
                           'pre-commit; extra == "dev"', 'torch<2.3; extra == "intel-macos"']),
    "acvl-utils": ("0.2.6", ["numpy", "batchgenerators", "torch", "SimpleITK", "blosc2>=3.0.0b4"]),
    "blosc2": ("4.15.0", ["msgpack", "numpy>=1.26"]),
    "msgpack": ("1.2.4", []),
    "batchgenerators": ("0.25.5", ["pillow>=7.1.2", "scipy"]),
    "dynamic-network-architectures": ("0.4.4", ["torch>=1.6.0a", "numpy", "einops"]),
    "einops": ("0.8.2", []),
    "highdicom": ("0.28.2", ["numpy>=1.19", "pillow>=8.3", "pydicom>=3.0.1"]),
    "pydicom": ("3.0.2", []),
    "pillow": ("13.0.0", []),
    "scipy": ("1.17.1", ["numpy>=1.26.4"]),
    "matplotlib": ("3.11.2", ["numpy>=1.25", "pillow>=9"]),
    "tqdm": ("4.70.1", ['colorama; platform_system == "Windows"']),
}
SLICER_OWN = ("numpy", "SimpleITK", "requests", "pillow", "pydicom")
"""What a fresh Slicer already has."""


def put(site: Path, name: str, version: str | None = None, requires: list[str] | None = None) -> None:
    """Write ``name``'s dist-info (the index's version and requirements unless given), replacing any other."""
    remove(site, name)
    version = version or INDEX[name][0]
    requires = INDEX[name][1] if requires is None else requires
    folder = site / f"{name.replace('-', '_')}-{version}.dist-info"
    folder.mkdir()
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    (folder / "METADATA").write_text("\n".join(lines) + "\n")


def remove(site: Path, name: str) -> None:
    for metadata_file in site.glob("*.dist-info/METADATA"):
        if canonicalize_name(metadata_file.read_text().split("Name: ")[1].split("\n")[0]) == canonicalize_name(name):
            metadata_file.unlink()
            metadata_file.parent.rmdir()


def names_of(calls: list[str]) -> list[str]:
    return [canonicalize_name(Requirement(shlex.split(call)[0]).name) for call in calls]


class FakePip:
    """``slicer.util.pip_install`` over ``index``: records each command (also in ``events``), writes the dist-info
    pip would write (the pinned version, else the index's), or fails like pip for ``broken`` names."""

    def __init__(self, site: Path, broken: tuple[str, ...] = (), index: dict | None = None, events: list | None = None):
        self.site, self.broken, self.index = site, {canonicalize_name(b) for b in broken}, index or INDEX
        self.calls, self.events = [], [] if events is None else events

    def __call__(self, command: str) -> None:
        self.calls.append(command)
        self.events.append("pip")
        requirement = Requirement(shlex.split(command)[0])
        name = next(n for n in self.index if canonicalize_name(n) == canonicalize_name(requirement.name))
        if canonicalize_name(name) in self.broken:
            raise subprocess.CalledProcessError(1, ["pip", "install", *shlex.split(command)])
        pinned = [s.version for s in requirement.specifier if s.operator == "=="]
        put(self.site, name, pinned[0] if pinned else self.index[name][0], self.index[name][1])


class FakeTorchInstaller:
    """The PyTorch extension's installer: records the specifier, installs torch (or fails when ``works`` is False)."""

    def __init__(self, site: Path, works: bool = True, events: list | None = None):
        self.site, self.works, self.specifiers, self.events = site, works, [], [] if events is None else events

    def __call__(self, specifier: str) -> bool:
        self.specifiers.append(specifier)
        self.events.append("torch")
        if self.works:
            put(self.site, "torch")
        return self.works


@pytest.fixture
def site(tmp_path) -> Path:
    """A Slicer Python where a previous install finished: everything in the index."""
    for name in INDEX:
        put(tmp_path, name)
    return tmp_path


@pytest.fixture
def fresh(tmp_path) -> Path:
    """A fresh Slicer's Python: only Slicer's own packages."""
    for name in SLICER_OWN:
        put(tmp_path, name)
    return tmp_path


def test_the_requirements_are_one_table_of_minimums_shared_with_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert tuple(declared) == install.REQUIREMENTS
    for text in install.REQUIREMENTS:
        assert {s.operator for s in Requirement(text).specifier} <= {">="}, text  # minimums only, no pins
    assert {"monai>=1.6", "nnunetv2>=2.8", "torch>=2.8"} <= set(install.REQUIREMENTS)


def test_this_environment_meets_every_requirement_recursively():
    report = install.check()
    assert report.ok, report.problems()
    assert report.problems() == [] and install.missing_or_outdated() == []


def test_a_complete_site_passes_and_extras_or_other_platforms_are_not_required(site):
    report = install.check([str(site)])  # no pre-commit (an extra), einops only as monai[all], no colorama (Windows)
    assert report.ok and report.unmet == () and report.torch == () and report.slicer == ()


def test_a_peers_newer_nnunetv2_is_kept(site):
    put(site, "nnunetv2", "2.9.0")  # installed by SlicerNNUnet or SlicerTotalSegmentator with their minimums
    pip, torch = FakePip(site), FakeTorchInstaller(site)
    assert install.check([str(site)]).ok
    install.install(pip, torch, path=[str(site)])
    assert pip.calls == [] and torch.specifiers == []
    assert list(site.glob("nnunetv2-*.dist-info")) == [site / "nnunetv2-2.9.0.dist-info"]


@pytest.mark.parametrize(("name", "version"), [("monai", "1.7.0rc1"), ("torch", "2.14.0.dev20260101+cu128")])
def test_a_newer_prerelease_meets_a_minimum(site, name, version):
    put(site, name, version)  # a release candidate or a nightly torch someone chose: kept
    assert install.check([str(site)]).ok


def test_an_older_version_is_unmet_and_replaced_with_the_minimum_quoted(site):
    put(site, "monai", "1.5.2")
    report = install.check([str(site)])
    assert [(u.name, u.specifier, u.installed, u.required_by) for u in report.unmet] == [
        ("monai", ">=1.6", "1.5.2", ("SpineSegDiff",))]
    pip = FakePip(site)
    install.install(pip, FakeTorchInstaller(site), path=[str(site)])
    assert pip.calls == ['"monai>=1.6" --no-deps']


def test_a_missing_transitive_dependency_is_found(site):
    remove(site, "blosc2")
    report = install.check([str(site)])
    assert [str(u) for u in report.unmet] == ["blosc2>=3.0.0b4 (not installed; required by acvl-utils)"]
    assert not report.ok and install.missing_or_outdated([str(site)]) == [str(report.unmet[0])]


def test_a_half_failed_install_is_completed_with_exactly_the_missing_chain(site):
    for name in ("acvl-utils", "blosc2", "msgpack"):  # nnunetv2 placed with --no-deps, its requirements never came
        remove(site, name)
    pip, torch = FakePip(site), FakeTorchInstaller(site)
    report = install.install(pip, torch, path=[str(site)])
    assert pip.calls == ['"acvl-utils>=0.2.6,<0.3" --no-deps', '"blosc2>=3.0.0b4" --no-deps', '"msgpack" --no-deps']
    assert torch.specifiers == [] and report.ok and install.check([str(site)]).ok


def test_a_fresh_slicer_gets_everything_but_slicers_own_packages_and_torch_from_the_extension(fresh):
    order = []
    pip, torch = FakePip(fresh, events=order), FakeTorchInstaller(fresh, events=order)
    assert install.install(pip, torch, path=[str(fresh)]).ok
    top_level = ["monai", "nnunetv2", "highdicom", "scipy", "matplotlib", "tqdm"]
    assert names_of(pip.calls)[:6] == top_level and order[6] == "torch"  # their metadata gives torch's specifier
    assert torch.specifiers == [">=2.8,!=2.9.*"]
    expected = [canonicalize_name(n) for n in INDEX if n not in SLICER_OWN + ("torch",)]
    assert sorted(names_of(pip.calls)) == sorted(expected)
    assert all(call.endswith(" --no-deps") and call.startswith('"') for call in pip.calls)
    assert set(names_of(pip.calls)).isdisjoint(install.PROTECTED)


def test_the_torch_specifier_comes_from_the_metadata(site):
    assert install.check([str(site)]).torch_specifier == ">=2.8,!=2.9.*"
    put(site, "nnunetv2", requires=["torch>=2.1.2"])
    assert install.check([str(site)]).torch_specifier == ">=2.8"
    put(site, "monai", requires=["torch>=2.10"])
    assert install.check([str(site)]).torch_specifier == ">=2.10"


def test_torch_outside_the_specifier_goes_to_the_pytorch_extension_never_to_pip(site):
    put(site, "torch", "2.9.1")
    report = install.check([str(site)])
    assert [u.name for u in report.torch] == ["torch"] and report.unmet == ()
    pip, torch = FakePip(site), FakeTorchInstaller(site)
    install.install(pip, torch, path=[str(site)])
    assert torch.specifiers == [">=2.8,!=2.9.*"] and pip.calls == []


def test_without_the_pytorch_extension_one_clear_error(site):
    remove(site, "torch")
    with pytest.raises(RuntimeError, match="Install the PyTorch extension from the Extensions Manager, restart Slicer"):
        install.install(FakePip(site), FakeTorchInstaller(site, works=False), path=[str(site)])


def test_slicers_numpy_outside_a_requirement_is_kept_with_a_warning(site):
    put(site, "numpy", "1.23.5")
    report = install.check([str(site)])
    assert report.ok and [u.name for u in report.slicer] == ["numpy"]
    pip, logged = FakePip(site), []
    install.install(pip, FakeTorchInstaller(site), log=logged.append, path=[str(site)])
    assert pip.calls == [] and any("numpy" in line and "kept" in line for line in logged)


def test_one_failing_package_does_not_stop_the_others_and_the_error_names_what_is_unmet(fresh):
    pip = FakePip(fresh, broken=("scipy", "msgpack"))
    with pytest.raises(RuntimeError) as raised:
        install.install(pip, FakeTorchInstaller(fresh), path=[str(fresh)])
    message = str(raised.value)
    unmet = install.check([str(fresh)]).unmet
    assert [u.name for u in unmet] == ["scipy", "msgpack"]
    assert all(str(u) in message for u in unmet) and "Reinstall dependencies" in message
    assert "pip failed for: msgpack, scipy." in message
    installed = {canonicalize_name(p.name.split("-")[0]) for p in fresh.glob("*.dist-info")}
    assert {"monai", "nnunetv2", "highdicom", "matplotlib", "tqdm", "blosc2", "einops"} <= installed
    assert names_of(pip.calls).count("scipy") == 1  # each package is tried once


def test_a_requirement_cycle_ends(fresh):
    pip = FakePip(fresh, index={**INDEX, "einops": ("0.8.2", ["dynamic-network-architectures"])})  # a cycle
    assert install.install(pip, FakeTorchInstaller(fresh), path=[str(fresh)]).ok
    assert names_of(pip.calls).count("einops") == 1 and names_of(pip.calls).count("dynamic-network-architectures") == 1


def test_repair_reinstalls_our_packages_then_completes_a_half_failed_install(site):
    put(site, "nnunetv2", "2.9.0")  # a peer's newer nnunetv2 is reinstalled as it is, not replaced
    remove(site, "acvl-utils")
    report = install.check([str(site)])
    assert [u.name for u in report.unmet] == ["acvl-utils"]
    pip, torch = FakePip(site), FakeTorchInstaller(site)
    assert install.repair(pip, torch, path=[str(site)]).ok
    forced = [f'"{n}=={v}" --force-reinstall --no-deps' for n, v in [("monai", "1.6.1"), ("nnunetv2", "2.9.0"),
                                                                        ("highdicom", "0.28.2")]]
    assert pip.calls == forced + ['"acvl-utils>=0.2.6,<0.3" --no-deps'] and torch.specifiers == []
    assert list(site.glob("nnunetv2-*.dist-info")) == [site / "nnunetv2-2.9.0.dist-info"]


def test_repair_installs_the_minimum_of_what_is_missing_and_reports_failures(fresh):
    pip = FakePip(fresh, broken=("highdicom",))
    with pytest.raises(RuntimeError, match=r"highdicom>=0.28 \(not installed; required by SpineSegDiff\)"):
        install.repair(pip, FakeTorchInstaller(fresh), path=[str(fresh)])
    assert pip.calls[0] == '"monai>=1.6" --force-reinstall --no-deps'
    assert set(names_of(pip.calls)).isdisjoint(install.PROTECTED)


@pytest.mark.parametrize(("version", "system", "machine", "expected"), [
    ((3, 11, 7), "linux", "x86_64", None),
    ((3, 12, 4), "darwin", "arm64", None),
    ((3, 12, 4), "win32", "AMD64", None),
    ((3, 9, 18), "linux", "x86_64", "Slicer 5.10 or newer"),
    ((3, 12, 4), "darwin", "x86_64", "no build for Intel macOS"),
])
def test_the_platform_check(version, system, machine, expected):
    message = install.unsupported_platform_message(version, system, machine)
    assert message is None if expected is None else expected in message
    if machine == "x86_64" and system == "darwin":
        assert "Rosetta" in message and "arm64" in message and "PyTorch 2.8" in message
    if version[:2] == (3, 9):
        assert "Python 3.9" in message


def test_this_python_is_supported_and_the_module_imports_neither_slicer_nor_qt():
    assert install.unsupported_platform_message() is None or sys.platform == "darwin"
    tree = ast.parse(Path(install.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert imported.isdisjoint({"slicer", "qt", "ctk", "vtk"})
