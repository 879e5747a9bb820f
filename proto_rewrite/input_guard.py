"""Checks on an input path made before it is opened for reading.

A FIFO opened for reading blocks until some other process writes to it; ``/dev/zero`` and
``/dev/urandom`` never end. Every model, weights, schema, plan and inputs file goes through
:func:`require_regular_file` first: it looks at the path with ``stat`` (never ``open``) and
refuses anything that is not a regular file, and a file over a size limit, with a typed error
naming the file. A path that does not exist or is a folder is left to the caller, which says so
in its own words.
"""

from __future__ import annotations

import os
import stat

from proto_rewrite.errors import InputFileError

_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind_of(mode: int) -> str:
    for test, name in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def require_regular_file(path, what: str) -> os.stat_result | None:
    """The ``stat`` of ``path`` when it is a regular file (symlinks followed); None when it does not
    exist or is a folder (the caller's open says so). Anything else (a pipe, a device, a socket)
    raises :class:`InputFileError` naming the file, before anything opens it."""
    try:
        info = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        raise InputFileError(f"cannot read {what}: {err.strerror or err}", path=path) from err
    except ValueError as err:  # an embedded NUL byte in the path
        raise InputFileError(f"cannot read {what}: {err}", path=path) from err
    if stat.S_ISDIR(info.st_mode):
        return None
    if not stat.S_ISREG(info.st_mode):
        raise InputFileError(
            f"{what} is {kind_of(info.st_mode)}, not a regular file: it is not read (a pipe may block "
            "forever, a device may never end)", path=path,
            hint="save the data to a file first and give that file")
    return info
