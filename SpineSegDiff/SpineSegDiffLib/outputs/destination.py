"""The output folder, checked before any model loads, and the operating system's errors while writing, said plainly.

:func:`check_output_folder` refuses a folder that is an existing file, lies under a file, is not writable or is
on a read-only filesystem; :func:`check_free_space` compares the free space with the worst case of the expected
outputs (:func:`expected_output_bytes`, from the input's header); :func:`check_output_name` refuses a case name
too long for the filesystem. Nothing is written by any of them. While writing, :func:`plain_os_errors` turns
"no space", "permission denied", "read-only filesystem" and "file name too long" (as Python's ``OSError`` or
as the text of a SimpleITK writer's ``RuntimeError``) into one message naming the folder. Outputs stay atomic
(see :mod:`.writer`): a failed write leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import OutputFolderError, SpineSegDiffError
from ..header import ImageHeader, human_bytes

OUTPUT_BYTES_PER_VOXEL = 8
"""Worst case (nothing compresses) of one case's outputs per input voxel: labels, level labels and ``.seg.nrrd``
(1 byte each), heatmap (4 bytes), DICOM SEG (1 bit per segment)."""
OUTPUT_BYTES_PER_CASE = 1024 * 1024
"""Report, CSV files and preview picture."""
NAME_RESERVE = 32
"""Characters an output name adds to the case name: the longest suffix (``_levels_per_slice.csv``), or the
staging folder's dot and random characters."""


def expected_output_bytes(header: ImageHeader) -> int:
    """The most one case's outputs can take on disk, from its input's header."""
    return header.voxels * OUTPUT_BYTES_PER_VOXEL + OUTPUT_BYTES_PER_CASE


def existing_part(folder: Path) -> Path:
    """``folder`` if it exists, else its nearest existing parent (where it will be created)."""
    return next((candidate for candidate in (folder, *folder.parents) if candidate.exists()), Path.cwd())


def check_output_folder(folder: Path) -> None:
    """Refuse, writing nothing, an output folder that cannot be created or written to."""
    existing = existing_part(Path(folder))
    if not existing.is_dir():
        if existing == Path(folder):
            raise OutputFolderError(f"{folder} is a file, not a folder",
                                    "give a folder with -o (it is created if missing), not an existing file")
        raise OutputFolderError(f"{folder} cannot be created: {existing} is a file", "choose another output folder")
    if _read_only(existing):
        raise OutputFolderError(f"{existing} is on a read-only filesystem",
                                "choose an output folder on a writable disk")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputFolderError(f"{existing} is not writable",
                                "choose an output folder you can write to, or change its permissions")


def _read_only(folder: Path) -> bool:
    if not hasattr(os, "statvfs"):  # Windows: os.access and the write itself tell
        return False
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_free_space(folder: Path, largest_case: int, all_cases: int = 0,
                     log: Callable[[str], None] = lambda line: None) -> None:
    """Refuse when the largest case's outputs (worst case, bytes) cannot fit; warn through ``log`` when all of
    them might not (the run then stops cleanly if the disk fills, keeping the finished cases)."""
    existing = existing_part(Path(folder))
    free = shutil.disk_usage(existing).free
    if largest_case > free:
        raise OutputFolderError(
            f"not enough space on {existing}: one case's outputs may need up to {human_bytes(largest_case)}, "
            f"{human_bytes(free)} are free", f"free {human_bytes(largest_case - free)} or choose another output folder")
    if all_cases > free:
        log(f"warning: {existing} has {human_bytes(free)} free; all outputs may need up to {human_bytes(all_cases)} "
            "(the run stops if the disk fills, keeping the finished cases)")


def check_output_name(folder: Path, stem: str) -> None:
    """Refuse a case name that would make output names longer than the filesystem allows."""
    existing = existing_part(Path(folder))
    name_max, path_max = _pathconf(existing, "PC_NAME_MAX", 255), _pathconf(existing, "PC_PATH_MAX", 4096)
    if len(stem.encode()) + NAME_RESERVE > name_max:
        raise SpineSegDiffError(f"the output names for {stem!r} would be longer than the {name_max} characters "
                                f"allowed in {folder}", "rename the input (a shorter name)")
    if len(str(Path(folder).absolute() / stem).encode()) + NAME_RESERVE > path_max:
        raise OutputFolderError(f"the paths of the outputs in {folder} would be longer than {path_max} characters",
                                "choose an output folder with a shorter path")


def _pathconf(folder: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(folder, name)
    except (AttributeError, OSError, ValueError):
        return default


@contextlib.contextmanager
def plain_os_errors(folder: Path, needed_bytes: int = 0) -> Iterator[None]:
    """Turn the operating system's errors while writing into ``folder`` into one message naming it (an
    :class:`OutputFolderError`, or for a too long name a :class:`SpineSegDiffError`); others pass unchanged.
    ``needed_bytes``: what the writes were expected to take, to say how much space to free."""
    try:
        yield
    except OSError as error:
        plain = os_error_message(error.errno, folder, needed_bytes)
        if plain is None:
            raise
        raise plain from None
    except RuntimeError as error:  # SimpleITK's writers: the C library's reason is in the text
        number = next((n for n in _PLAIN_ERRNOS if os.strerror(n).lower() in str(error).lower()), None)
        if number is None:
            raise
        raise os_error_message(number, folder, needed_bytes) from None


_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM}
_PLAIN_ERRNOS = (*_NO_SPACE, *_NOT_WRITABLE, errno.EROFS, errno.ENAMETOOLONG)


def os_error_message(number: int | None, folder: Path, needed_bytes: int = 0) -> SpineSegDiffError | None:
    """The plain message for an ``errno`` raised while writing into ``folder``; None for an unexpected one."""
    if number in _NO_SPACE:
        free = shutil.disk_usage(existing_part(Path(folder))).free
        amount = f"free {human_bytes(max(needed_bytes - free, needed_bytes // 2))}" if needed_bytes else "free space"
        return OutputFolderError(f"no space left on {folder}", f"{amount} or choose another output folder")
    if number in _NOT_WRITABLE:
        return OutputFolderError(f"{folder} is not writable (permission denied)",
                                 "choose an output folder you can write to, or change its permissions")
    if number == errno.EROFS:
        return OutputFolderError(f"{folder} is on a read-only filesystem", "choose an output folder on a writable disk")
    if number == errno.ENAMETOOLONG:
        return SpineSegDiffError(f"a file name in {folder} is too long for its filesystem",
                                 "use a shorter input name or output folder")
    if number in (errno.EEXIST, errno.ENOTDIR):
        return OutputFolderError(f"{folder} (or a folder above it) is a file, not a folder",
                                 "choose another output folder")
    return None
