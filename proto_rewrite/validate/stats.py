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


@dataclass(frozen=True)
class Comparison:
    """How a candidate output compares with its reference, under atol + rtol * |reference|."""

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

    @property
    def passed(self) -> bool:
        return self.mismatches == 0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["passed"] = self.passed
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
    return ErrorStats(float(values.max()), float(values.mean()), float(np.median(values)),
                      float(np.percentile(values, 99)))


def compare(reference: np.ndarray, candidate: np.ndarray, atol: float, rtol: float) -> Comparison:
    """Compare two arrays of the same number of elements (shapes are the caller's business)."""
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
    return Comparison(
        atol=atol, rtol=rtol, elements=int(ref.size),
        mismatches=beyond + nonfinite_mismatches, nonfinite_mismatches=nonfinite_mismatches,
        absolute=_stats(absolute), relative=_stats(relative[np.isfinite(relative)]) if relative.size else _stats(relative),
        cosine_similarity=cosine,
        min_atol=float(absolute.max()) if absolute.size else 0.0,
        min_rtol=float(relative.max()) if relative.size else 0.0,
        reference_max_abs=float(magnitude.max()) if magnitude.size else 0.0,
    )
