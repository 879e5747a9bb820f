"""The hostile-input corpus (tests/data/bad, listed in MANIFEST.json, made by make_bad.py).

Each case runs its command line through the CLI in process and must report the expected typed
error with its exit code: no traceback, nothing written to the output folder, and the corpus
(the input files among it) byte for byte as before. The controls show that the good models the
damaged files come from do pass, so each case fails for its damage and nothing else.
"""

from __future__ import annotations

import collections
import importlib.util
import inspect
import json
import shlex
import sys

import pytest
from cli_run import digest, run_cli
from corpus import DATA

from proto_rewrite import errors
from proto_rewrite.caffe.onnx_export import errors as export_errors

BAD = DATA / "bad"
CASES = json.loads((BAD / "MANIFEST.json").read_text())
FORMATS = ("prototxt", "caffemodel", "onnx")
# Files that are no case of their own: the generator, the manifest, the good models, data files.
HELPERS = {
    "make_bad.py",
    "MANIFEST.json",
    "good.prototxt",
    "ox_ext_good.onnx",
    "ox_ext_good.bin",
    "ox_ext_short.bin",
    "ox_ext_symlink.bin",
}
ERROR_CLASSES = {
    name: cls
    for module in (errors, export_errors)
    for name, cls in inspect.getmembers(module, inspect.isclass)
    if issubclass(cls, errors.ProtoRewriteError)
}


def _ids() -> list[str]:
    seen = collections.Counter()
    ids = []
    for case in CASES:
        key = f"{case['file']}:{case['command'].split()[0]}"
        seen[key] += 1
        ids.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
    return ids


def argv_of(case: dict, out) -> list[str]:
    return shlex.split(case["command"].format(bad=BAD, out=out))


@pytest.mark.parametrize("case", CASES, ids=_ids())
def test_case(case, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    before = digest(BAD)
    run = run_cli(argv_of(case, out) + ["--format", "json"], seconds=60)
    assert run.code == case["exit_code"], run.stderr
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    assert any(line.startswith("error: ") for line in run.stderr.splitlines()), run.stderr
    report = json.loads(run.stdout)
    assert report["error"] == case["error"], report
    assert case["message"] in report["message"], report["message"]
    assert report["hint"], report  # every error says how to fix it
    if case["error"] != "UsageError":  # a bad file: the error names it
        assert report["path"], report
    assert list(out.iterdir()) == []  # nothing written, no temporary file left
    assert digest(BAD) == before  # inputs untouched, nothing new beside them


def test_manifest():
    assert len(CASES) >= 40
    per_format = collections.Counter(case["format"] for case in CASES)
    assert set(per_format) == set(FORMATS) and min(per_format.values()) >= 10, per_format
    for case in CASES:
        assert (BAD / case["file"]).is_file() or (BAD / case["file"]).is_symlink(), case["file"]
        assert case["file"] in case["command"], case
        assert case["error"] in ERROR_CLASSES, case["error"]
        assert ERROR_CLASSES[case["error"]].exit_code == case["exit_code"], case
        assert case["what"]
    used = {case["file"] for case in CASES}
    unused = sorted(p.name for p in BAD.iterdir() if p.name not in used | HELPERS)
    assert unused == []  # every file in the corpus is a case
    sizes = {p.name: p.stat().st_size for p in BAD.iterdir() if p.name in used and not p.is_symlink()}
    assert max(sizes.values()) <= 16 * 1024, sizes  # a few KB each


def _generator():
    spec = importlib.util.spec_from_file_location("make_bad", BAD / "make_bad.py")
    module = importlib.util.module_from_spec(spec)
    writes, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in the corpus
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes
    return module


def test_corpus_is_regenerated_byte_for_byte(tmp_path):
    _generator().write(tmp_path)
    committed = {name: value for name, value in digest(BAD).items() if name != "make_bad.py"}
    assert digest(tmp_path) == committed


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", BAD / "good.prototxt", "--weights", BAD / "good.caffemodel", "-o", "{out}/c.prototxt"],
        ["export", BAD / "good.prototxt", "--weights", BAD / "good.caffemodel", "-o", "{out}/e.onnx"],
        ["convert", BAD / "good.onnx", "-o", "{out}/c.onnx"],
        ["convert", BAD / "ox_ext_good.onnx", "-o", "{out}/c.onnx"],
        [
            "validate",
            BAD / "good.prototxt",
            BAD / "good.prototxt",
            "--weights-a",
            BAD / "good.caffemodel",
            "--weights-b",
            BAD / "good.caffemodel",
        ],
        ["validate", BAD / "good.onnx", BAD / "ox_ext_good.onnx"],
    ],
    ids=["convert-caffe", "export", "convert-onnx", "convert-onnx-external", "validate-caffe", "validate-onnx"],
)
def test_controls_pass(argv, tmp_path):
    run = run_cli([str(a).format(out=tmp_path) for a in argv])
    assert run.code == 0, run.stderr


@pytest.mark.parametrize(
    "file, argv",
    [
        ("cm_nan.caffemodel", ["convert", BAD / "good.prototxt", "--weights", "{file}", "-o", "{out}/c.prototxt"]),
        ("cm_inf.caffemodel", ["export", BAD / "good.prototxt", "--weights", "{file}", "-o", "{out}/e.onnx"]),
        ("ox_nan.onnx", ["convert", "{file}", "-o", "{out}/c.onnx"]),
        ("ox_nan_constant.onnx", ["convert", "{file}", "-o", "{out}/c.onnx"]),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_allow_nonfinite(file, argv, tmp_path):
    argv = [str(a).format(out=tmp_path, file=BAD / file) for a in argv]
    refused = run_cli(argv)
    assert refused.code == 2 and "--allow-nonfinite" in refused.stderr
    assert list(tmp_path.iterdir()) == []
    run = run_cli(argv + ["--allow-nonfinite"])
    assert run.code == 0, run.stderr
    assert list(tmp_path.iterdir())


def test_validate_allow_nonfinite():
    argv = ["validate", BAD / "good.onnx", BAD / "ox_inf.onnx", "--allow-nonfinite"]
    run = run_cli(argv)
    assert run.code in (0, 1) and "Traceback" not in run.stderr, run.stderr  # compared, whatever the verdict


def test_python_layer_is_a_warning_for_inspect_and_never_imported():
    run = run_cli(["inspect", BAD / "pt_python.prototxt", "--weights", BAD / "good.caffemodel"])
    assert run.code == 0, run.stderr
    assert "warning" in run.stderr and "Python layer" in run.stderr
    assert "os_never_imported" not in sys.modules
