"""Byte ranges of input files copied into output files, file to file (format-neutral).

The model readers open their input with :func:`open_input`: a memoryview of a
:class:`MappedFile` (an mmap that knows its path and keeps the file open) or, when the file
cannot be mapped (a pipe, a device) or the in-memory path was asked for (:func:`read_into_memory`),
of an :class:`InMemoryFile` (the bytes, read, with the reason). Every numpy array and memoryview
made from that buffer remembers it (``ndarray.base``, ``memoryview.obj``), so :func:`file_span`
tells, for any contiguous view (a reshaped one included), which bytes of which file it is.

:class:`RangeWriter` writes an output file. What it is given that is a view of a mapped input is
copied file to file, never read into this process: ``os.copy_file_range`` (the kernel copies, or
shares the blocks on filesystems that can), else ``os.sendfile``, else ``pread`` + ``write`` a
block at a time. Adjacent copies are merged into one; short ones (a bias, a header) and
everything computed are written from memory.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import mmap
import os
import stat
from dataclasses import dataclass, field

import numpy as np

from proto_rewrite import active_guard
from proto_rewrite.errors import InputFileError

SMALL_COPY = 64 * 1024  # shorter ranges are written from memory: a syscall costs more than the bytes
BLOCK = 8 * 2**20  # the read + write fallback's block, and the most bytes buffered before a write
_MAX_KERNEL_COPY = 2**30  # per call: copy_file_range and sendfile take a size_t, but keep calls short

COPY_FILE_RANGE, SENDFILE, READ_WRITE = "copy_file_range", "sendfile", "read+write"
# Failures that say "this way of copying does not work here", not "the copy failed": try the next way.
_UNSUPPORTED = {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM, errno.ETXTBSY}

_READ_INTO_MEMORY: contextvars.ContextVar[str | None] = contextvars.ContextVar("read_into_memory", default=None)


class MappedFile(mmap.mmap):
    """A whole input file, mapped read-only; it keeps the file open so ranges can be copied from it."""

    path: str
    _file = None
    _address: int | None = None

    @property
    def fd(self) -> int:
        return self._file.fileno()

    @property
    def address(self) -> int:
        if self._address is None:
            self._address = np.frombuffer(self, np.uint8).ctypes.data
        return self._address


class InMemoryFile(bytes):
    """A whole input file read into memory, and why it was not mapped."""

    path: str
    reason: str
    _address: int | None = None

    @property
    def address(self) -> int:
        if self._address is None:
            self._address = np.frombuffer(self, np.uint8).ctypes.data if len(self) else 0
        return self._address


INPUT_FILES = (MappedFile, InMemoryFile)


@dataclass(frozen=True)
class Span:
    """``length`` bytes of the input file ``source`` from ``offset``."""

    source: MappedFile | InMemoryFile
    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


@contextlib.contextmanager
def read_into_memory(reason: str = "the in-memory path was asked for"):
    """Inside this block, :func:`open_input` reads files into memory instead of mapping them."""
    token = _READ_INTO_MEMORY.set(reason)
    try:
        yield
    finally:
        _READ_INTO_MEMORY.reset(token)


def open_input(path: str | os.PathLike, what: str, *, missing_hint: str = "check the path") -> memoryview:
    """The whole file as a read-only buffer: mapped when it can be, else read (an :class:`InMemoryFile`).

    An empty file gives an empty buffer (the caller says what that means). Typed errors name
    the file: not found, a folder, unreadable, not a regular file (refused before it is opened).
    """
    from proto_rewrite.input_guard import require_regular_file

    require_regular_file(path, what)
    try:
        with open(path, "rb", buffering=0) as handle:
            from proto_rewrite.input_guard import lease_input

            # Leased before its size is read: a truncation from now on is announced, not a SIGBUS.
            leased = None if _READ_INTO_MEMORY.get() is not None else lease_input(handle.fileno(), path, what)
            info = os.fstat(handle.fileno())
            active_guard.note_input(handle.fileno(), path, what)
            reason = _READ_INTO_MEMORY.get() or leased
            if reason is None and not stat.S_ISREG(info.st_mode):
                reason = f"the {what} is not a regular file (a pipe or a device): it cannot be mapped"
            if reason is None and info.st_size == 0:
                return memoryview(in_memory_file(b"", path, "the file is empty"))
            if reason is None:
                try:
                    mapped = MappedFile(handle.fileno(), 0, access=mmap.ACCESS_READ)
                except (OSError, ValueError) as err:
                    reason = f"the {what} cannot be memory-mapped ({getattr(err, 'strerror', None) or err})"
                else:
                    mapped.path = os.fspath(path)
                    mapped._file = os.fdopen(os.dup(handle.fileno()), "rb", buffering=0)
                    return memoryview(mapped)
            return memoryview(in_memory_file(handle.read(), path, reason))
    except FileNotFoundError as err:
        raise InputFileError(f"{what} not found", path=path, hint=missing_hint) from err
    except IsADirectoryError as err:
        raise InputFileError(f"{what} is a folder, not a file", path=path) from err
    except OSError as err:
        raise InputFileError(f"cannot read {what}: {err.strerror or err}", path=path) from err


def in_memory_file(data: bytes, path, reason: str) -> InMemoryFile:
    result = InMemoryFile(data)
    result.path = os.fspath(path)
    result.reason = reason
    return result


def source_of(data) -> object:
    """The object at the root of an array's or memoryview's chain of views (a file buffer, or not)."""
    root = data
    while True:
        if isinstance(root, np.ndarray):
            root = root.base
        elif isinstance(root, memoryview):
            root = root.obj
        else:
            return root


def file_span(data) -> Span | None:
    """Where ``data`` (an array or memoryview) is in an input file (mapped or read); None when it
    is not a contiguous view of one (computed, copied, strided)."""
    if isinstance(data, np.ndarray):
        contiguous = data.flags.c_contiguous
    elif isinstance(data, memoryview):
        contiguous = data.c_contiguous
    else:
        return None
    if not contiguous or data.nbytes == 0:
        return None
    root = source_of(data)
    if not isinstance(root, INPUT_FILES):
        return None
    array = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    offset = array.ctypes.data - root.address
    if offset < 0 or offset + data.nbytes > len(root):
        return None
    return Span(root, offset, data.nbytes)


def in_memory_reason(items) -> str | None:
    """Why the in-memory path must run for these arrays / memoryviews: the reason an input they
    come from was read into memory; None when none was."""
    for item in items:
        root = source_of(item)
        if isinstance(root, InMemoryFile):
            return f"{root.path}: {root.reason}"
    return None


def release(span: Span | None) -> None:
    """Drop the pages of ``span`` from this process (after reading them once, as a transpose
    does); the data stays readable, the file's pages stay in the page cache."""
    if span is None or not isinstance(span.source, MappedFile) or not hasattr(mmap, "MADV_DONTNEED"):
        return
    start = span.offset - span.offset % mmap.PAGESIZE
    end = min(len(span.source), -(-span.end // mmap.PAGESIZE) * mmap.PAGESIZE)
    with contextlib.suppress(OSError, ValueError):
        span.source.madvise(mmap.MADV_DONTNEED, start, end - start)


@dataclass
class CopyStats:
    """What a :class:`RangeWriter` did: bytes copied file to file, and how; bytes written."""

    copied: int = 0
    written: int = 0
    methods: tuple[str, ...] = ()

    def add(self, other: CopyStats) -> None:
        self.copied += other.copied
        self.written += other.written
        self.methods = tuple(dict.fromkeys(self.methods + other.methods))


@dataclass
class WriteReport:
    """How a model was written: streaming (ranges copied file to file) or in memory, and why."""

    paths: list[str]
    streaming: bool
    reason: str | None = None  # why the in-memory path ran
    stats: CopyStats = field(default_factory=CopyStats)

    def describe(self) -> str:
        """One line for ``-v``."""
        names = ", ".join(self.paths)
        if not self.streaming:
            return f"{names}: written by the in-memory path (whole message serialized by protobuf): {self.reason}"
        how = f" by {' and '.join(self.stats.methods)}" if self.stats.methods else ""
        return (
            f"{names}: streamed ({_mb(self.stats.copied)} copied file to file{how}, "
            f"{_mb(self.stats.written)} written from memory)"
        )


def _mb(count: int) -> str:
    return f"{count / 1e6:.1f} MB" if count >= 100_000 else f"{count} bytes"


class RangeWriter:
    """Write an output file from memory and from ranges of mapped inputs.

    ``handle`` is an open binary file (or any object with ``write``); the writer owns its
    position until :meth:`finish`. Data given to :meth:`write` that :func:`file_span` places in
    a mapped file is copied from that file; everything else is written from memory.
    """

    def __init__(self, handle) -> None:
        self._handle = handle
        try:
            handle.flush()
            self._fd = handle.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError
            self._fd = None
        self._buffer = bytearray()
        self._pending: Span | None = None
        self._method = COPY_FILE_RANGE if hasattr(os, "copy_file_range") else SENDFILE
        if self._method == SENDFILE and not hasattr(os, "sendfile"):
            self._method = READ_WRITE
        self.stats = CopyStats()

    def write(self, data) -> None:
        span = file_span(data)
        if span is not None:
            self.copy(span)
            return
        if isinstance(data, np.ndarray):
            data = memoryview(np.ascontiguousarray(data)).cast("B")
        self._copy_pending()
        self._write_memory(data)

    def copy(self, span: Span) -> None:
        """Copy ``span`` (merged with the previous copy when it continues it)."""
        pending = self._pending
        if pending is not None and pending.source is span.source and pending.end == span.offset:
            self._pending = Span(span.source, pending.offset, pending.length + span.length)
            return
        self._copy_pending()
        self._pending = span

    def finish(self) -> CopyStats:
        """Everything out to the file (the handle is flushed, not closed)."""
        self._copy_pending()
        self._flush_buffer()
        self._handle.flush()
        return self.stats

    # -- from memory
    def _write_memory(self, data) -> None:
        length = len(data) if not isinstance(data, memoryview) else data.nbytes
        self.stats.written += length
        if length >= BLOCK:
            self._flush_buffer()
            self._raw_write(data)
            return
        self._buffer += data
        if len(self._buffer) >= BLOCK:
            self._flush_buffer()

    def _flush_buffer(self) -> None:
        if self._buffer:
            self._raw_write(self._buffer)
            self._buffer = bytearray()

    def _raw_write(self, data) -> None:
        if self._fd is None:
            self._handle.write(data)
            return
        view = memoryview(data).cast("B")
        while view.nbytes:
            count = os.write(self._fd, view)
            view = view[count:]

    # -- file to file
    def _copy_pending(self) -> None:
        span, self._pending = self._pending, None
        if span is None:
            return
        if span.length < SMALL_COPY or not isinstance(span.source, MappedFile):
            self._write_memory(memoryview(span.source)[span.offset : span.end])
            return
        self._flush_buffer()
        self.stats.copied += span.length
        offset, remaining = span.offset, span.length
        while remaining:
            count = self._copy_some(span.source, offset, remaining)
            offset += count
            remaining -= count

    def _copy_some(self, source: MappedFile, offset: int, remaining: int) -> int:
        """Copy up to ``remaining`` bytes from ``offset`` the best way that works; return how many."""
        size = min(remaining, _MAX_KERNEL_COPY)
        if self._fd is not None and self._method in (COPY_FILE_RANGE, SENDFILE):
            try:
                if self._method == COPY_FILE_RANGE:
                    count = os.copy_file_range(source.fd, self._fd, size, offset)
                else:
                    count = os.sendfile(self._fd, source.fd, offset, size)
            except OSError as err:
                if err.errno not in _UNSUPPORTED:
                    raise
                count = 0
            if count > 0:
                self._used(self._method)
                return count
            self._method = SENDFILE if self._method == COPY_FILE_RANGE and hasattr(os, "sendfile") else READ_WRITE
            return 0
        size = min(remaining, BLOCK)
        if hasattr(os, "pread"):
            block = os.pread(source.fd, size, offset)
        else:  # no pread (Windows): through the mapping, then drop the pages again
            block = bytes(memoryview(source)[offset : offset + size])
            release(Span(source, offset, len(block)))
        if not block:
            raise OSError(errno.EIO, f"'{source.path}' is shorter than when it was read")
        self._raw_write(block)
        self._used(READ_WRITE)
        return len(block)

    def _used(self, method: str) -> None:
        if method not in self.stats.methods:
            self.stats.methods += (method,)
