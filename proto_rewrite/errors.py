"""Typed errors. Library code raises these and never prints; the CLI turns them into messages.

Two families:

* :class:`ProtoRewriteError` and its subclasses are *user* errors: a bad file, a mismatch, an
  unsupported request. Each carries where the problem is (file, line, column, layer or node),
  what is wrong, and a ``hint`` with the fix. The CLI shows them without a traceback.
* :class:`InternalError` is a bug in proto-rewrite. The CLI shows it with a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


@dataclass(frozen=True)
class Location:
    """Where in a file something is. Every field is optional."""

    path: str | os.PathLike | None = None
    line: int | None = None
    column: int | None = None
    layer: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.path is not None:
            where = os.fspath(self.path)
            if self.line is not None:
                where += f":{self.line}"
                if self.column is not None:
                    where += f":{self.column}"
            parts.append(where)
        if self.layer is not None:
            parts.append(f"layer '{self.layer}'")
        return ": ".join(parts)


def _text(value):
    """A name read from a hostile file may come as bytes (invalid UTF-8 in a protobuf string):
    show it as text, undecodable bytes escaped."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", errors="backslashreplace")
    return value


def as_flags(text: str, options, spelling: Mapping[str, str] | None = None) -> str:
    """``text`` with each of ``options`` (Python names, whole words not already after a ``-``
    and not quoted: a layer named 'mode' stays as it is) written as a command-line flag:
    ``spelling[name]`` (the CLI's table for flags that are not the name with dashes), else
    ``max_tensor_bytes`` -> ``--max-tensor-bytes``."""
    import re

    for name in options:
        flag = (spelling or {}).get(name, "--" + name.replace("_", "-"))
        text = re.sub(rf"(?<![-\w'\"]){re.escape(name)}(?![\w'\"-])", flag, text)
    return text


class ProtoRewriteError(Exception):
    """A user-facing error: something is wrong with the input or the request.

    ``options``: the Python names of the options the message and hint mention (``input_size``,
    ``max_tensor_bytes``); the CLI shows them as its flags (``--input-size``), see
    :meth:`with_flags`. Library code never names a command-line flag itself."""

    exit_code = EXIT_BAD_INPUT
    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike | None = None,
        line: int | None = None,
        column: int | None = None,
        layer: str | None = None,
        hint: str | None = None,
        options: tuple[str, ...] = (),
    ) -> None:
        message, layer, hint = _text(message), _text(layer), _text(hint)
        super().__init__(message)
        self.message = message
        self.location = Location(path, line, column, layer)
        self.hint = hint
        self.options = tuple(options)

    def with_flags(self, spelling: Mapping[str, str] | None = None) -> ProtoRewriteError:
        """The same error with each option named as a command-line flag (a copy; the error
        itself is unchanged)."""
        if not self.options:
            return self
        shown = type(self).__new__(type(self))  # not through __init__: subclasses take other arguments
        shown.__dict__.update(self.__dict__)
        shown.message = as_flags(self.message, self.options, spelling)
        shown.hint = as_flags(self.hint, self.options, spelling) if self.hint else None
        shown.args = (shown.message,)
        return shown

    def __str__(self) -> str:
        where = str(self.location)
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f"\nHint: {self.hint}"
        return text

    def to_dict(self) -> dict:
        loc = self.location
        return {
            "error": type(self).__name__,
            "message": self.message,
            "path": None if loc.path is None else os.fspath(loc.path),
            "line": loc.line,
            "column": loc.column,
            "layer": loc.layer,
            "hint": self.hint,
        }


class UsageError(ProtoRewriteError):
    """The command line or API call asks for something inconsistent."""


class InputFileError(ProtoRewriteError):
    """A file cannot be read, or is not the kind of file expected."""


class PrototxtSyntaxError(InputFileError):
    """The prototxt is not valid protobuf text format for the Caffe schema."""


class UnknownFieldError(PrototxtSyntaxError):
    """The prototxt names a field the Caffe schema does not have."""


class UnknownLayerTypeError(InputFileError):
    """A layer type that neither BVLC Caffe nor the known forks define (strict mode only)."""


class NetStructureError(InputFileError):
    """The net is well-formed text but not a valid net (duplicate names, missing bottoms...)."""


class UpgradeError(InputFileError):
    """A legacy (V0/V1) definition cannot be upgraded to the current format."""


class CaffemodelError(InputFileError):
    """A .caffemodel is truncated, corrupt, or not a caffemodel."""


class WeightsMismatchError(InputFileError):
    """Weights disagree with the network definition (blob count or shape)."""


class NonFiniteWeightsError(InputFileError):
    """Weights hold NaN or Inf values (refused unless ``allow_nonfinite``)."""


class TensorTooLargeError(InputFileError):
    """A declared shape would need more memory than the limit allows (``max_tensor_bytes``)."""


class WeightShapeError(ProtoRewriteError):
    """A weight does not have the shape (or element count) a rewrite needs."""


class RewriteRefused(ProtoRewriteError):
    """A layer the user asked for by name cannot be rewritten; ``reason`` is the plan's code."""

    def __init__(self, message: str, *, reason: str, **where) -> None:
        super().__init__(message, **where)
        self.reason = reason

    def to_dict(self) -> dict:
        return {**super().to_dict(), "reason": self.reason}


class PlanMismatchError(UsageError):
    """A plan applied to a model it does not fit (another model, a stale or edited plan)."""


class RewriteCheckError(ProtoRewriteError):
    """The rewritten net fails the structural check that follows every rewrite."""


class OutputError(ProtoRewriteError):
    """An output file cannot be written."""


class InternalError(Exception):
    """A bug in proto-rewrite. Reported with a traceback."""

    exit_code = EXIT_INTERNAL
