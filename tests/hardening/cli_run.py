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
