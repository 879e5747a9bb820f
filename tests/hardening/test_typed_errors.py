"""Side inputs and the environment that used to end in an internal error (exit 3, traceback) give a
typed error instead: exit 2, no traceback, naming the file or the variable. A non-UTF-8 file name
is printed escaped (``\\xff``) on a UTF-8 terminal, and written so in reports."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from cli_run import digest, run_cli
from corpus import DATA, ROOT
from google.protobuf import descriptor_pb2

from proto_rewrite.caffe.schema import REQUIRED_MESSAGES
from proto_rewrite.limits import ENV_MAX_TENSOR_BYTES, set_max_tensor_bytes

BAD = DATA / "bad"
GOOD_ONNX = BAD / "good.onnx"
TIMEOUT = 60


def bad_exit(run, *named: str) -> None:
    assert run.code == 2, (run.code, run.stderr)
    assert "Traceback" not in run.stderr and "error: " in run.stderr, run.stderr
    for text in named:
        assert text in run.stderr, run.stderr


PLANS = {
    "list": "[1, 2, 3]",
    "nested-list": "[" * 100_000 + "]" * 100_000,
    "nested-object": '{"a": ' * 100_000 + "1" + "}" * 100_000,
    "string": '"a plan"',
}


@pytest.mark.parametrize("kind", sorted(PLANS))
def test_a_plan_that_is_not_an_object(kind, tmp_path):
    plan = tmp_path / f"{kind}.json"
    plan.write_text(PLANS[kind])
    before = digest(tmp_path)
    bad_exit(run_cli(["validate", GOOD_ONNX, GOOD_ONNX, "--localize", "--plan", plan]), str(plan), "plan")
    bad_exit(run_cli(["diff", GOOD_ONNX, GOOD_ONNX, "--plan", plan]), str(plan), "plan")
    assert digest(tmp_path) == before


@pytest.fixture
def limit_env(monkeypatch):
    set_max_tensor_bytes(None)
    yield monkeypatch
    set_max_tensor_bytes(None)


@pytest.mark.parametrize(
    "value, says",
    [
        ("9" * 400, "too large"),
        ("-5", "not a size"),
        ("garbage", "not a size"),
        ("1e400", "not a size"),
        ("0", "positive"),
        ("\x1b]0;owned\x07", "not a size"),
    ],
    ids=["400-digits", "negative", "garbage", "float-overflow", "zero", "escape-sequence"],
)
def test_a_bad_tensor_limit_in_the_environment(value, says, limit_env):
    limit_env.setenv(ENV_MAX_TENSOR_BYTES, value)
    for argv in (["inspect", GOOD_ONNX], ["convert", GOOD_ONNX, "--dry-run"]):
        run = run_cli(argv)
        bad_exit(run, ENV_MAX_TENSOR_BYTES, says)
        assert "\x1b" not in run.stderr and len(run.stderr) < 600  # quoted as an escaped excerpt


def test_a_large_but_valid_limit_is_exact(limit_env):
    from proto_rewrite.limits import max_tensor_bytes

    limit_env.setenv(ENV_MAX_TENSOR_BYTES, "9007199254740993")  # 2^53 + 1: a float would round it
    assert max_tensor_bytes() == 2**53 + 1
    assert run_cli(["inspect", GOOD_ONNX]).code == 0


def _hollow_schema(path, *, drop=None) -> None:
    """A descriptor set with the right message names and no fields (or, with ``drop``, the bundled
    schema without those LayerParameter fields)."""
    if drop is None:
        file_set = descriptor_pb2.FileDescriptorSet()
        proto = file_set.file.add(name="caffe.proto", package="caffe", syntax="proto2")
        for name in (*REQUIRED_MESSAGES, "InnerProductParameter"):
            proto.message_type.add(name=name)
    else:
        file_set = descriptor_pb2.FileDescriptorSet.FromString(
            (ROOT / "proto_rewrite" / "caffe" / "caffe_descriptor.pb").read_bytes()
        )
        for proto in file_set.file:
            for message in proto.message_type:
                if message.name == "LayerParameter":
                    kept = [f for f in message.field if f.name not in drop]
                    del message.field[:]
                    message.field.extend(kept)
    path.write_bytes(file_set.SerializeToString())


def _cli(argv, **env):
    return subprocess.run(
        [sys.executable, "-m", "proto_rewrite", *map(str, argv)],
        capture_output=True,
        timeout=TIMEOUT,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("drop", [None, ("bottom", "top")], ids=["hollow", "core-fields-missing"])
def test_a_hollow_caffe_schema(drop, tmp_path):
    schema = tmp_path / "fork.pb"
    _hollow_schema(schema, drop=drop)
    shutil.copy(BAD / "good.prototxt", tmp_path / "m.prototxt")
    before = digest(tmp_path)
    for argv in (
        ["inspect", tmp_path / "m.prototxt"],
        ["convert", tmp_path / "m.prototxt", "-o", tmp_path / "o.prototxt"],
        ["export", tmp_path / "m.prototxt", "-o", tmp_path / "o.onnx"],
    ):
        result = _cli([*argv, "--caffe-schema", schema])
        err = result.stderr.decode()
        assert result.returncode == 2, err
        assert "Traceback" not in err and str(schema) in err and "not a usable Caffe schema" in err, err
    assert digest(tmp_path) == before


def test_a_non_utf8_file_name_is_printed_escaped(tmp_path):
    folder = os.fsencode(tmp_path)
    odd = folder + b"/net\xff.onnx"
    shutil.copy(GOOD_ONNX, odd)
    out = folder + b"/out\xfe.onnx"
    env = {"PYTHONIOENCODING": "utf-8"}
    runs = {
        "inspect": _cli(["inspect", os.fsdecode(odd)], **env),
        "convert": _cli(["convert", os.fsdecode(odd), "-o", os.fsdecode(out)], **env),
        "missing": _cli(["convert", os.fsdecode(folder + b"/gone\xff.onnx"), "-o", os.fsdecode(out)], **env),
        "missing-json": _cli(["inspect", os.fsdecode(folder + b"/gone\xff.onnx"), "--format", "json"], **env),
        "diff-html": _cli(
            ["diff", os.fsdecode(odd), GOOD_ONNX, "--format", "html", "-o", os.fsdecode(folder + b"/d\xff.html")], **env
        ),
        "batch": _cli(["convert", os.fsdecode(odd), GOOD_ONNX, "-o", os.fsdecode(folder + b"/dir\xff")], **env),
    }
    expected = {"inspect": 0, "convert": 0, "missing": 2, "missing-json": 2, "diff-html": 0, "batch": 0}
    for name, result in runs.items():
        text = (result.stdout + result.stderr).decode("utf-8")  # valid UTF-8: nothing raw
        assert result.returncode == expected[name], (name, text)
        assert "Traceback" not in text, (name, text)
        assert "\\xff" in text or name == "diff-html" or '"gone\\udcff' in text, (name, text)
    assert os.path.exists(out)
    assert json.loads(runs["missing-json"].stdout)["error"] == "InputFileError"
    assert "net\\xff.onnx" in open(folder + b"/d\xff.html", encoding="utf-8").read()
