"""A batch whose worker process is killed (the out-of-memory killer sends SIGKILL): that model fails
with a record naming it and saying how its process ended, the other models are converted and
reported, the exit code is the worst of all (2), no traceback, no temporary file left, inputs
byte-identical. SIGTERM to the batch stops every worker and leaves nothing.

The worker that converts ``victim.onnx`` stops in the middle of its write (a patched
``OutputFiles.open``) and writes its pid; the test kills that process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from cli_run import STALLING_DRIVER, digest, wait_measured
from corpus import DATA, ROOT

BAD = DATA / "bad"
MEMORY = 2 * 2**30  # bytes: the bound on every run's peak RSS
TIMEOUT = 90


@pytest.fixture
def batch(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(BAD / "good.onnx", folder / "victim.onnx")
    shutil.copy(BAD / "good.onnx", folder / "a.onnx")
    shutil.copy(ROOT / "samples" / "onnx" / "vgg_mini.onnx", folder / "z.onnx")
    shutil.copy(BAD / "good.prototxt", folder / "m.prototxt")
    shutil.copy(BAD / "good.caffemodel", folder / "m.caffemodel")
    return folder


def start(argv, tmp_path, **env):
    driver = tmp_path / "driver.py"
    driver.write_text(STALLING_DRIVER)
    ready = tmp_path / "ready"
    process = subprocess.Popen(
        [sys.executable, str(driver), *map(str, argv)],
        env={**os.environ, "STALL_ON": "victim.onnx", "READY": str(ready), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            pytest.fail(f"the batch never reached victim.onnx's write (exit {process.returncode}): {err}")
        time.sleep(0.02)
    return process, int(ready.read_text())


def finish(process):
    try:
        code, out, err, peak = wait_measured(process, TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the batch did not end")
    assert peak < MEMORY, f"the batch (with its workers) peaked at {peak / 2**20:.0f} MiB"
    return code, out, err


@pytest.mark.parametrize("anonymous", [True, False], ids=["O_TMPFILE", "named-temporary"])
def test_a_killed_worker_fails_its_model_only(anonymous, batch, tmp_path):
    out = tmp_path / "out"
    before = digest(batch)
    process, pid = start(
        ["convert", batch, "-o", out, "--jobs", "2", "--format", "json"],
        tmp_path,
        **({} if anonymous else {"NO_TMPFILE": "1"}),
    )
    assert pid != process.pid  # a worker, not the batch
    os.kill(pid, signal.SIGKILL)
    code, stdout, stderr = finish(process)
    assert code == 2, stderr
    assert "Traceback" not in stderr and "BrokenProcessPool" not in stderr
    records = {os.path.basename(r["model"]): r for r in map(json.loads, stdout.splitlines())}
    assert sorted(records) == ["a.onnx", "m.prototxt", "victim.onnx", "z.onnx"]
    victim = records["victim.onnx"]
    assert victim["status"] == "error" and victim["exit_code"] == 2
    assert "SIGKILL" in victim["error"]["message"] and victim["error"]["path"].endswith("victim.onnx")
    assert "victim.onnx" in stderr
    for name in ("a.onnx", "m.prototxt", "z.onnx"):
        assert records[name]["status"] == "converted", records[name]
    assert sorted(p.name for p in out.iterdir()) == ["a.onnx", "m.caffemodel", "m.prototxt", "z.onnx"]
    assert digest(batch) == before


def test_sigterm_stops_the_whole_batch_and_leaves_nothing(batch, tmp_path):
    out = tmp_path / "out"
    before = digest(batch)
    process, _ = start(["convert", batch, "-o", out, "--jobs", "2"], tmp_path, NO_TMPFILE="1")
    os.kill(process.pid, signal.SIGTERM)
    code, _, stderr = finish(process)
    assert code == 143, stderr
    assert "Traceback" not in stderr and "terminated" in stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".partial") or p.name == "victim.onnx"]
    assert digest(batch) == before
