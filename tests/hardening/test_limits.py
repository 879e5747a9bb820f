"""Declared shapes that would need absurd memory are refused before anything is allocated, with a
limit set by --max-tensor-bytes, else PROTO_REWRITE_MAX_TENSOR_BYTES, else 16 GiB per tensor."""

from __future__ import annotations

import json
import tracemalloc

import pytest
from cli_run import run_cli
from corpus import DATA

from proto_rewrite.errors import TensorTooLargeError, UsageError
from proto_rewrite.limits import (
    DEFAULT_MAX_TENSOR_BYTES,
    ENV_MAX_TENSOR_BYTES,
    check_tensor_size,
    max_tensor_bytes,
    parse_size,
    set_max_tensor_bytes,
)

BAD = DATA / "bad"
GOOD = BAD / "good.prototxt"


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    monkeypatch.delenv(ENV_MAX_TENSOR_BYTES, raising=False)
    set_max_tensor_bytes(None)
    yield
    set_max_tensor_bytes(None)


@pytest.mark.parametrize(
    "text, value",
    [
        ("1000", 1000),
        ("64M", 64 * 10**6),
        ("64MB", 64 * 10**6),
        ("16GiB", 16 * 2**30),
        ("1.5k", 1500),
        ("2 Ti", 2 * 2**40),
        ("512kib", 512 * 1024),
    ],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "0", "-5", "12 parsecs", "1e9"])
def test_parse_size_refuses(text):
    with pytest.raises(UsageError):
        parse_size(text)


def test_limit_sources(monkeypatch):
    assert max_tensor_bytes() == DEFAULT_MAX_TENSOR_BYTES
    monkeypatch.setenv(ENV_MAX_TENSOR_BYTES, "1M")
    assert max_tensor_bytes() == 10**6
    set_max_tensor_bytes("2M")
    assert max_tensor_bytes() == 2 * 10**6  # the option wins over the environment
    set_max_tensor_bytes(None)
    assert max_tensor_bytes() == 10**6


def test_a_calls_limits_are_its_own(tmp_path):
    """Limits given to one library call end with it, and threads loading with different limits at
    the same time each see their own (no process-wide setting)."""
    import threading

    import proto_rewrite as pr

    with pytest.raises(TensorTooLargeError):
        pr.load(GOOD, max_tensor_bytes=64)
    assert max_tensor_bytes() == DEFAULT_MAX_TENSOR_BYTES
    barrier, seen = threading.Barrier(2), {}

    def worker(name, limit):
        from proto_rewrite import limits

        with limits.scoped():
            set_max_tensor_bytes(limit)
            barrier.wait()  # both limits are set before either is read
            seen[name] = max_tensor_bytes()

    threads = [threading.Thread(target=worker, args=(name, limit)) for name, limit in (("a", 1000), ("b", 2000))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {"a": 1000, "b": 2000} and max_tensor_bytes() == DEFAULT_MAX_TENSOR_BYTES


def test_check_tensor_size_names_the_tensor():
    check_tensor_size((4, 4), 4, "x")
    set_max_tensor_bytes(63)
    with pytest.raises(TensorTooLargeError) as info:
        check_tensor_size((4, 4), 4, "output 'conv'", path="net.prototxt", line=7, layer="conv")
    err = info.value
    assert "output 'conv'" in err.message and "4x4" in err.message and "64 bytes" in err.message
    assert err.location.line == 7 and "max_tensor_bytes or" in err.hint
    assert "--max-tensor-bytes or" in err.with_flags().hint


def _json_error(run):
    assert run.code == 2 and "Traceback" not in run.stderr, run.stderr
    return json.loads(run.stdout)


def test_option_refuses_a_small_model():
    report = _json_error(run_cli(["inspect", GOOD, "--no-weights", "--max-tensor-bytes", "100", "--format", "json"]))
    assert report["error"] == "TensorTooLargeError" and report["layer"] == "data" and report["line"] == 2
    assert run_cli(["inspect", GOOD, "--no-weights", "--max-tensor-bytes", "1K"]).code == 0
    assert run_cli(["inspect", GOOD, "--no-weights"]).code == 0  # the next run is back to the default


def test_environment_variable(monkeypatch):
    monkeypatch.setenv(ENV_MAX_TENSOR_BYTES, "100")
    assert (
        _json_error(run_cli(["convert", GOOD, "--no-weights", "--dry-run", "--format", "json"]))["error"]
        == "TensorTooLargeError"
    )
    assert run_cli(["convert", GOOD, "--no-weights", "--dry-run", "--max-tensor-bytes", "1M"]).code == 0
    monkeypatch.setenv(ENV_MAX_TENSOR_BYTES, "lots")
    assert _json_error(run_cli(["inspect", GOOD, "--no-weights", "--format", "json"]))["error"] == "UsageError"


def test_validate_refuses_a_random_input_over_the_limit():
    run = run_cli(["validate", BAD / "good.onnx", BAD / "good.onnx", "--max-tensor-bytes", "100", "--format", "json"])
    report = _json_error(run)
    assert report["error"] == "TensorTooLargeError" and "input 'data'" in report["message"]
    assert report["path"].endswith("good.onnx")


@pytest.mark.parametrize(
    "argv",
    [
        ["export", BAD / "pt_huge_fc.prototxt", "-o", "{out}/e.onnx"],
        ["init-weights", BAD / "pt_huge_fc.prototxt", "-o", "{out}/w.caffemodel"],
        ["inspect", BAD / "pt_huge_input.prototxt", "--no-weights"],
        ["validate", BAD / "ox_huge_input.onnx", BAD / "ox_huge_input.onnx"],
    ],
    ids=["export", "init-weights", "inspect", "validate"],
)
def test_absurd_shapes_are_refused_before_allocating(argv, tmp_path):
    tracemalloc.start()
    try:
        run = run_cli([str(a).format(out=tmp_path) for a in argv])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert run.code == 2
    assert "over the limit" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert peak < 64 * 2**20
    assert list(tmp_path.iterdir()) == []
