"""Error statistics between a reference output and a candidate output. Pure numpy, no I/O.

Like Polygraphy's comparator, but as small functions: per output the max / mean / median / p99
of the absolute and relative error, the cosine similarity, how many elements are beyond the
tolerance, and the smallest atol and rtol that would have passed. NaN and Inf are compared by
position: a NaN (or an Inf of the same sign) in the same place in both is a match, anywhere else
a mismatch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class ErrorStats:
    max: float
    mean: float
    median: float
    p99: float


SCALE = "scale"  # max|a - b| <= scale_tol x max|a|: the error against the output's magnitude
ELEMENTWISE = "elementwise"  # every element: |a - b| <= atol + rtol x |a|
RULES = (SCALE, ELEMENTWISE)


@dataclass(frozen=True)
class Comparison:
    """How a candidate output compares with its reference. ``rule`` decides ``passed``: SCALE
    (``max|a - b| <= scale_tol x max|a|``; an all-zero reference needs ``max|a - b| <= atol``) or
    ELEMENTWISE (no element beyond ``atol + rtol x |a|``). Both figures are always computed:
    ``mismatches`` counts the elements beyond the element-wise bound, ``scale_error`` is
    ``max|a - b| / max|a|``."""

    atol: float
    rtol: float
    elements: int
    mismatches: int  # elements beyond tolerance, NaN/Inf mismatches included
    nonfinite_mismatches: int  # NaN or Inf in one output and not at the same place in the other
    absolute: ErrorStats
    relative: ErrorStats
    cosine_similarity: float | None  # None when one output is all zeros
    min_atol: float  # the smallest atol that passes with rtol = 0
    min_rtol: float  # the smallest rtol that passes with atol = 0 (inf: a zero reference differs)
    reference_max_abs: float
    rule: str = ELEMENTWISE
    scale_tol: float | None = None
    scale_error: float = 0.0  # max|a - b| / max|a| (inf: an all-zero reference differs)
    scale_bound: float | None = None  # what max|a - b| may reach under the scale rule

    @property
    def passed(self) -> bool:
        if self.rule == SCALE:
            return self.nonfinite_mismatches == 0 and self.absolute.max <= self.scale_bound
        return self.mismatches == 0

    @property
    def elementwise_passed(self) -> bool:
        return self.mismatches == 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["passed"] = self.passed
        data["elementwise_passed"] = self.elementwise_passed
        return {key: _json_float(value) for key, value in data.items()}


def _json_float(value):
    if isinstance(value, dict):
        return {k: _json_float(v) for k, v in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    return value


def _stats(values: np.ndarray) -> ErrorStats:
    if values.size == 0:
        return ErrorStats(0.0, 0.0, 0.0, 0.0)
    return ErrorStats(
        float(values.max()), float(values.mean()), float(np.median(values)), float(np.percentile(values, 99))
    )


def compare(
    reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float, scale_tol: float | None = None
) -> Comparison:
    """Compare two arrays of the same number of elements (shapes are the caller's business).
    With ``scale_tol`` the scale rule decides, without it the element-wise rule."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1)
    got = np.asarray(candidate, dtype=np.float64).reshape(-1)
    if ref.size != got.size:
        raise ValueError(f"cannot compare {ref.size} values with {got.size}")
    finite = np.isfinite(ref) & np.isfinite(got)
    same_special = ~finite & ((np.isnan(ref) & np.isnan(got)) | (ref == got))
    nonfinite_mismatches = int(np.count_nonzero(~finite & ~same_special))
    ref_f, got_f = ref[finite], got[finite]
    absolute = np.abs(got_f - ref_f)
    magnitude = np.abs(ref_f)
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(magnitude > 0, absolute / magnitude, np.where(absolute > 0, np.inf, 0.0))
    beyond = int(np.count_nonzero(absolute > atol + rtol * magnitude))
    norms = float(np.linalg.norm(ref_f)) * float(np.linalg.norm(got_f))
    cosine = float(np.dot(ref_f, got_f) / norms) if norms > 0 else None
    max_abs = float(absolute.max()) if absolute.size else 0.0
    scale = float(magnitude.max()) if magnitude.size else 0.0
    scale_error = max_abs / scale if scale > 0 else (float("inf") if max_abs > 0 else 0.0)
    bound = None if scale_tol is None else (scale_tol * scale if scale > 0 else atol)
    return Comparison(
        atol=atol,
        rtol=rtol,
        elements=int(ref.size),
        mismatches=beyond + nonfinite_mismatches,
        nonfinite_mismatches=nonfinite_mismatches,
        absolute=_stats(absolute),
        relative=_stats(relative[np.isfinite(relative)]) if relative.size else _stats(relative),
        cosine_similarity=cosine,
        min_atol=float(absolute.max()) if absolute.size else 0.0,
        min_rtol=float(relative.max()) if relative.size else 0.0,
        reference_max_abs=scale,
        rule=ELEMENTWISE if scale_tol is None else SCALE,
        scale_tol=scale_tol,
        scale_error=scale_error,
        scale_bound=bound,
    )
