"""File helpers shared by every format: atomic output, reading with clear errors."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from proto_rewrite.errors import InputFileError, OutputError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class OutputFiles:
    """Write several output files all or nothing.

    ``open(path)`` returns a temporary file beside ``path``. ``commit()`` renames every temporary
    file onto its target; until then nothing is visible, and ``discard()`` (or leaving the
    ``with`` block through an exception) deletes the temporary files and leaves any existing
    targets untouched.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[str, Path]] = []

    def open(self, path: str | os.PathLike, mode: str = "wb"):
        target = Path(path)
        folder = target.parent
        if not folder.is_dir():
            raise OutputError(f"cannot write '{target}': folder '{folder}' does not exist", path=target,
                              hint="create the folder first or choose another output path")
        if target.is_dir():
            raise OutputError(f"cannot write '{target}': it is a folder", path=target,
                              hint="give a file name, not a folder")
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=folder)
        except OSError as err:
            raise OutputError(f"cannot write into '{folder}': {err.strerror}", path=target,
                              hint="check the folder's permissions and free space") from err
        self._pending.append((tmp_name, target))
        return os.fdopen(fd, mode)

    def commit(self) -> None:
        mode = 0o666 & ~_current_umask()
        try:
            while self._pending:
                tmp_name, target = self._pending[0]
                os.chmod(tmp_name, mode)
                os.replace(tmp_name, target)
                self._pending.pop(0)
        except OSError as err:
            self.discard()
            raise OutputError(f"cannot write '{target}': {err.strerror or err}", path=target,
                              hint="check the folder's permissions and free space") from err

    def discard(self) -> None:
        for tmp_name, _ in self._pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
        self._pending.clear()

    def __enter__(self) -> "OutputFiles":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
            return
        targets = [target for _, target in self._pending]
        self.discard()
        if isinstance(exc, OSError) and targets:  # the disk is full, the folder went away...
            raise OutputError(f"writing '{targets[-1]}' failed: {exc.strerror or exc}", path=targets[-1],
                              hint="check the folder's permissions and free space; nothing was written") from exc


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
            hint="is this a binary file? A .caffemodel goes to --weights, the .prototxt is the model",
        ) from err


def read_bytes(path: str | os.PathLike, what: str) -> bytes:
    from proto_rewrite.input_guard import require_regular_file

    require_regular_file(path, what)  # a pipe or a device is refused before it is opened
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError as err:
        raise InputFileError(f"{what} not found", path=path, hint="check the path") from err
    except IsADirectoryError as err:
        raise InputFileError(f"{what} is a folder, not a file", path=path) from err
    except OSError as err:
        raise InputFileError(f"cannot read {what}: {err.strerror}", path=path) from err
