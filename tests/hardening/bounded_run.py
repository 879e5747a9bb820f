"""The CLI in a subprocess under a memory limit (RLIMIT_AS) and a time limit, for the issue-14
hardening tests: what a run returns, and the checks every refused input must pass."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from cli_run import digest

MEMORY = 2 * 2**30  # bytes of address space: 8 GiB of weights cannot be allocated under it
SECONDS = 60
DRIVER = "import sys; from proto_rewrite.cli.main import main; sys.exit(main(sys.argv[1:]))"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Bounded:
    code: int
    stdout: str
    stderr: str


def run_bounded(
    argv, *, memory: int = MEMORY, seconds: float = SECONDS, env: dict | None = None, driver: str = DRIVER
) -> Bounded:
    """``proto-rewrite ARGV`` in a fresh process limited to ``memory`` bytes and ``seconds``."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    result = subprocess.run(
        [sys.executable, "-c", driver, *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=seconds,
        preexec_fn=limit,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    return Bounded(result.returncode, result.stdout, result.stderr)


def assert_refused(run, named, *, code: int = 2, message: str | None = None) -> None:
    """The promised exit code, no traceback, the file (or name) said, ``message`` in the error."""
    assert run.code == code, (run.code, run.stderr)
    assert "Traceback" not in run.stderr and "internal error" not in run.stderr, run.stderr
    assert str(named) in run.stderr, run.stderr
    if message is not None:
        assert message in run.stderr, run.stderr


def snapshot(*folders) -> dict:
    """Hashes of everything under ``folders``: compare before and after to show that inputs are
    byte-identical and that nothing was left (no output, no temporary file)."""
    return {str(folder): digest(Path(folder)) for folder in folders}
