"""Installing the core's Python dependencies into Slicer without replacing what Slicer or the PyTorch
extension chose (the approach of SlicerNNUnet's install logic).

torch comes from the PyTorch extension (``PyTorchUtils``, with :data:`MINIMUM_TORCH`). monai and nnunetv2
are installed with ``--no-deps``; their own requirements are then installed except :data:`KEEP` (Slicer's
SimpleITK, numpy and requests, and the chosen torch). What is installed is checked by version, not by import.
"""

from __future__ import annotations

import sys
from importlib import metadata

MINIMUM_PYTHON = (3, 10)
MINIMUM_SLICER = "5.10"
MINIMUM_TORCH = "2.8"
PINNED = {"monai": "1.6.1", "nnunetv2": "2.8.1"}
KEEP = {"simpleitk", "numpy", "requests", "torch"}
"""Packages pip must never replace: Slicer's own, and the torch build the PyTorch extension installed."""


def unsupported_python_message() -> str | None:
    """One clear message when this Slicer is too old (its Python cannot install monai 1.6 / nnunetv2 2.8)."""
    if sys.version_info >= MINIMUM_PYTHON:
        return None
    found = ".".join(map(str, sys.version_info[:2]))
    return (f"SpineSegDiff needs 3D Slicer {MINIMUM_SLICER} or newer (Python 3.10+); this Slicer has Python "
            f"{found}. Install the current Slicer release from download.slicer.org.")


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def missing_or_outdated() -> list[str]:
    """Requirements not met by the installed versions: torch below the minimum, monai/nnunetv2 not at the pin."""
    from packaging.version import Version

    missing = []
    torch = installed_version("torch")
    if torch is None or Version(torch.split("+")[0]) < Version(MINIMUM_TORCH):
        missing.append(f"torch>={MINIMUM_TORCH}")
    missing += [f"{name}=={pin}" for name, pin in PINNED.items() if installed_version(name) != pin]
    if installed_version("scipy") is None:
        missing.append("scipy")
    return missing


def dependencies_to_install(package: str) -> list[str]:
    """The installed ``package``'s own requirements for this Python, without :data:`KEEP` and extras."""
    from packaging.requirements import Requirement

    wanted = []
    for text in metadata.requires(package) or []:
        requirement = Requirement(text)
        if requirement.name.lower() in KEEP:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
            continue
        wanted.append(str(requirement).split(";")[0].strip())
    return wanted


def install(missing: list[str], pip_install, install_torch) -> None:
    """``install_torch(">=X")`` for torch, then each pinned package with ``--no-deps`` and its filtered
    requirements; raises ``RuntimeError`` with what to do when something is still missing."""
    if any(r.startswith("torch") for r in missing) and not install_torch(f">={MINIMUM_TORCH}"):
        raise RuntimeError(f"PyTorch {MINIMUM_TORCH} or newer could not be installed. Install the PyTorch "
                           "extension from the Extensions Manager, restart Slicer and click Segment again.")
    for requirement in (r for r in missing if not r.startswith("torch")):
        pip_install(f"{requirement} --no-deps" if "==" in requirement else requirement)
        name = requirement.split("=")[0]
        if "==" in requirement and dependencies_to_install(name):
            pip_install(" ".join(f'"{d}"' for d in dependencies_to_install(name)))
    still = missing_or_outdated()
    if still:
        raise RuntimeError("Still missing after installing: " + ", ".join(still)
                           + ". See the Python console for pip's messages.")
