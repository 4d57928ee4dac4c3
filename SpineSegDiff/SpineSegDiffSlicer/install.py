"""Installing the core's Python dependencies into Slicer's Python beside the peer extensions (SlicerNNUnet,
SlicerTotalSegmentator): minimum versions (:data:`REQUIREMENTS`), so the extensions share one Python.

:func:`check` walks every requirement reachable from that table through the installed metadata. :func:`install`
places each unmet package with ``--no-deps`` and walks on into its requirements, never touching :data:`PROTECTED`
(Slicer's SimpleITK, numpy, requests; torch and torchvision, which the PyTorch extension installs with the specifier
derived from monai's and nnunetv2's metadata). :func:`repair` reinstalls ours first. No slicer or qt import here.
"""

from __future__ import annotations

import functools
import importlib
import logging
import operator
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

MINIMUM_PYTHON = (3, 10)
MINIMUM_SLICER = "5.10"
OWNER = "SpineSegDiff"
REQUIREMENTS = ("torch>=2.8", "monai>=1.6", "nnunetv2>=2.8", "SimpleITK>=2.3", "numpy", "highdicom>=0.28",
                "pillow>=10.1", "scipy", "matplotlib", "tqdm")
"""The core's own requirements (pyproject.toml's ``dependencies`` say the same): minimum versions, no upper pins."""
TORCH = frozenset({"torch", "torchvision"})
"""Installed only by the PyTorch extension (it picks the build for the GPU, torchvision along with torch)."""
PROTECTED = TORCH | {"simpleitk", "numpy", "requests"}
"""Never passed to pip: Slicer's own packages and :data:`TORCH`."""
TOP_LEVEL = tuple(n for n in (canonicalize_name(Requirement(r).name) for r in REQUIREMENTS) if n not in PROTECTED)
REPAIRED = ("monai", "nnunetv2", "highdicom")
"""What :func:`repair` reinstalls: the pure-Python libraries only SpineSegDiff and its peers use. Compiled packages
(pillow, scipy, matplotlib) that Slicer or another module may have loaded are left (Windows cannot replace a loaded
library); the selective install still adds or updates them when they are missing or outside a requirement."""
WHAT_TO_DO = "Click Reinstall dependencies, or see the Python console for pip's messages."
_LOG = logging.getLogger(__name__).info

PipInstall = Callable[[str], object]
"""``slicer.util.pip_install``: one command-line string; raises (``CalledProcessError``) when pip fails."""
TorchInstall = Callable[[str], bool]
"""The PyTorch extension's installer for a specifier such as ``">=2.8,!=2.9.*"``; False when it could not."""


@dataclass(frozen=True)
class Unmet:
    """A package not installed (``installed`` None) or installed outside the specifier its requirers combine."""

    name: str
    specifier: str
    installed: str | None
    required_by: tuple[str, ...]

    @property
    def requirement(self) -> str:
        return f"{self.name}{self.specifier}"

    def __str__(self) -> str:
        state = f"{self.installed} installed" if self.installed else "not installed"
        return f"{self.requirement} ({state}; required by {', '.join(self.required_by)})"


@dataclass(frozen=True)
class Report:
    """What :func:`check` found: ``unmet`` pip can fix, ``torch`` the PyTorch extension must fix, ``slicer``
    Slicer's own packages outside a requirer's specifier (kept: a warning only)."""

    unmet: tuple[Unmet, ...]
    torch: tuple[Unmet, ...]
    slicer: tuple[Unmet, ...]
    torch_specifier: str

    @property
    def ok(self) -> bool:
        return not self.unmet and not self.torch

    def problems(self) -> list[str]:
        """One line per unmet requirement, torch first."""
        return [str(u) for u in self.torch + self.unmet]


def unsupported_platform_message(version_info: Sequence[int] | None = None, system: str | None = None,
                                 machine: str | None = None) -> str | None:
    """One clear message when this Slicer cannot run the core (too old a Python, or an x86_64 macOS build)."""
    version_info = tuple(version_info or sys.version_info)
    if version_info[:2] < MINIMUM_PYTHON:
        return (f"SpineSegDiff needs 3D Slicer {MINIMUM_SLICER} or newer (Python 3.10+); this Slicer has Python "
                f"{version_info[0]}.{version_info[1]}. Install the current Slicer release from download.slicer.org.")
    if (system or sys.platform) == "darwin" and (machine or platform.machine()) == "x86_64":
        return ("SpineSegDiff needs PyTorch 2.8 or newer (for MONAI 1.6 and nnU-Net 2.8), and PyTorch has no build for "
                "Intel macOS: this Slicer runs as x86_64 (an Intel Mac, or an Apple-silicon Mac running the Intel "
                "Slicer under Rosetta). Use the Apple-silicon (arm64) Slicer, or Slicer on Linux or Windows.")
    return None


unsupported_python_message = unsupported_platform_message  # the name the module used before


def installed(path: list[str] | None = None) -> dict[str, metadata.Distribution]:
    """The distributions on ``path`` (default ``sys.path``) by canonical name; the first on the path wins."""
    importlib.invalidate_caches()
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions(path=path) if path is not None else metadata.distributions():
        name = dist.metadata.get("Name")
        if name:
            found.setdefault(canonicalize_name(name), dist)
    return found


def requirements_of(dist: metadata.Distribution) -> list[Requirement]:
    """``dist``'s requirements for this Python and platform; those only behind an extra are left out."""
    wanted = []
    for text in dist.requires or []:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            wanted.append(requirement)
    return wanted


def _walk(site: dict[str, metadata.Distribution]) -> dict[str, list[tuple[Requirement, str]]]:
    """Every requirement reachable from :data:`REQUIREMENTS`, by name, with who requires it. The walk does not
    go into protected packages (their installers own their requirements); each package is entered once."""
    needs: dict[str, list[tuple[Requirement, str]]] = {}
    queue, entered = [(Requirement(r), OWNER) for r in REQUIREMENTS], set()
    while queue:
        requirement, by = queue.pop(0)
        name = canonicalize_name(requirement.name)
        needs.setdefault(name, []).append((requirement, by))
        if name in entered or name in PROTECTED or name not in site:
            continue
        entered.add(name)
        queue += [(r, site[name].metadata["Name"]) for r in requirements_of(site[name])]
    return needs


def _combined(edges: list[tuple[Requirement, str]]) -> SpecifierSet:
    return functools.reduce(operator.and_, (r.specifier for r, _ in edges), SpecifierSet())


def _satisfies(version: str, specifier: SpecifierSet) -> bool:
    try:
        return specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return not specifier


def simplified(specifier: SpecifierSet) -> str:
    """``specifier`` as text with only the highest ``>=`` bound kept, that bound first: ``">=2.8,!=2.9.*"``."""
    lower = [s for s in specifier if s.operator == ">="]
    best = [max(lower, key=lambda s: (Version(s.version), -len(s.version)))] if lower else []
    rest = sorted({str(s) for s in specifier if s.operator != ">="})
    return ",".join([str(s) for s in best] + rest)


def check(path: list[str] | None = None) -> Report:
    """Every requirement reachable from :data:`REQUIREMENTS` through the installed metadata, checked by version."""
    site = installed(path)
    needs = _walk(site)
    unmet, torch, slicer = [], [], []
    for name, edges in needs.items():
        specifier = _combined(edges)
        version = site[name].version if name in site else None
        if version is not None and _satisfies(version, specifier):
            continue
        problem = Unmet(name, simplified(specifier), version, tuple(dict.fromkeys(by for _, by in edges)))
        if name in TORCH:
            torch.append(problem)
        elif name in PROTECTED:
            slicer.append(problem)
        else:
            unmet.append(problem)
    return Report(tuple(unmet), tuple(torch), tuple(slicer), simplified(_combined(needs.get("torch", []))))


def missing_or_outdated(path: list[str] | None = None) -> list[str]:
    """The unmet requirements as lines to show (empty when the core can run)."""
    return check(path).problems()


def _pip_each(requirements: list[str], options: str, pip_install: PipInstall, failures: dict[str, str],
              log: Callable[[str], object]) -> None:
    """``pip_install('"requirement" options')`` for each; a failure is recorded and the others still run."""
    for requirement in requirements:
        log(f"Installing {requirement} {options}")
        try:
            pip_install(f'"{requirement}" {options}')
        except Exception as error:  # CalledProcessError from pip, or whatever the caller's installer raises
            failures[canonicalize_name(Requirement(requirement).name)] = str(error)
            log(f"Could not install {requirement}: {error}")


def _install_torch(specifier: str, install_torch: TorchInstall, log: Callable[[str], object]) -> None:
    log(f"Installing PyTorch {specifier} with the PyTorch extension (several minutes)")
    if not install_torch(specifier):
        raise RuntimeError(f"PyTorch {specifier} could not be installed. Install the PyTorch extension from the "
                           "Extensions Manager, restart Slicer and try again.")


def _complete(pip_install: PipInstall, install_torch: TorchInstall, log: Callable[[str], object],
              path: list[str] | None, failures: dict[str, str]) -> Report:
    """Our unmet top-level packages (their metadata gives torch's specifier), torch, then rounds of ``--no-deps``
    installs of whatever the next check finds unmet; each package is tried once. Raises when anything is unmet."""
    first = [u for u in check(path).unmet if u.name in TOP_LEVEL]
    _pip_each([u.requirement for u in first], "--no-deps", pip_install, failures, log)
    report, tried = check(path), {u.name for u in first}
    if report.torch:
        _install_torch(report.torch_specifier, install_torch, log)
    while todo := [u for u in check(path).unmet if u.name not in tried]:
        tried.update(u.name for u in todo)
        _pip_each([u.requirement for u in todo], "--no-deps", pip_install, failures, log)
    return _final(check(path), failures, log)


def _final(report: Report, failures: dict[str, str], log: Callable[[str], object]) -> Report:
    for kept in report.slicer:
        log(f"Warning: Slicer's own package is kept although outside a requirement: {kept}")
    if report.ok:
        return report
    lines = "\n  ".join(report.problems())
    failed = f"\npip failed for: {', '.join(sorted(failures))}." if failures else ""
    torch = ("\nPyTorch comes from the PyTorch extension: install it from the Extensions Manager and restart "
             "Slicer." if report.torch else "")
    raise RuntimeError(f"SpineSegDiff's Python requirements are still unmet:\n  {lines}{failed}{torch}\n{WHAT_TO_DO}")


def install(pip_install: PipInstall, install_torch: TorchInstall, log: Callable[[str], object] = _LOG,
            path: list[str] | None = None) -> Report:
    """Install what :func:`check` finds unmet, never replacing :data:`PROTECTED`; one ``RuntimeError`` naming
    each requirement still unmet when done (after trying all of them)."""
    return _complete(pip_install, install_torch, log, path, {})


def repair(pip_install: PipInstall, install_torch: TorchInstall, log: Callable[[str], object] = _LOG,
           path: list[str] | None = None) -> Report:
    """``--force-reinstall --no-deps`` of :data:`REPAIRED` (the installed version where it fits, so a peer's newer
    one stays), then :func:`install`: mends a half-failed or damaged install."""
    site, failures, again = installed(path), {}, []
    needs = _walk(site)
    for name in REPAIRED:
        specifier = _combined(needs[name])
        version = site[name].version if name in site else None
        fits = version is not None and _satisfies(version, specifier)
        again.append(f"{name}=={version}" if fits else f"{name}{simplified(specifier)}")
    _pip_each(again, "--force-reinstall --no-deps", pip_install, failures, log)
    return _complete(pip_install, install_torch, log, path, failures)
