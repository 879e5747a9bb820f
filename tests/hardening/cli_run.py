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


def _peak_rss(pid: int) -> int:
    """VmHWM of ``pid``'s own memory since its exec, in bytes (0 when it is gone). Not ru_maxrss:
    that also keeps the RSS the process had as a fork of the (large) test process."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as children:
                    kids = [int(k) for k in children.read().split()]
            except OSError:
                continue
            found += kids
            stack += kids
    return found


def wait_measured(process, timeout: float) -> tuple[int, str, str, int]:
    """Wait for ``process`` (a Popen with text pipes): (exit code, stdout, stderr, the largest peak
    RSS in bytes seen in that process or any process it started), sampled from /proc while it runs.
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
    peak = 0
    while True:
        for pid in [process.pid, *_descendants(process.pid)]:
            peak = max(peak, _peak_rss(pid))
        if process.poll() is not None:
            break
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(process.args, timeout)
        time.sleep(0.01)
    for reader in readers:
        reader.join(timeout)
    return process.returncode, "".join(chunks["out"]), "".join(chunks["err"]), peak


# A CLI run that stops in the middle of writing the output whose file name contains $STALL_ON: it
# writes a little, announces its pid in the file $READY, and waits there to be signalled or killed.
# $NO_TMPFILE: use named temporaries instead of O_TMPFILE.
STALLING_DRIVER = r"""
import os, sys, time
from proto_rewrite import fileio
if os.environ.get("NO_TMPFILE"):
    fileio._O_TMPFILE = None
real_open = fileio.OutputFiles.open

def stalling_open(self, path, mode="wb"):
    handle = real_open(self, path, mode)
    if os.environ["STALL_ON"] in os.path.basename(os.fspath(path)):
        handle.write(b"half" if "b" in mode else "half")
        handle.flush()
        ready = os.environ["READY"]
        with open(ready + ".tmp", "w") as marker:
            marker.write(str(os.getpid()))
        os.replace(ready + ".tmp", ready)
        time.sleep(120)
    return handle

fileio.OutputFiles.open = stalling_open
from proto_rewrite.cli.main import main
sys.exit(main(sys.argv[1:]))
"""
