"""Running the CLI in-process the way the hardening tests need it: exit code, stdout, stderr,
bounded in time; hashes of folders, to show that inputs are untouched and nothing was left."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from proto_rewrite.cli import main


class ExampleTimeout(BaseException):
    """Raised in the middle of a run that took too long. A BaseException, so that the CLI's
    catch-all (which turns Exceptions into exit 3) lets it through to the test."""


@contextlib.contextmanager
def time_limit(seconds: float):
    """Interrupt the block after ``seconds`` (main thread, POSIX; elsewhere: no limit)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):
        raise ExampleTimeout(f"took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str


def run_cli(argv: list[str], seconds: float = 60) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with time_limit(seconds):
        code = main([str(a) for a in argv], stdout=out, stderr=err)
    return Run(code, out.getvalue(), err.getvalue())


def digest(folder: Path) -> dict[str, str]:
    """Every entry under ``folder``: a file's sha256, a link's target."""
    result = {}
    for path in sorted(Path(folder).rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            result[key] = "-> " + os.readlink(path)
        elif path.is_file():
            result[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            result[key] = "dir"
    return result


def wait_measured(process, timeout: float) -> tuple[int, str, str, int]:
    """Wait for ``process`` (a Popen with text pipes): (exit code, stdout, stderr, the peak RSS in
    bytes of that process and of the children it waited for). Reaped with wait4, so the peak is
    this process's own, not that of every child the test session ever started (RUSAGE_CHILDREN).
    Raises subprocess.TimeoutExpired after ``timeout`` seconds."""
    import subprocess
    import time

    chunks: dict[str, list[str]] = {"out": [], "err": []}
    readers = []
    for key, stream in (("out", process.stdout), ("err", process.stderr)):
        if stream is not None:
            reader = threading.Thread(target=lambda s=stream, k=key: chunks[k].append(s.read()), daemon=True)
            reader.start()
            readers.append(reader)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(process.args, timeout)
        time.sleep(0.01)
    process.returncode = os.waitstatus_to_exitcode(status)
    for reader in readers:
        reader.join(timeout)
    return process.returncode, "".join(chunks["out"]), "".join(chunks["err"]), usage.ru_maxrss * 1024
