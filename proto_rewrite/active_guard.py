"""The output guard active in this context (``output_guard.guarding`` sets it) and the two
notices the readers and writers send it: a file opened for reading, an output renamed into place.

A leaf module, so that the file readers (``filecopy``, ``fileio``) can notify the guard without
importing ``output_guard``, which itself reads ONNX models (``onnx.reader``, ``filecopy``) to
find their external data files.
"""

from __future__ import annotations

import contextlib
import contextvars
import os

# The active ``output_guard.OutputGuard``, or None.
ACTIVE: contextvars.ContextVar = contextvars.ContextVar("output_guard", default=None)


def note_input(fd: int, path: str | os.PathLike, what: str) -> None:
    """Register a file opened for reading (by its open descriptor) with the active guard."""
    guard = ACTIVE.get()
    if guard is not None:
        with contextlib.suppress(OSError):
            guard.add_open_file(fd, path, what)


def note_written(path: str | os.PathLike) -> None:
    """Register an output just renamed into place with the active guard (no output is written twice)."""
    guard = ACTIVE.get()
    if guard is not None:
        guard.add_written(path)
