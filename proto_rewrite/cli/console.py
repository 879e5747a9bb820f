"""Where the CLI writes (:class:`Console`: results on stdout, diagnostics and errors on stderr,
names made printable) and how it stops on SIGTERM (:class:`Terminated`), shared by ``main`` and
the batch workers (``batch``) without either importing the other."""

from __future__ import annotations

import contextlib
import re
import signal
import threading

from proto_rewrite.cli.options import FLAG_SPELLING
from proto_rewrite.terminal import escape_controls


class Console:
    """Where the CLI writes: results on stdout, diagnostics and errors on stderr."""

    def __init__(self, stdout, stderr, verbose: int = 0, quiet: bool = False) -> None:
        self.stdout, self.stderr = stdout, stderr
        self.verbose, self.quiet = verbose, quiet

    def out(self, text: str, *, escaped: bool = False) -> None:
        """``escaped``: the text's names are escaped already and it carries our own escape
        sequences (a coloured diff): only undecodable file-name bytes are escaped here."""
        self.stdout.write(_without_surrogates(text) if escaped else printable(text))

    def info(self, text: str, level: int = 1) -> None:
        if self.verbose >= level and not self.quiet:
            self.stderr.write(printable(text.rstrip("\n")) + "\n")

    def diagnostics(self, items) -> None:
        if self.quiet:
            return
        for item in items:
            if item.level == "warning" or self.verbose:
                shown = item.with_flags(FLAG_SPELLING) if hasattr(item, "with_flags") else item  # options as flags
                self.stderr.write(printable(f"{shown}") + "\n")

    def error(self, text: str) -> None:
        self.stderr.write(printable(text.rstrip("\n")) + "\n")


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def _without_surrogates(text: str) -> str:
    return _SURROGATE.sub(_escape_surrogate, text) if _SURROGATE.search(text) else text


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (lone surrogates, as Python decodes a
    non-UTF-8 name) written as ``\\xNN``: no output stream can encode them as they are."""
    text = _SURROGATE.sub(_escape_surrogate, text) if _SURROGATE.search(text) else text
    return escape_controls(text)  # names from a model may hold terminal escapes (ESC, BEL, C1...)


EXIT_TERMINATED = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, CI cancellation, ``docker stop``), raised where the program is, so that it
    unwinds like an interrupt: temporary files removed, nothing half-written, no traceback."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def terminate_as_interrupt():
    """Treat SIGTERM like SIGINT while the block runs (main thread only; restored after)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
