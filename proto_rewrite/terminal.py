"""Text for a terminal: names read from a model shown, never obeyed.

A layer or node name is whatever the file says: ``"\\x1b]0;pwned\\x07"`` would retitle the
user's terminal, ``"\\x1b[2J"`` clear it, a carriage return overwrite the line before it. Every
line the console prints goes through :func:`escape_controls`: C0 controls (except newline and
tab, which our own text uses), DEL and the C1 controls (U+0080 to U+009F, which some terminals
obey as escape sequences too) are shown as escapes (``\\x1b``, ``\\u009b``). JSON is already
safe (json.dumps escapes them), and its text is unchanged by this.
"""

from __future__ import annotations

import re

_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape(match: re.Match) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """``text`` with every control character but newline and tab written as an escape."""
    return _CONTROLS.sub(_escape, text) if _CONTROLS.search(text) else text
