"""A run killed in the middle of writing its output: SIGTERM (``timeout``, CI cancellation,
``docker stop``) is handled like SIGINT: exit 143 (SIGINT 130), no traceback, no output and no
temporary file left, inputs byte-identical. After SIGKILL nothing is visible at the output path
(an anonymous O_TMPFILE file); where the filesystem has no O_TMPFILE the hidden ``.partial`` left
behind is removed, and said, by the next run that writes into that folder.

Each test runs the CLI in a subprocess whose writer stops after its first bytes (a patched
``OutputFiles.open`` writes a marker file and sleeps), and signals it from the test."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from cli_run import STALLING_DRIVER, digest, wait_measured
from corpus import DATA

BAD = DATA / "bad"
MEMORY = 2 * 2**30  # bytes: the bound on every run's peak RSS
TIMEOUT = 60  # seconds: the bound on every run


@pytest.fixture
def models(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("good.prototxt", "good.caffemodel", "good.onnx"):
        shutil.copy(BAD / name, folder / name)
    return folder


def start(argv, tmp_path, stall_on: str, **env) -> tuple[subprocess.Popen, int]:
    """Start the CLI; return it and the pid of the process that is mid-write, once it is."""
    driver = tmp_path / "driver.py"
    driver.write_text(STALLING_DRIVER)
    ready = tmp_path / "ready"
    environ = {**os.environ, "STALL_ON": stall_on, "READY": str(ready), **env}
    process = subprocess.Popen(
        [sys.executable, str(driver), *map(str, argv)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + TIMEOUT
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"the run never reached its write (exit {process.returncode}): {err}")
        time.sleep(0.02)
    return process, int(ready.read_text())


def finish(process) -> tuple[int, str]:
    try:
        code, _, err, peak = wait_measured(process, TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail("the run did not end after the signal")
    assert peak < MEMORY, f"the run peaked at {peak / 2**20:.0f} MiB"
    return code, err


COMMANDS = {
    "convert onnx": (["convert", "{in}/good.onnx", "-o", "{out}/c.onnx"], "c.onnx"),
    "convert caffe": (["convert", "{in}/good.prototxt", "-o", "{out}/c.prototxt"], "c.caffemodel"),
    "export": (["export", "{in}/good.prototxt", "-o", "{out}/e.onnx"], "e.onnx"),
    "save-plan": (["convert", "{in}/good.onnx", "--dry-run", "--save-plan", "{out}/plan.json"], "plan.json"),
}


def _argv(command, models, out):
    argv, stall_on = COMMANDS[command]
    return [a.replace("{in}", str(models)).replace("{out}", str(out)) for a in argv], stall_on


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["TERM", "INT"])
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_terminate_and_interrupt_leave_nothing(command, signum, code, models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    before = digest(models)
    argv, stall_on = _argv(command, models, out)
    process, pid = start(argv, tmp_path, stall_on)
    os.kill(pid, signum)
    returncode, err = finish(process)
    assert returncode == code, err
    assert "Traceback" not in err
    assert ("terminated" if signum == signal.SIGTERM else "interrupted") in err
    assert digest(out) == {}  # no output, no temporary file
    assert digest(models) == before


@pytest.mark.parametrize("anonymous", [True, False], ids=["O_TMPFILE", "named-temporary"])
def test_after_sigkill_nothing_is_visible_or_the_next_run_cleans_up(anonymous, models, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    before = digest(models)
    argv, stall_on = _argv("convert onnx", models, out)
    process, pid = start(argv, tmp_path, stall_on, **({} if anonymous else {"NO_TMPFILE": "1"}))
    os.kill(pid, signal.SIGKILL)
    returncode, _ = finish(process)
    assert returncode == -signal.SIGKILL
    left = sorted(p.name for p in out.iterdir())
    assert digest(models) == before
    assert "c.onnx" not in left
    if anonymous and _anonymous_files_work(out):
        assert left == []
        return
    assert len(left) == 1 and left[0].startswith(".c.onnx.prw") and left[0].endswith(".partial")
    rerun = subprocess.run(
        [sys.executable, "-m", "proto_rewrite", *argv], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert rerun.returncode == 0, rerun.stderr
    assert left[0] in rerun.stderr and "did not finish" in rerun.stderr
    assert sorted(p.name for p in out.iterdir()) == ["c.onnx"]
    assert digest(models) == before


def _anonymous_files_work(folder) -> bool:
    from proto_rewrite import fileio

    return fileio._O_TMPFILE is not None and fileio._anonymous_files_work(folder)
