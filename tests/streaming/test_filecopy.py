"""filecopy: where a view's bytes are in its input file, and copying those ranges file to file."""

import errno
import io
import os

import numpy as np
import pytest

from proto_rewrite import filecopy
from proto_rewrite.errors import InputFileError
from proto_rewrite.filecopy import (
    SMALL_COPY,
    CopyStats,
    InMemoryFile,
    MappedFile,
    RangeWriter,
    Span,
    WriteReport,
    file_span,
    in_memory_reason,
    open_input,
    read_into_memory,
)

SIZE = 4 * SMALL_COPY


@pytest.fixture
def source(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, SIZE, dtype=np.uint8).tobytes()
    path = tmp_path / "source.bin"
    path.write_bytes(data)
    return path, data


def test_views_of_a_mapped_file_know_where_they_are(source):
    path, _ = source
    buffer = open_input(path, "test file")
    assert isinstance(buffer.obj, MappedFile)
    values = np.frombuffer(buffer, "<f4", count=1024, offset=64)
    assert file_span(values) == Span(buffer.obj, 64, 4096)
    assert file_span(values.reshape(16, 8, 8)) == Span(buffer.obj, 64, 4096)  # a reshape: same bytes
    assert file_span(memoryview(values).cast("B")) == Span(buffer.obj, 64, 4096)
    assert file_span(buffer[100:200]) == Span(buffer.obj, 100, 100)
    assert file_span(values.reshape(32, 32)[:, :4]) is None  # strided
    assert file_span(np.ascontiguousarray(values.reshape(32, 32).T)) is None  # computed
    assert file_span(values.copy()) is None
    assert file_span(b"bytes") is None and file_span(values[:0]) is None


def _write_with(tmp_path, pieces, name="out.bin"):
    out = tmp_path / name
    with open(out, "wb") as handle:
        writer = RangeWriter(handle)
        for piece in pieces:
            writer.write(piece)
        stats = writer.finish()
    return out.read_bytes(), stats


def test_ranges_are_copied_and_adjacent_ones_merged(tmp_path, source):
    path, data = source
    buffer = open_input(path, "test file")
    half = SIZE // 2
    pieces = [b"head", buffer[:half], buffer[half:], np.arange(3, dtype="<i4"), buffer[10:20], b"tail"]
    out, stats = _write_with(tmp_path, pieces)
    assert out == b"head" + data + np.arange(3, dtype="<i4").tobytes() + data[10:20] + b"tail"
    assert stats.copied == SIZE  # one merged copy; the 10-byte range is written from memory
    assert stats.written == 4 + 12 + 10 + 4
    if hasattr(os, "copy_file_range"):
        assert stats.methods == ("copy_file_range",)


@pytest.mark.parametrize("broken", [("copy_file_range",), ("copy_file_range", "sendfile")])
def test_falls_back_when_the_kernel_copy_is_refused(tmp_path, source, monkeypatch, broken):
    path, data = source
    for name in broken:
        if hasattr(os, name):
            monkeypatch.setattr(os, name, _refuse)
    out, stats = _write_with(tmp_path, [b"<", open_input(path, "test file"), b">"])
    assert out == b"<" + data + b">"
    expected = "sendfile" if len(broken) == 1 and hasattr(os, "sendfile") else "read+write"
    assert stats.methods == (expected,) and stats.copied == SIZE


def test_a_kernel_copy_that_copies_nothing_falls_back(tmp_path, source, monkeypatch):
    path, data = source
    monkeypatch.setattr(os, "copy_file_range", lambda *args: 0, raising=False)
    out, stats = _write_with(tmp_path, [open_input(path, "test file")])
    assert out == data and "copy_file_range" not in stats.methods


def test_real_errors_are_not_swallowed(tmp_path, source, monkeypatch):
    path, _ = source

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "copy_file_range", full, raising=False)
    with pytest.raises(OSError, match="No space"):
        _write_with(tmp_path, [open_input(path, "test file")])


def _refuse(*args):
    raise OSError(errno.EXDEV, "Invalid cross-device link")


def test_a_handle_without_a_file_descriptor_gets_the_bytes(source):
    path, data = source
    assert path.read_bytes() == data
    handle = io.BytesIO()
    writer = RangeWriter(handle)
    writer.write(b"x")
    writer.write(open_input(path, "test file"))
    stats = writer.finish()
    assert handle.getvalue() == b"x" + data and stats.methods == ("read+write",)


def test_a_pipe_is_refused_and_a_file_read_into_memory_is_located(tmp_path, source):
    path, data = source
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)  # nobody writes to it: opening it for reading would block forever
    with pytest.raises(InputFileError, match="named pipe"):
        open_input(fifo, "test file")
    with read_into_memory("not a regular file, say"):
        buffer = open_input(path, "test file")
    assert isinstance(buffer.obj, InMemoryFile) and bytes(buffer) == data
    values = np.frombuffer(buffer, "u1", count=100, offset=50)
    assert file_span(values) == Span(buffer.obj, 50, 100)  # still located: both paths lay out alike
    assert "not a regular file" in in_memory_reason([values])
    out, stats = _write_with(tmp_path, [buffer])
    assert out == data and stats.copied == 0 and stats.written == SIZE


def test_in_memory_can_be_asked_for(source):
    path, data = source
    with read_into_memory("asked"):
        buffer = open_input(path, "test file")
    assert isinstance(buffer.obj, InMemoryFile) and buffer.obj.reason == "asked" and bytes(buffer) == data
    assert in_memory_reason([np.frombuffer(buffer, "u1")]).endswith("asked")
    assert isinstance(open_input(path, "test file").obj, MappedFile)  # only inside the block
    assert in_memory_reason([np.zeros(3), b"x"]) is None


def test_released_pages_stay_readable(source):
    path, data = source
    buffer = open_input(path, "test file")
    values = np.frombuffer(buffer, "u1")
    total = int(values.sum())
    filecopy.release(file_span(values[100 : SIZE - 100]))
    assert int(values.sum()) == total and values.tobytes() == data


def test_open_input_errors(tmp_path):
    with pytest.raises(InputFileError, match="test file not found"):
        open_input(tmp_path / "absent", "test file")
    with pytest.raises(InputFileError, match="folder"):
        open_input(tmp_path, "test file")
    (tmp_path / "empty").write_bytes(b"")
    assert open_input(tmp_path / "empty", "test file").nbytes == 0


def test_report_lines():
    streamed = WriteReport(
        ["out.onnx"], True, stats=CopyStats(copied=553_400_000, written=39_546, methods=("copy_file_range",))
    )
    assert streamed.describe() == (
        "out.onnx: streamed (553.4 MB copied file to file by copy_file_range, 39546 bytes written from memory)"
    )
    fallback = WriteReport(["a.caffemodel"], False, "p.caffemodel: not a regular file")
    assert fallback.describe().startswith("a.caffemodel: written by the in-memory path")
    assert fallback.describe().endswith("p.caffemodel: not a regular file")
