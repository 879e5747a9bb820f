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

_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


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
            "forever, a device may never end)",
            path=path,
            hint="save the data to a file first and give that file",
        )
    return info


# --- inputs changed while they are read ----------------------------------------------------------
# The readers memory-map their inputs. A file truncated by another process while mapped would
# kill this process with SIGBUS at the next read of a page past the new end. Inside
# :func:`watch_inputs` (the CLI runs every command in it), each mapped input gets a read lease
# (Linux F_SETLEASE): the kernel then holds any other process that opens the file for writing or
# truncates it (for up to /proc/sys/fs/lease-break-time seconds) and tells this one first, with
# SIGIO. The handler raises :class:`InputChangedError` naming the file; the command stops with exit
# 2 (its outputs, not yet renamed into place, are discarded), the leases go, the writer proceeds.
# A file that is open for writing already cannot be leased: it is read into memory instead.
# Where leases are not available (not the file's owner, a filesystem without them, not the main
# thread), inputs are mapped as before.

import contextlib  # noqa: E402
import errno  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402

try:
    import fcntl
except ImportError:  # not Linux / POSIX
    fcntl = None

F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
F_GETLEASE = getattr(fcntl, "F_GETLEASE", 1025)
_leases: dict[int, tuple[str, str]] = {}  # our own duplicate of a leased fd -> (path, what)
_watching = False


class InputChangedError(InputFileError):
    """An input file was opened for writing or truncated by another process while being read."""


def _on_lease_break(signum, frame) -> None:
    for fd, (path, what) in list(_leases.items()):
        try:
            breaking = fcntl.fcntl(fd, F_GETLEASE) == fcntl.F_UNLCK
        except OSError:
            continue
        if breaking:
            raise InputChangedError(
                f"{what} was opened for writing or truncated by another process while proto-rewrite was "
                "reading it: the results would not be the file's",
                path=path,
                hint="run again once the file is complete; outputs not yet in place were discarded",
            )


@contextlib.contextmanager
def watch_inputs():
    """Inside this block, inputs mapped by :func:`proto_rewrite.filecopy.open_input` are leased
    (see above); on leaving, every lease is released."""
    global _watching
    usable = (
        fcntl is not None
        and hasattr(signal, "SIGIO")
        and not _watching
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return
    previous = signal.signal(signal.SIGIO, _on_lease_break)
    _watching = True
    try:
        yield
    finally:
        _watching = False
        for fd in list(_leases):
            with contextlib.suppress(OSError):
                fcntl.fcntl(fd, F_SETLEASE, fcntl.F_UNLCK)
            with contextlib.suppress(OSError):
                os.close(fd)
        _leases.clear()
        signal.signal(signal.SIGIO, previous)


def lease_input(fd: int, path, what: str) -> str | None:
    """Take a read lease on the open file ``fd`` before it is mapped. Returns None when it is
    leased or leases are off (map it), or why it must be read into memory instead."""
    if not _watching:
        return None
    try:
        fcntl.fcntl(fd, F_SETLEASE, fcntl.F_RDLCK)
    except OSError as err:
        if err.errno == errno.EAGAIN:  # someone has it open for writing right now
            return f"the {what} is open for writing in another process: it is read into memory, not mapped"
        return None  # not the owner, or no leases on this filesystem: mapped as before
    try:
        _leases[os.dup(fd)] = (os.fspath(path), what)
    except OSError:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, F_SETLEASE, fcntl.F_UNLCK)
        return f"the {what} could not be leased: it is read into memory, not mapped"
    return None
