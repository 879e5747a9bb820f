"""The one check every output path goes through before anything is written to it.

A side output that names an input destroys it: ``convert --save-plan model.onnx`` would replace
the model with a JSON plan, an output whose external data file is the data file the input reads
would change the input's numbers, and ``-o /dev/null`` would replace the device node with a
regular file. :func:`check_output` refuses, with an :class:`~proto_rewrite.errors.OutputError`
naming the path as it was given:

* a path that is one of the command's inputs: compared by file identity (device and inode), so
  every spelling (``./x``, ``../dir/x``, a symlink, a hard link) is the same file;
* a character or block device, a named pipe (FIFO), a socket, a folder;
* a file name longer than its folder allows (NAME_MAX).

The inputs are collected per command in an :class:`OutputGuard` made active with
:func:`guarding` (the CLI does it where it parses the arguments) and completed as files are read:
every file opened by :func:`proto_rewrite.filecopy.open_input` or
:func:`proto_rewrite.fileio.read_bytes` (a caffemodel found beside its prototxt, the external data
files of an ONNX model) is registered with :func:`note_input`. The check runs when an output file
is opened and again just before it is renamed into place.

``convert --in-place`` lets the converted model (and its weights or external data) replace the
model it came from: :meth:`OutputGuard.replacing` around the model's save. Nothing else may.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from proto_rewrite.active_guard import ACTIVE, note_input, note_written  # noqa: F401 - re-exported
from proto_rewrite.errors import OutputError
from proto_rewrite.formats import is_onnx_path

_SPECIAL = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)

Identity = tuple[int, int]


def identity_of(path: str | os.PathLike) -> Identity | None:
    """(st_dev, st_ino) of the file ``path`` names (symlinks followed); None when there is none."""
    try:
        info = os.stat(path)
    except (OSError, ValueError):
        return None
    return info.st_dev, info.st_ino


@dataclass
class _Input:
    path: str
    what: str


@dataclass
class OutputGuard:
    """The inputs of one command, by file identity, and the outputs it may replace."""

    inputs: dict[Identity, _Input] = field(default_factory=dict)
    replaceable: set[Identity] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # said by the CLI on stderr (stale temporaries removed)
    written: dict[Identity, str] = field(default_factory=dict)  # the outputs this command wrote
    unscanned: list[str] = field(default_factory=list)  # ONNX inputs whose external data is not yet known

    def add_written(self, path: str | os.PathLike) -> None:
        key = identity_of(path)
        if key is not None:
            self.written[key] = os.fspath(path)

    def add_input(self, path: str | os.PathLike | None, what: str = "an input") -> None:
        if path is None:
            return
        key = identity_of(path)
        if key is not None and not stat.S_ISDIR(os.stat(path).st_mode):
            self.inputs.setdefault(key, _Input(os.fspath(path), what))
            if is_onnx_path(path):
                self.unscanned.append(os.fspath(path))

    def scan_external_data(self) -> None:
        """Add the external data files the ONNX inputs name (read when an output would replace an
        existing file: the command may hand the model to onnxruntime, which reads them itself)."""
        while self.unscanned:
            path = self.unscanned.pop()
            with contextlib.suppress(Exception):  # a bad model is the command's to report, in its words
                from proto_rewrite.filecopy import open_input
                from proto_rewrite.onnx.reader import split_model

                buffer = open_input(path, "ONNX model")
                _, tensors = split_model(buffer, path=path, base_dir=os.path.dirname(os.path.abspath(path)))
                for tensor in tensors:
                    if tensor.is_external:
                        self.add_input(tensor.external_info()[0], "external data file")

    def add_open_file(self, fd: int, path: str | os.PathLike, what: str) -> None:
        info = os.fstat(fd)
        self.inputs.setdefault((info.st_dev, info.st_ino), _Input(os.fspath(path), what))

    def copy(self) -> OutputGuard:
        return OutputGuard(
            dict(self.inputs), set(self.replaceable), self.notes, dict(self.written), list(self.unscanned)
        )

    @contextlib.contextmanager
    def replacing(self, paths: Iterable[str | os.PathLike | None], *, data_files_beside: bool = True) -> Iterator[None]:
        """Inside the block, the files ``paths`` name may be replaced by outputs (``--in-place``),
        and with ``data_files_beside`` also the external data files read beside them."""
        keys = {key for key in (identity_of(p) for p in paths if p) if key is not None}
        if data_files_beside:
            folders = {os.path.dirname(os.path.abspath(p)) for p in paths if p}
            keys |= {
                key
                for key, item in self.inputs.items()
                if item.what == "external data file" and os.path.dirname(os.path.abspath(item.path)) in folders
            }
        added = keys - self.replaceable
        self.replaceable |= added
        try:
            yield
        finally:
            self.replaceable -= added


_ACTIVE = ACTIVE  # the active OutputGuard or None (in active_guard, which the file readers notify)


@contextlib.contextmanager
def guarding(
    inputs: Iterable[tuple[str | os.PathLike | None, str]] = (), *, inherit: bool = True
) -> Iterator[OutputGuard]:
    """Make a guard active for the block; ``inputs``: (path, what) pairs. With ``inherit`` the
    inputs of the guard active around this block are kept (a model of a batch)."""
    outer = _ACTIVE.get()
    guard = outer.copy() if (outer is not None and inherit) else OutputGuard()
    for path, what in inputs:
        guard.add_input(path, what)
    token = _ACTIVE.set(guard)
    try:
        yield guard
    finally:
        _ACTIVE.reset(token)


def active() -> OutputGuard | None:
    return _ACTIVE.get()


def add_note(text: str) -> None:
    guard = _ACTIVE.get()
    if guard is not None:
        guard.notes.append(text)


def name_max(folder: str | os.PathLike) -> int:
    try:
        return os.pathconf(folder or ".", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # no pathconf (Windows): the common limit
        return 255


def check_output(path: str | os.PathLike) -> None:
    """Raise :class:`OutputError` when ``path`` must not be written (see the module's doc)."""
    shown = os.fspath(path)
    try:
        info = os.stat(path)
    except FileNotFoundError:
        info = None
    except NotADirectoryError as err:
        raise OutputError(
            f"cannot write '{shown}': a part of the path is not a folder",
            path=shown,
            hint="choose an output path inside an existing folder",
        ) from err
    except OSError:  # not allowed to look: the write itself will say why it fails
        info = None
    except ValueError as err:  # an embedded NUL byte
        raise OutputError(f"cannot write '{shown}': {err}", path=shown, hint="choose another output path") from err
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise OutputError(
                f"cannot write '{shown}': it is a folder", path=shown, hint="give a file name, not a folder"
            )
        for test, kind in _SPECIAL:
            if test(info.st_mode):
                raise OutputError(
                    f"cannot write '{shown}': it is {kind}, not a regular file; proto-rewrite "
                    "writes a new file and renames it into place, which would replace the "
                    f"{kind.split(' ', 1)[1]} itself",
                    path=shown,
                    hint="give the path of a regular file (a pipe or a device is never an output)",
                )
        guard = _ACTIVE.get()
        key = (info.st_dev, info.st_ino)
        if guard is not None and key not in guard.inputs and guard.unscanned and stat.S_ISREG(info.st_mode):
            guard.scan_external_data()
        if guard is not None and key in guard.written:
            raise OutputError(
                f"cannot write '{shown}': this run has already written it ('{guard.written[key]}'); "
                "two outputs have the same path",
                path=shown,
                hint="give each output its own path",
            )
        if guard is not None and key in guard.inputs and key not in guard.replaceable:
            source = guard.inputs[key]
            same = "" if os.path.abspath(source.path) == os.path.abspath(shown) else f" '{source.path}'"
            raise OutputError(
                f"output '{shown}' is also an input ({source.what}{same}): writing it would destroy that input",
                path=shown,
                hint="choose another output path (in_place lets the converted model "
                "replace its own model file, nothing else)",
                options=("in_place",),
            )
    name = os.path.basename(shown)
    limit = name_max(os.path.dirname(shown) or ".")
    if len(os.fsencode(name)) > limit:
        raise OutputError(
            f"cannot write '{shown}': the file name is {len(os.fsencode(name))} bytes, over the "
            f"folder's limit of {limit}",
            path=shown,
            hint="choose a shorter file name",
        )


def may_replace(allowed: bool, *paths: str | os.PathLike | None):
    """``--in-place``: a block in which the outputs may replace the files ``paths`` (and the
    external data read beside them); a no-op context when not ``allowed`` or no guard is active."""
    guard = _ACTIVE.get()
    if not allowed or guard is None:
        return contextlib.nullcontext()
    return guard.replacing(paths)
