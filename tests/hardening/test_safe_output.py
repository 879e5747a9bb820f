"""Outputs appear whole or not at all, and never replace an input unless asked.

Every command writes to a temporary file in the target folder and renames it into place. Here
each writer fails in the middle of its output (the disk fills up, a bug, an interrupt): the
target folder must hold nothing new, no temporary file either, an existing target keeps its old
bytes, and the inputs are untouched. An output path naming an input is refused unless
``--in-place`` (convert), for Caffe and ONNX alike, however the path is spelt.
"""

from __future__ import annotations

import errno
import io
import shutil

import onnx
import pytest
from cli_run import digest, run_cli
from corpus import DATA

from proto_rewrite.fileio import OutputFiles

BAD = DATA / "bad"


class FailingFile:
    """A writable file that fails after ``budget`` bytes (``fileno`` is hidden, so that the
    streaming writers write through it instead of around it)."""

    def __init__(self, handle, budget: int, error: BaseException) -> None:
        self._handle, self._budget, self._error = handle, budget, error

    def write(self, data):
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        if size > self._budget:
            self._handle.write(data[: self._budget])
            raise self._error
        self._budget -= size
        return self._handle.write(data)

    def fileno(self):
        raise io.UnsupportedOperation("fileno")

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


ERRORS = {  # a fresh exception per test: a raised one carries its traceback along
    "disk full": (lambda: OSError(errno.ENOSPC, "No space left on device"), 2),
    "bug": (lambda: RuntimeError("a bug in a writer"), 3),
    "interrupt": (lambda: KeyboardInterrupt(), 130),
}


@pytest.fixture
def models(tmp_path):
    """The good models, copied into an input folder of their own."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("good.prototxt", "good.caffemodel", "good.onnx", "ox_ext_good.onnx", "ox_ext_good.bin"):
        shutil.copy(BAD / name, folder / name)
    return folder


COMMANDS = {
    "convert caffe": ["convert", "{in}/good.prototxt", "--weights", "{in}/good.caffemodel", "-o", "{out}/c.prototxt"],
    "convert onnx": ["convert", "{in}/good.onnx", "-o", "{out}/c.onnx"],
    "convert onnx external": ["convert", "{in}/ox_ext_good.onnx", "-o", "{out}/c.onnx"],
    "export": ["export", "{in}/good.prototxt", "--weights", "{in}/good.caffemodel", "-o", "{out}/e.onnx"],
    "save-plan": ["convert", "{in}/good.onnx", "--dry-run", "--save-plan", "{out}/plan.json"],
    "diff -o": ["diff", "{in}/good.onnx", "{in}/ox_ext_good.onnx", "-o", "{out}/diff.html", "--format", "html"],
    "validate --save-inputs": ["validate", "{in}/good.onnx", "{in}/good.onnx", "--save-inputs", "{out}/in.npz"],
}


def _argv(command: str, folder, out) -> list[str]:
    return [a.replace("{in}", str(folder)).replace("{out}", str(out)) for a in COMMANDS[command]]


@pytest.mark.parametrize("budget", [0, 100], ids=["at-once", "mid-write"])
@pytest.mark.parametrize("error", sorted(ERRORS))
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_failed_write_leaves_nothing(command, error, budget, models, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("an unrelated file")
    before_in, before_out = digest(models), digest(out)
    real_open = OutputFiles.open
    make_error, code = ERRORS[error]

    def failing_open(self, path, mode="wb"):
        return FailingFile(real_open(self, path, mode), budget, make_error())

    monkeypatch.setattr(OutputFiles, "open", failing_open)
    run = run_cli(_argv(command, models, out))
    assert run.code == code, run.stderr
    if code == 2:
        assert "Traceback" not in run.stderr and "error: " in run.stderr
        assert "No space left" in run.stderr
    assert digest(out) == before_out  # no output, no temporary file
    assert digest(models) == before_in


@pytest.mark.parametrize("command", ["convert caffe", "convert onnx", "export"])
def test_a_failed_write_keeps_the_old_output(command, models, tmp_path, monkeypatch):
    """The target exists from an earlier run: a failing run leaves its bytes as they were."""
    out = tmp_path / "out"
    out.mkdir()
    assert run_cli(_argv(command, models, out)).code == 0
    before = digest(out)
    real_open = OutputFiles.open
    monkeypatch.setattr(
        OutputFiles,
        "open",
        lambda self, path, mode="wb": FailingFile(
            real_open(self, path, mode), 50, OSError(errno.EIO, "Input/output error")
        ),
    )
    assert run_cli(_argv(command, models, out)).code == 2
    assert digest(out) == before


def test_a_failing_rename_leaves_nothing(models, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    import os

    def refuse(src, dst):
        raise PermissionError(errno.EACCES, "Permission denied", dst)

    monkeypatch.setattr(os, "replace", refuse)
    run = run_cli(_argv("convert onnx", models, out))
    assert run.code == 2 and "Traceback" not in run.stderr, run.stderr
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    "model, extra",
    [
        ("good.onnx", []),
        ("good.prototxt", ["--weights", "{in}/good.caffemodel"]),
    ],
    ids=["onnx", "caffe"],
)
def test_output_over_input_is_refused_unless_in_place(model, extra, models, tmp_path):
    source = models / model
    spellings = [source, models / "." / model, models.parent / "in" / ".." / "in" / model]
    link = tmp_path / f"link{source.suffix}"
    link.symlink_to(source)
    spellings.append(link)
    extra = [a.replace("{in}", str(models)) for a in extra]
    before = digest(models)
    for output in spellings:
        run = run_cli(["convert", source, *extra, "-o", output])
        assert run.code == 2 and "is also an input" in run.stderr and "--in-place" in run.stderr, run.stderr
        assert digest(models) == before
    run = run_cli(["convert", source, *extra, "-o", source, "--in-place"])
    assert run.code == 0, run.stderr
    assert digest(models) != before  # replaced, whole
    if model.endswith(".onnx"):
        onnx.checker.check_model(onnx.load(str(source)), full_check=True)
    else:
        assert run_cli(["inspect", source, *extra]).code == 0


def test_in_place_conversion_of_external_data_keeps_a_readable_model(models):
    source = models / "ox_ext_good.onnx"
    run = run_cli(["convert", source, "-o", source, "--in-place"])
    assert run.code == 0, run.stderr
    assert run_cli(["validate", BAD / "good.onnx", source]).code == 0
