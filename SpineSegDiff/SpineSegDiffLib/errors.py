"""The one exception type users see: what is wrong and what to do about it."""

from __future__ import annotations


class SpineSegDiffError(Exception):
    """A problem the user can fix (bad input, missing model, existing output...).

    The CLI prints ``str(error)`` without a traceback and exits non-zero; the Slicer module shows it
    in a message box. ``hint`` says what to do.
    """

    def __init__(self, problem: str, hint: str = "") -> None:
        self.problem = problem
        self.hint = hint
        super().__init__(f"{problem}\n  -> {hint}" if hint else problem)


class Cancelled(SpineSegDiffError):
    """The user cancelled a running job."""

    def __init__(self) -> None:
        super().__init__("cancelled by the user")


class OutputFolderError(SpineSegDiffError):
    """The output folder cannot take the results: it is a file, not writable, on a read-only or full disk, or a
    name in it is too long. The command line exits with status 2; a batch stops (later cases would fail the
    same way) and keeps what it finished."""
