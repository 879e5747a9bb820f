"""Shapes as text, the two ways reports write them.

:func:`shape_text` is the table form, ``1x3x224x224`` (``?`` for an unknown dimension,
``scalar`` for rank 0, ``?`` for an unknown rank); a shape holding symbolic dimensions is
written in the tuple form instead, since ``1x3xheight`` would not read. :func:`tuple_text` is
the tuple form of messages, ``(1, 3, ?, ?)``.
"""

from __future__ import annotations

from collections.abc import Sequence


def shape_text(shape: Sequence | None, *, scalar: str = "scalar") -> str:
    if shape is None:
        return "?"
    if not len(shape):
        return scalar
    if any(isinstance(d, str) for d in shape):
        return tuple_text(shape)
    return "x".join("?" if d is None else str(d) for d in shape)


def tuple_text(shape: Sequence | None, *, unknown: str = "(unknown)") -> str:
    """``unknown``: the text of an unknown rank. An unknown dimension (None or "") is ``?``."""
    if shape is None:
        return unknown
    return "(" + ", ".join("?" if d is None or d == "" else str(d) for d in shape) + ")"
