"""Every path the tool writes goes through one guard: an input (by inode, however spelt), a device,
a pipe, a socket or a folder is refused with exit 2, naming the path as given, with nothing written
and every input byte-identical. ``--in-place`` lets the converted model replace its own model file,
nothing else. Temporary names stay within NAME_MAX; stale temporaries of killed runs are removed."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from cli_run import digest, run_cli
from corpus import DATA

from proto_rewrite import fileio

BAD = DATA / "bad"


@pytest.fixture
def work(tmp_path):
    """An input folder with the good models and an ONNX model whose external data file is named
    like the data file of a converted ``c.onnx`` (``c.onnx.data``)."""
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("good.prototxt", "good.caffemodel", "good.onnx"):
        shutil.copy(BAD / name, folder / name)
    model = onnx.load(str(BAD / "good.onnx"))
    onnx.save_model(
        model,
        str(folder / "ext.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="c.onnx.data",
        size_threshold=0,
    )
    assert (folder / "c.onnx.data").is_file()
    return folder


def refused(argv, folder, *, named: str, expect: str = "") -> None:
    """The command fails with exit 2, no traceback, the error naming ``named``; ``folder`` unchanged."""
    before = digest(folder)
    run = run_cli(argv)
    assert run.code == 2, (run.code, run.stderr)
    assert "Traceback" not in run.stderr and "error: " in run.stderr, run.stderr
    assert named in run.stderr, run.stderr
    assert expect in run.stderr, run.stderr
    assert digest(folder) == before
    assert not [p for p in folder.rglob("*.partial")]


def spellings(folder, name):
    """The same file, spelt five ways: as is, ./x, ../dir/x, a symlink, a hard link."""
    target = folder / name
    link = folder.parent / f"link-{name}"
    link.symlink_to(target)
    hard = folder.parent / f"hard-{name}"
    os.link(target, hard)
    return [str(target), f"{folder}/./{name}", f"{folder}/../{folder.name}/{name}", str(link), str(hard)]


def test_save_plan_over_the_model_or_its_weights_is_refused(work, monkeypatch):
    for path in spellings(work, "good.onnx"):
        refused(
            ["convert", work / "good.onnx", "--dry-run", "--save-plan", path],
            work,
            named=path,
            expect="is also an input",
        )
    monkeypatch.chdir(work)
    refused(["convert", "good.onnx", "--dry-run", "--save-plan", "./good.onnx"], work, named="./good.onnx")
    # the caffemodel read by default beside the prototxt is an input too
    for path in spellings(work, "good.caffemodel")[:3]:
        refused(
            ["convert", work / "good.prototxt", "-o", work.parent / "c.prototxt", "--save-plan", path],
            work,
            named=path,
            expect="is also an input",
        )
    assert not (work.parent / "c.prototxt").exists()


def test_save_plan_over_the_input_is_refused_even_in_place(work):
    refused(
        ["convert", work / "good.onnx", "-o", work / "good.onnx", "--in-place", "--save-plan", work / "good.onnx"],
        work,
        named=str(work / "good.onnx"),
    )


def test_external_data_of_the_output_cannot_be_the_inputs_data(work):
    """ext.onnx reads c.onnx.data; converting it to c.onnx would write c.onnx.data."""
    data = work / "c.onnx.data"
    refused(["convert", work / "ext.onnx", "-o", work / "c.onnx"], work, named=str(data), expect="is also an input")
    assert not (work / "c.onnx").exists()
    # the input still computes what it computed
    feed = {
        i.name: np.ones([d.dim_value or 1 for d in i.type.tensor_type.shape.dim], np.float32)
        for i in onnx.load(str(work / "ext.onnx"), load_external_data=False).graph.input
    }
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    a = ort.InferenceSession(str(work / "ext.onnx"), options).run(None, feed)
    b = ort.InferenceSession(str(BAD / "good.onnx"), options).run(None, feed)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_in_place_still_replaces_the_model_and_its_data(work):
    source = work / "ext.onnx"
    run = run_cli(["convert", source, "-o", source, "--in-place"])
    assert run.code == 0, run.stderr
    onnx.checker.check_model(str(source), full_check=True)
    assert not list(work.glob(".*partial"))


@pytest.mark.parametrize("device", ["/dev/null", "/dev/zero"])
def test_a_device_is_never_an_output(device, work):
    info = os.stat(device)
    refused(["convert", work / "good.onnx", "-o", device], work, named=device, expect="character device")
    refused(["convert", work / "good.onnx", "--dry-run", "--save-plan", device], work, named=device)
    refused(["export", work / "good.prototxt", "-o", device], work, named=device)
    refused(["init-weights", work / "good.prototxt", "-o", device], work, named=device)
    after = os.stat(device)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == info.st_rdev


def test_pipe_socket_and_folder_are_refused(work, tmp_path):
    fifo = tmp_path / "fifo.onnx"
    os.mkfifo(fifo)
    refused(["convert", work / "good.onnx", "-o", fifo], work, named=str(fifo), expect="named pipe")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    sock_path = tmp_path / "s.onnx"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        refused(["convert", work / "good.onnx", "-o", sock_path], work, named=str(sock_path), expect="socket")
    folder = tmp_path / "dir.json"
    folder.mkdir()
    refused(
        ["convert", work / "good.onnx", "--dry-run", "--save-plan", folder], work, named=str(folder), expect="folder"
    )


def test_every_writer_refuses_an_input(work, tmp_path):
    good_onnx, proto, weights = work / "good.onnx", work / "good.prototxt", work / "good.caffemodel"
    hard = tmp_path / "hard.onnx"
    os.link(weights, hard)
    # export: the output is a hard link to the weights: the error names the output
    refused(["export", proto, "-o", hard], work, named=str(hard), expect="input")
    refused(["init-weights", proto, "-o", proto], work, named=str(proto))
    refused(["validate", good_onnx, good_onnx, "--save-inputs", good_onnx], work, named=str(good_onnx))
    refused(["validate", good_onnx, good_onnx, "--save-outputs", good_onnx], work, named=str(good_onnx))
    refused(["diff", good_onnx, good_onnx, "-o", good_onnx], work, named=str(good_onnx))
    refused(["convert", proto, "-o", tmp_path / "c.prototxt", "--output-weights", proto], work, named=str(proto))
    refused(["convert", proto, "-o", weights], work, named=str(weights))
    assert not (tmp_path / "c.prototxt").exists()


def test_two_outputs_with_one_path_are_refused(work, tmp_path):
    out = tmp_path / "c.onnx"
    refused(["convert", work / "good.onnx", "-o", out, "--save-plan", out], work, named=str(out))
    assert not out.exists()


def test_a_batch_into_its_own_folder_replaces_nothing(work):
    before = digest(work)
    run = run_cli(["convert", work / "good.onnx", work / "good.prototxt", "-o", work])
    assert run.code == 2, run.stderr
    assert "Traceback" not in run.stderr and "is also an input" in run.stderr
    assert digest(work) == before


def test_a_250_byte_output_name_works(work, tmp_path):
    name = "n" * 245 + ".onnx"
    assert len(name) == 250
    out = tmp_path / name
    run = run_cli(["convert", work / "good.onnx", "-o", out, "--save-plan", tmp_path / ("p" * 245 + ".json")])
    assert run.code == 0, run.stderr
    onnx.checker.check_model(str(out), full_check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in", name, "p" * 245 + ".json"])
    # a name over NAME_MAX is the user's: refused up front, clearly
    long = tmp_path / ("x" * 300 + ".onnx")
    refused(["convert", work / "good.onnx", "-o", long], work, named="file name is", expect="limit of")


def test_temporary_names_stay_within_name_max(tmp_path):
    for length in (1, 100, 228, 229, 250, 255):
        name = fileio.temporary_name(tmp_path / ("a" * length))
        assert len(os.fsencode(name)) <= 255 and name.startswith(".") and name.endswith(".partial")
    odd = fileio.temporary_name(tmp_path / os.fsdecode(b"\xff" * 250))
    assert len(os.fsencode(odd)) <= 255


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_a_killed_run_are_removed_and_said(work, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    stale = out / f".c.onnx.prw{dead}-abc123.partial"
    stale.write_bytes(b"half a model")
    live = out / f".c.onnx.prw{os.getppid()}-abc123.partial"  # a live process's: kept
    live.write_bytes(b"being written")
    other = out / ".c.onnx.XXXX.partial"  # not ours: kept
    other.write_bytes(b"someone else's")
    fileio._cleaned.clear()
    run = run_cli(["convert", work / "good.onnx", "-o", out / "c.onnx"])
    assert run.code == 0, run.stderr
    assert not stale.exists() and live.exists() and other.exists()
    assert str(stale) in run.stderr and "did not finish" in run.stderr and str(dead) in run.stderr


def test_without_anonymous_files_the_named_temporaries_work(work, tmp_path, monkeypatch):
    monkeypatch.setattr(fileio, "_O_TMPFILE", None)
    out = tmp_path / "c.prototxt"
    run = run_cli(["convert", work / "good.prototxt", "-o", out])
    assert run.code == 0, run.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.caffemodel", "c.prototxt", "in"]


def test_validate_never_writes_over_the_external_data_it_compares(work):
    data = work / "c.onnx.data"
    for option in ("--save-inputs", "--save-outputs"):
        refused(
            ["validate", work / "ext.onnx", work / "good.onnx", option, data],
            work,
            named=str(data),
            expect="external data file",
        )
    refused(["diff", work / "ext.onnx", work / "good.onnx", "-o", data], work, named=str(data))


def test_the_library_writer_refuses_devices_and_folders_without_a_cli(tmp_path):
    from proto_rewrite.errors import OutputError
    from proto_rewrite.fileio import atomic_output

    for path in ("/dev/null", tmp_path):
        with pytest.raises(OutputError, match="cannot write"), atomic_output(path) as handle:
            handle.write(b"x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and list(tmp_path.iterdir()) == []


def test_the_guard_compares_files_not_spellings(tmp_path):
    from proto_rewrite import output_guard
    from proto_rewrite.errors import OutputError
    from proto_rewrite.fileio import atomic_output

    source = tmp_path / "model.onnx"
    source.write_bytes(b"model bytes")
    os.link(source, tmp_path / "other-name.bin")
    with output_guard.guarding([(str(source), "the model")]) as guard:
        with pytest.raises(OutputError, match="is also an input"), atomic_output(tmp_path / "other-name.bin") as out:
            out.write(b"x")
        with guard.replacing([str(source)]), atomic_output(source) as out:
            out.write(b"new model")
        assert source.read_bytes() == b"new model"
    assert (tmp_path / "other-name.bin").read_bytes() == b"model bytes"
