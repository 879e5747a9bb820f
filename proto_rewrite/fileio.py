"""File helpers shared by every format: atomic output, reading with clear errors.

Outputs are never written in place. :class:`OutputFiles` writes each one to an anonymous file in
the target's folder (``O_TMPFILE``, Linux): nothing is visible under any name until ``commit()``
links it under a hidden temporary name and renames that onto the target, so even a process killed
with SIGKILL leaves nothing behind. Where the filesystem has no ``O_TMPFILE`` the file is a hidden
``.NAME.prw<PID>-XXXXXX.partial`` from the start; one left by a killed process (its pid is dead) is
removed, and said (:func:`proto_rewrite.output_guard.add_note`), the next time the tool writes into
that folder. Every target goes through :func:`proto_rewrite.output_guard.check_output` first.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import os
import re
import secrets
import signal
import threading
from pathlib import Path

from proto_rewrite import output_guard
from proto_rewrite.errors import InputFileError, OutputError

PARTIAL_SUFFIX = ".partial"
_PARTIAL = re.compile(r"^\..*\.prw(\d+)-[0-9a-z]{6}\.partial$", re.DOTALL)
_TAG_BYTES = len(".prw4194304-xxxxxx.partial") + 1  # the pid has at most 7 digits (pid_max 2^22)
_O_TMPFILE = getattr(os, "O_TMPFILE", None) if os.path.isdir("/proc/self/fd") else None
_NO_TMPFILE = {errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT, errno.ENOTSUP}
_cleaned: set[str] = set()


ESCAPE_ERRORS = "proto_rewrite.escape"


def _escape_unencodable(err: UnicodeError):
    """Codec error handler: an undecodable byte of a file name (a lone surrogate) as ``\\xNN``,
    as the CLI prints it; anything else unencodable as ``\\uNNNN``."""
    if not isinstance(err, UnicodeEncodeError):
        raise err
    text = "".join(
        f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else f"\\u{ord(c):04x}"
        for c in err.object[err.start : err.end]
    )
    return text, err.end


codecs.register_error(ESCAPE_ERRORS, _escape_unencodable)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def temporary_name(target: Path) -> str:
    """A hidden name beside ``target`` for its temporary file, within the folder's NAME_MAX: the
    target's name (shortened when it is long), this process's pid, a random tag."""
    limit = output_guard.name_max(target.parent)
    name = os.fsencode(target.name)[: max(1, limit - _TAG_BYTES)]
    return os.fsdecode(b"." + name) + f".prw{os.getpid()}-{secrets.token_hex(3)}{PARTIAL_SUFFIX}"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # not ours to judge
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # alive, another user's
    return True


def remove_stale_partials(folder: str | os.PathLike, pids: set[int] | None = None) -> list[str]:
    """Remove the temporary files of proto-rewrite in ``folder`` that belong to dead processes
    (or, with ``pids``, to those processes); the paths removed. Only files of this user."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _PARTIAL.match(entry.name)
        if not match:
            continue
        pid = int(match.group(1))
        if pids is not None and pid not in pids:
            continue
        if pids is None and (pid == os.getpid() or _pid_alive(pid)):
            continue
        try:
            mine = not hasattr(os, "getuid") or entry.stat(follow_symlinks=False).st_uid == os.getuid()
            if not entry.is_file(follow_symlinks=False) or not mine:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(entry.path)
    return removed


def _clean_folder_once(folder: Path) -> None:
    key = os.path.abspath(folder)
    if key in _cleaned:
        return
    _cleaned.add(key)
    for path in remove_stale_partials(folder):
        pid = _PARTIAL.match(os.path.basename(path)).group(1)
        output_guard.add_note(
            f"removed '{path}', a temporary file left by an earlier proto-rewrite run that "
            f"did not finish (its process, {pid}, is gone: killed or crashed)"
        )


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT / SIGTERM while the outputs are renamed into place (delivered right after)."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


_AT_FDCWD, _AT_EMPTY_PATH = -100, 0x1000
_linkable: dict[int, bool] = {}  # st_dev -> whether an anonymous file can be given a name there


def _link_anonymous(fd: int, name: str) -> None:
    """Give the anonymous (O_TMPFILE) file ``fd`` the name ``name``: linkat through /proc/self/fd,
    else linkat(AT_EMPTY_PATH) (needs CAP_DAC_READ_SEARCH)."""
    try:
        os.link(f"/proc/self/fd/{fd}", name, follow_symlinks=True)
        return
    except OSError as err:
        first = err
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.linkat(fd, b"", _AT_FDCWD, os.fsencode(name), _AT_EMPTY_PATH) == 0:
            return
        code = ctypes.get_errno()
    except (OSError, AttributeError):
        raise first from None
    raise OSError(code, os.strerror(code), name) from first


def _anonymous_files_work(folder: Path) -> bool:
    """Whether O_TMPFILE files can be created in ``folder`` and linked into it (probed once per filesystem)."""
    try:
        device = os.stat(folder).st_dev
    except OSError:
        return False
    if device not in _linkable:
        works = False
        try:
            fd = os.open(folder, _O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError:
            pass
        else:
            name = str(folder / temporary_name(folder / "probe"))
            try:
                _link_anonymous(fd, name)
                os.unlink(name)
                works = True
            except OSError:
                pass
            finally:
                os.close(fd)
        _linkable[device] = works
    return _linkable[device]


class _Pending:
    """One output being written: its target, and either an anonymous file (``keep``: a descriptor
    kept open until commit) or a named temporary file."""

    def __init__(self, target: Path, temp: str | None, keep: int | None) -> None:
        self.target, self.temp, self.keep = target, temp, keep
        self.given = os.fspath(target)

    def materialize(self, mode: int) -> None:
        """Give the anonymous file its temporary name (a hard link from /proc/self/fd)."""
        if self.keep is None:
            os.chmod(self.temp, mode)
            return
        os.fchmod(self.keep, mode)
        name = str(self.target.parent / temporary_name(self.target))
        _link_anonymous(self.keep, name)
        self.temp = name
        os.close(self.keep)
        self.keep = None

    def drop(self) -> None:
        if self.keep is not None:
            with contextlib.suppress(OSError):
                os.close(self.keep)
            self.keep = None
        if self.temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.temp)
            self.temp = None


class OutputFiles:
    """Write several output files all or nothing.

    ``open(path)`` returns a temporary file beside ``path`` (anonymous where the filesystem
    allows). ``commit()`` renames every temporary file onto its target; until then nothing is
    visible, and ``discard()`` (or leaving the ``with`` block through an exception) deletes the
    temporary files and leaves any existing targets untouched. Every target is checked by
    :func:`proto_rewrite.output_guard.check_output` when opened and again before the renames.
    """

    def __init__(self) -> None:
        self._pending: list[_Pending] = []

    def open(self, path: str | os.PathLike, mode: str = "wb"):
        target = Path(path)
        folder = target.parent
        if not folder.is_dir():
            raise OutputError(
                f"cannot write '{target}': folder '{folder}' does not exist",
                path=target,
                hint="create the folder first or choose another output path",
            )
        output_guard.check_output(path)  # the path as given, so that an error names it so
        if any(os.path.abspath(p.target) == os.path.abspath(target) for p in self._pending):
            raise OutputError(
                f"cannot write '{target}' twice in one run: two outputs have the same path",
                path=target,
                hint="give each output its own path",
            )
        _clean_folder_once(folder)
        try:
            fd, pending = self._create(target)
        except OSError as err:
            raise OutputError(
                f"cannot write into '{folder}': {err.strerror or err}",
                path=target,
                hint="check the folder's permissions and free space",
            ) from err
        pending.given = os.fspath(path)
        self._pending.append(pending)
        try:
            if "b" in mode:
                return os.fdopen(fd, mode)
            # text: UTF-8 whatever the locale; an undecodable byte of a file name (a lone surrogate) escaped
            return os.fdopen(fd, mode, encoding="utf-8", errors=ESCAPE_ERRORS)
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _create(target: Path) -> tuple[int, _Pending]:
        folder = target.parent
        if _O_TMPFILE is not None and _anonymous_files_work(folder):
            try:
                fd = os.open(folder, _O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
            except OSError as err:
                if err.errno not in _NO_TMPFILE:
                    raise
            else:
                try:
                    return fd, _Pending(target, None, os.dup(fd))
                except BaseException:
                    os.close(fd)
                    raise
        while True:
            name = str(folder / temporary_name(target))
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            except FileExistsError:
                continue
            return fd, _Pending(target, name, None)

    def commit(self) -> None:
        mode = 0o666 & ~_current_umask()
        target = None
        with _signals_held():
            try:
                for pending in self._pending:
                    target = pending.target
                    output_guard.check_output(pending.given)  # an input read after the open, a file put there meanwhile
                    pending.materialize(mode)
                while self._pending:
                    pending = self._pending[0]
                    target = pending.target
                    os.replace(pending.temp, target)
                    self._pending.pop(0)
                    output_guard.note_written(target)
            except OSError as err:
                self.discard()
                raise OutputError(
                    f"cannot write '{target}': {err.strerror or err}",
                    path=target,
                    hint="check the folder's permissions and free space",
                ) from err
            except BaseException:
                self.discard()
                raise

    def discard(self) -> None:
        with _signals_held():
            for pending in self._pending:
                pending.drop()
            self._pending.clear()

    def __enter__(self) -> OutputFiles:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
            return
        targets = [pending.target for pending in self._pending]
        self.discard()
        if isinstance(exc, OSError) and targets:  # the disk is full, the folder went away...
            raise OutputError(
                f"writing '{targets[-1]}' failed: {exc.strerror or exc}",
                path=targets[-1],
                hint="check the folder's permissions and free space; nothing was written",
            ) from exc


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, mode: str = "wb"):
    """One output file, written to a temporary file and renamed into place on success."""
    with OutputFiles() as outputs, outputs.open(path, mode) as handle:
        yield handle


def read_text(path: str | os.PathLike, what: str) -> str:
    """Read a UTF-8 text file, or raise :class:`InputFileError` saying why not."""
    data = read_bytes(path, what)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputFileError(
            f"{what} is not UTF-8 text (byte {err.start} is 0x{data[err.start]:02x})",
            path=path,
            hint="is this a binary file? A .caffemodel goes to weights, the .prototxt is the model",
            options=("weights",),
        ) from err


def read_bytes(path: str | os.PathLike, what: str) -> bytes:
    from proto_rewrite.input_guard import require_regular_file

    info = require_regular_file(path, what)  # a pipe or a device is refused before it is opened
    if info is not None:  # a text input (prototxt, plan) over the text limit: refused from its size
        from proto_rewrite.limits import check_text_size

        check_text_size(info.st_size, what, path=path)
    try:
        with open(path, "rb") as handle:
            output_guard.note_input(handle.fileno(), path, what)
            return handle.read()
    except FileNotFoundError as err:
        raise InputFileError(f"{what} not found", path=path, hint="check the path") from err
    except IsADirectoryError as err:
        raise InputFileError(f"{what} is a folder, not a file", path=path) from err
    except OSError as err:
        raise InputFileError(f"cannot read {what}: {err.strerror}", path=path) from err
