"""How a weight after a conversion relates to the one before. Pure numpy; knows nothing of files.

``relate(a, b)`` answers, in this order of preference:

* ``identical``: same shape, same dtype, same bytes;
* ``reshaped``: same bytes in a new shape (an FC weight ``(M, C*H*W)`` as a kernel ``(M, C, H, W)``);
* ``transposed``: ``b`` is ``a.T`` reshaped (a ``(K, M)`` weight: Caffe ``transpose``, ONNX
  ``transB=0`` or MatMul);
* ``permuted``: ``b`` is an ``(M, H*W*C)`` weight (maybe transposed) with its kernel axes moved to
  ``(M, C, H, W)``: an FC that read an NHWC-flattened map;
* ``cast``: the same values in another dtype;
* ``scaled``: ``b`` is ``factor * a`` in one of the layouts above (Gemm ``alpha`` / ``beta`` folded);
* ``broadcast``: ``a`` has one element, ``b`` repeats it (times ``factor``, when not 1);
* ``different``: none of these; ``max_abs_diff`` over the same element order when the element
  counts agree, else None.

Arrays are compared a block of rows at a time, so a 150 MB weight never gets a second copy.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

IDENTICAL = "identical"
RESHAPED = "reshaped"
TRANSPOSED = "transposed"
PERMUTED = "permuted"
CAST = "cast"
SCALED = "scaled"
BROADCAST = "broadcast"
DIFFERENT = "different"
UNKNOWN = "unknown"  # the values were not read
ADDED = "added"  # only in b
REMOVED = "removed"  # only in a

SAME_VALUES = frozenset((IDENTICAL, RESHAPED, TRANSPOSED, PERMUTED, CAST))
BLOCK_ELEMENTS = 1 << 20

_LAYOUT_RELATION = {"same": RESHAPED, "transpose": TRANSPOSED, "permute": PERMUTED, "transpose+permute": PERMUTED}


@dataclass(frozen=True)
class Relation:
    kind: str
    layout: str | None = None  # for scaled / cast: "same", "transpose", "permute", "transpose+permute"
    factor: float | None = None  # scaled, broadcast
    max_abs_diff: float | None = None  # different

    def text(self) -> str:
        if self.kind == IDENTICAL:
            return "identical"
        if self.kind == RESHAPED:
            return "same bytes, new shape"
        if self.kind == TRANSPOSED:
            return "transposed"
        if self.kind == PERMUTED:
            return "permuted (channels-last kernel)" + (", transposed" if self.layout == "transpose+permute" else "")
        if self.kind == CAST:
            return "same values, new dtype"
        if self.kind == SCALED:
            layout = {"same": "", "transpose": ", transposed", "permute": ", permuted"}.get(
                self.layout, f", {self.layout}"
            )
            return f"scaled x{_number(self.factor)}{layout}"
        if self.kind == BROADCAST:
            return "broadcast" + ("" if self.factor in (None, 1.0) else f", scaled x{_number(self.factor)}")
        if self.kind == DIFFERENT:
            if self.max_abs_diff is None:
                return "different (element count changed)"
            return f"different (max abs diff {self.max_abs_diff:.3g})"
        if self.kind == UNKNOWN:
            return "values not compared (no weights read)"
        return "only in B" if self.kind == ADDED else "only in A"

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "layout": self.layout,
            "factor": _finite(self.factor),
            "max_abs_diff": _finite(self.max_abs_diff),
            "text": self.text(),
        }


def _finite(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those become null (the text still says them)."""
    return value if value is None or math.isfinite(value) else None


def _number(value: float | None) -> str:
    return "?" if value is None else f"{value:.6g}"


def relate(a: np.ndarray, b: np.ndarray) -> Relation:
    """How ``b`` (after) relates to ``a`` (before)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape == b.shape and a.dtype == b.dtype and _equal(_same(a, b), b):
        return Relation(IDENTICAL)
    if a.size != b.size:
        return _broadcast(a, b) or Relation(DIFFERENT)
    if a.size == 0:
        return Relation(RESHAPED if a.dtype == b.dtype else CAST, "same")
    layouts = list(_layouts(a, b))
    for name, blocks in layouts:
        if a.dtype == b.dtype and _equal(blocks, b):
            return Relation(_LAYOUT_RELATION[name], name)
    numeric = _is_number(a) and _is_number(b)
    for name, blocks in layouts:
        if a.dtype != b.dtype and numeric and _equal(blocks, b, exact_dtype=False):
            return Relation(CAST, name)
    if numeric:
        for name, blocks in layouts:
            factor = _scale_factor(blocks, b)
            if factor is not None:
                return Relation(SCALED, name, factor)
        reverse = _reverse(a, b)
        if reverse is not None:
            return reverse
        return Relation(DIFFERENT, max_abs_diff=_max_abs_diff(_same(a, b), b))
    return Relation(DIFFERENT)


def _reverse(a: np.ndarray, b: np.ndarray) -> Relation | None:
    """A kernel turned back into a (K, M) or NHWC-order FC weight: the relation seen from ``b``."""
    if b.ndim != 2 or a.ndim == 2:
        return None
    back = relate(b, a)
    if back.kind in (TRANSPOSED, PERMUTED):
        return back
    if back.kind == SCALED and back.layout != "same" and back.factor:
        factor = 1.0 / back.factor
        return Relation(
            SCALED, back.layout, float(np.asarray(factor, dtype=b.dtype)) if b.dtype.kind == "f" else factor
        )
    return None


# ---------------------------------------------------------------------------------------------
# Layouts: each gives ``a`` in ``b``'s element order, as blocks of rows of ``b`` viewed as 2-D.


def _rows(b: np.ndarray) -> int:
    return b.shape[0] if b.ndim else 1


def _as_matrix(array: np.ndarray, rows: int) -> np.ndarray:
    return array.reshape(rows, -1) if array.size else array.reshape(rows, 0)


def _block_size(b: np.ndarray) -> int:
    return max(1, BLOCK_ELEMENTS // max(1, b.size // max(1, _rows(b))))


def _same(a, b):
    """``a`` reshaped to ``b``'s rows: the same bytes in the same order."""
    rows = _rows(b)
    matrix = _as_matrix(np.ascontiguousarray(a), rows)

    def blocks() -> Iterator[tuple[int, int, np.ndarray]]:
        step = _block_size(b)
        for first in range(0, rows, step):
            yield first, min(rows, first + step), matrix[first : first + step]

    return blocks


def _transposed(a, b):
    """``a`` is (K, M) and ``b`` has M rows: ``b``'s rows are ``a``'s columns."""
    rows = _rows(b)
    matrix = a.T

    def blocks():
        step = _block_size(b)
        for first in range(0, rows, step):
            yield first, min(rows, first + step), matrix[first : first + step]

    return blocks


def _permuted(a, b, transposed: bool):
    """``b`` is (M, C, H, W); ``a`` is (M, H*W*C) (or its transpose): the kernel of an FC over an
    NHWC-flattened map."""
    rows, channels, height, width = b.shape
    matrix = a.T if transposed else a

    def blocks():
        step = _block_size(b)
        for first in range(0, rows, step):
            part = matrix[first : first + step]
            kernel = part.reshape(len(part), height, width, channels).transpose(0, 3, 1, 2)
            yield first, min(rows, first + step), kernel.reshape(len(part), -1)

    return blocks


def _layouts(a, b):
    yield "same", _same(a, b)
    if a.ndim == 2 and b.ndim >= 1 and a.shape[1] == b.shape[0] and a.shape[0] != 1 and a.shape[1] != 1:
        yield "transpose", _transposed(a, b)
    if b.ndim == 4 and b.shape[2] * b.shape[3] > 1 and b.shape[1] > 1 and a.ndim == 2:
        if a.shape[0] == b.shape[0]:
            yield "permute", _permuted(a, b, transposed=False)
        if a.shape[1] == b.shape[0]:
            yield "transpose+permute", _permuted(a, b, transposed=True)


# ---------------------------------------------------------------------------------------------
# Block-wise checks


def _equal(blocks, b: np.ndarray, exact_dtype: bool = True) -> bool:
    target = _as_matrix(b, _rows(b))
    for first, last, part in blocks():
        other = target[first:last]
        if exact_dtype:
            if part.dtype != other.dtype or not np.array_equal(_bits(part), _bits(other)):
                return False
        elif not np.array_equal(part, other):
            return False
    return True


def _bits(array: np.ndarray) -> np.ndarray:
    """The array as unsigned integers of the same width, so that NaNs and -0.0 compare as bytes."""
    if array.dtype.kind in "fc" and array.dtype.itemsize in (2, 4, 8):
        return np.ascontiguousarray(array).view(f"u{array.dtype.itemsize}")
    return array


def _is_number(array: np.ndarray) -> bool:
    return array.dtype.kind in "iuf"


def _scale_factor(blocks, b: np.ndarray) -> float | None:
    """The factor k with ``b == k * a`` (to rounding in ``b``'s dtype), or None."""
    target = _as_matrix(b, _rows(b))
    dot = norm = 0.0
    peak = 0.0
    for first, last, part in blocks():
        x = part.astype(np.float64)
        y = target[first:last].astype(np.float64)
        dot += float(np.sum(x * y))
        norm += float(np.sum(x * x))
        peak = max(peak, float(np.max(np.abs(y), initial=0.0)))
    if norm == 0.0 or not math.isfinite(dot / norm):
        return None
    factor = dot / norm
    if factor == 1.0:
        return None
    eps = float(np.finfo(b.dtype).eps) if b.dtype.kind == "f" else 0.0
    tolerance = 4 * eps * peak
    for first, last, part in blocks():
        error = np.max(np.abs(part.astype(np.float64) * factor - target[first:last].astype(np.float64)), initial=0.0)
        if not error <= tolerance:
            return None
    if b.dtype.kind == "f":
        factor = float(np.asarray(factor, dtype=b.dtype))  # the factor as the conversion stored it
    return factor if factor != 1.0 else None


def _max_abs_diff(blocks, b: np.ndarray) -> float:
    target = _as_matrix(b, _rows(b))
    worst = 0.0
    for first, last, part in blocks():
        difference = np.abs(part.astype(np.float64) - target[first:last].astype(np.float64))
        worst = max(worst, float(np.max(difference, initial=0.0)))
    return worst


def _broadcast(a: np.ndarray, b: np.ndarray) -> Relation | None:
    if a.size != 1 or b.size <= 1 or not (_is_number(a) and _is_number(b)):
        return None
    value = float(a.reshape(-1)[0])
    flat = b.reshape(-1)
    if not np.all(flat == flat[0]):
        return None
    target = float(flat[0])
    if target == value:
        return Relation(BROADCAST, factor=1.0)
    if value == 0.0:
        return None
    return Relation(
        BROADCAST, factor=float(np.asarray(target / value, dtype=b.dtype)) if b.dtype.kind == "f" else target / value
    )
