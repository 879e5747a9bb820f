"""How much memory a declared shape may ask for, checked before anything is allocated.

A model from a stranger can declare an input of 100000 x 100000 x 100000 values or a layer with
a billion outputs: nothing in the file is that large, but whatever allocates from the declared
shape (random inputs, random weights, shape-sized buffers) would try to. Every such shape goes
through :func:`check_tensor_size` first, which refuses a tensor over the limit with a typed error
naming the layer or input.

The limit is ``--max-tensor-bytes`` on the command line (``max_tensor_bytes=`` of a library call),
else the ``PROTO_REWRITE_MAX_TENSOR_BYTES`` environment variable (read when a limit is checked, never
at import), else :data:`DEFAULT_MAX_TENSOR_BYTES` (16 GiB per tensor).

A limit set by a call holds for that call only (:func:`scoped`) and for its own context: the values
live in a :class:`contextvars.ContextVar`, so two threads (or two asyncio tasks) calling the library
with different limits do not see each other's. A new thread starts from the defaults (the
environment variables): set the limits in the thread that uses them, or pass them to the call.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import os
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from proto_rewrite.errors import TensorTooLargeError, UsageError

ENV_MAX_TENSOR_BYTES = "PROTO_REWRITE_MAX_TENSOR_BYTES"
DEFAULT_MAX_TENSOR_BYTES = 16 * 2**30

_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)
# Environment variable name -> the value set for it in this context (an option, an argument).
# Never mutated: each change sets a new mapping.
_OVERRIDES: contextvars.ContextVar[Mapping[str, int]] = contextvars.ContextVar(
    "proto_rewrite_limits", default=MappingProxyType({})
)


MAX_SIZE = 2**63 - 1  # the most any limit may be set to (a file offset's range)
_SHOWN = 40  # characters of a bad value quoted in its error


def _excerpt(text: str) -> str:
    text = str(text)
    shown = text if len(text) <= _SHOWN else text[:_SHOWN] + f"... ({len(text)} characters)"
    return shown.encode("unicode_escape").decode("ascii")  # control characters and odd bytes escaped


def parse_size(text: str, what: str = "max_tensor_bytes") -> int:
    """``"1000"``, ``"64M"``, ``"16GiB"``... as a number of bytes (K/M/G/T decimal, Ki/Mi/Gi/Ti binary).
    Exact (no float rounding); a value that is not a size, not positive, or over :data:`MAX_SIZE` is a
    :class:`UsageError` naming ``what`` (the option's Python name, or the environment variable)."""
    text = str(text)
    options = (what,) if what.isidentifier() and not what.isupper() else ()  # an option, not a variable
    match = _SIZE.match(text) if len(text) <= 1000 else None
    if not match:
        raise UsageError(
            f"{what} '{_excerpt(text)}' is not a size",
            options=options,
            hint="give a number of bytes, optionally with a unit: 1000000, 500M, 16GiB",
        )
    number, unit = match.groups()
    whole, _, fraction = number.partition(".")
    if len(whole.lstrip("0")) > 30:
        value = MAX_SIZE + 1
    else:
        scale = _UNITS[(unit or "").lower()]
        value = int(whole) * scale + (int(fraction) * scale // 10 ** len(fraction) if fraction else 0)
    if value <= 0:
        raise UsageError(
            f"{what} must be positive, not '{_excerpt(text)}'",
            options=options,
            hint="give a number of bytes, optionally with a unit: 1000000, 500M, 16GiB",
        )
    if value > MAX_SIZE:
        raise UsageError(
            f"{what} '{_excerpt(text)}' is too large (the most is 2^63 - 1 bytes)",
            options=options,
            hint="give a number of bytes, optionally with a unit: 1000000, 500M, 16GiB",
        )
    return value


def _set(env: str, value: int | str | None, option: str) -> None:
    overrides = {name: limit for name, limit in _OVERRIDES.get().items() if name != env}
    if value is not None:
        overrides[env] = value if isinstance(value, int) else parse_size(value, option)
    _OVERRIDES.set(overrides)


def _limit(env: str, default: int) -> int:
    given = _OVERRIDES.get().get(env)
    if given is not None:
        return given
    text = os.environ.get(env)
    if text:
        return parse_size(text, env)
    return default


def set_max_tensor_bytes(value: int | str | None) -> None:
    """Set the tensor limit in this context (None: back to the environment variable or the default)."""
    _set(ENV_MAX_TENSOR_BYTES, value, "max_tensor_bytes")


def max_tensor_bytes() -> int:
    return _limit(ENV_MAX_TENSOR_BYTES, DEFAULT_MAX_TENSOR_BYTES)


def check_tensor_size(shape: Sequence[int | None], itemsize: int, what: str, **where) -> None:
    """Raise :class:`TensorTooLargeError` when a tensor of ``shape`` (unknown dimensions count as
    1) would take more bytes than the limit. ``what`` names it ("output 'conv1'", "input 'data'")."""
    count = math.prod(int(d) for d in shape if d is not None and d > 0)
    needed = count * itemsize
    limit = max_tensor_bytes()
    if needed > limit:
        dims = "x".join(str(d) for d in shape)
        raise TensorTooLargeError(
            f"{what} would have shape {dims}: {format_bytes(needed)}, over the limit of {format_bytes(limit)} "
            "per tensor",
            hint=f"the declared dimensions are probably wrong; if they are right, raise the limit with "
            f"max_tensor_bytes or {ENV_MAX_TENSOR_BYTES}",
            options=("max_tensor_bytes",),
            **where,
        )


def format_bytes(count: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


# --- model text size and random weights -------------------------------------------------------
# Protobuf's text parser alone takes about 18 bytes of memory per byte of prototxt (measured: a
# 2.6 MB prototxt of 40 000 layers, 42 MB), and every later step holds the layers it declares: a
# 200 MB prototxt (3 million layers) runs past a minute and gigabytes. A prototxt over the text limit
# is refused from its size (stat), before it is read. Random weights (init-weights, export and
# validate of a model without weights) are drawn and written one tensor at a time, each within
# the tensor limit, and refused before the first is drawn when all of them together would pass
# the random-weight limit.

ENV_MAX_TEXT_BYTES = "PROTO_REWRITE_MAX_TEXT_BYTES"
DEFAULT_MAX_TEXT_BYTES = 16 * 2**20
ENV_MAX_RANDOM_BYTES = "PROTO_REWRITE_MAX_RANDOM_BYTES"
DEFAULT_MAX_RANDOM_BYTES = 4 * 2**30


def set_max_text_bytes(value: int | str | None) -> None:
    """The model text limit in this context (None: the environment variable or the default)."""
    _set(ENV_MAX_TEXT_BYTES, value, "max_text_bytes")


def set_max_random_bytes(value: int | str | None) -> None:
    """The total random-weight limit in this context (None: the environment variable or the default)."""
    _set(ENV_MAX_RANDOM_BYTES, value, "max_random_bytes")


def max_text_bytes() -> int:
    return _limit(ENV_MAX_TEXT_BYTES, DEFAULT_MAX_TEXT_BYTES)


def max_random_bytes() -> int:
    return _limit(ENV_MAX_RANDOM_BYTES, DEFAULT_MAX_RANDOM_BYTES)


def check_text_size(size: int, what: str, **where) -> None:
    """Refuse a model text file of ``size`` bytes over the text limit (before reading it)."""
    limit = max_text_bytes()
    if size > limit:
        raise TensorTooLargeError(
            f"{what} is {format_bytes(size)}, over the limit of {format_bytes(limit)} for a text input "
            "(a prototxt, a plan: parsing one takes many times its size in memory)",
            hint=f"a deploy prototxt or a plan is rarely over a few MiB; if this one is right, raise the limit with "
            f"max_text_bytes or {ENV_MAX_TEXT_BYTES}",
            options=("max_text_bytes",),
            **where,
        )


def check_random_total(total: int, what: str, **where) -> None:
    """Refuse random weights of ``total`` bytes over the random-weight limit (before drawing any)."""
    limit = max_random_bytes()
    if total > limit:
        raise TensorTooLargeError(
            f"random weights for {what} would take {format_bytes(total)}, over the limit of {format_bytes(limit)} "
            "for random weights",
            hint=f"the declared shapes are probably wrong (check the input shape and "
            f"num_output); if they are right, raise the limit with max_random_bytes "
            f"or {ENV_MAX_RANDOM_BYTES}",
            options=("max_random_bytes",),
            **where,
        )


def check_environment() -> None:
    """Parse every limit set in the environment, so that a bad value is refused (UsageError naming
    the variable) before a command starts, not in the middle of it."""
    for name in (ENV_MAX_TENSOR_BYTES, ENV_MAX_TEXT_BYTES, ENV_MAX_RANDOM_BYTES):
        if os.environ.get(name):
            parse_size(os.environ[name], name)


@contextlib.contextmanager
def scoped():
    """Limits set inside the block (a command's options, a library call's arguments) end with it."""
    token = _OVERRIDES.set(_OVERRIDES.get())
    try:
        yield
    finally:
        _OVERRIDES.reset(token)
