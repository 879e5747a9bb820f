"""Tolerances per output: defaults by dtype, overridden by ``atol`` / ``rtol`` / ``scale_tol`` ``[NAME:]VALUE``
(:meth:`Tolerances.parse`; the CLI's ``--atol`` / ``--rtol`` / ``--scale-tol``).

The default rule is scale-aware: an output passes when ``max|a - b| <= scale_tol x max|a|``. A
rewritten FC reorders sums whose rounding grows with the magnitude of the accumulated terms, not
with each element, so a near-zero element of a large output may differ by more than an element-wise
bound would allow while the output as a whole agrees to 1e-7 of its size. The element-wise rule
(``|a - b| <= atol + rtol x |a|`` everywhere) stays available and is always reported beside it;
``atol`` / ``rtol`` choose it unless ``compare`` is ``scale``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from proto_rewrite.errors import UsageError
from proto_rewrite.validation.stats import ELEMENTWISE, RULES, SCALE

# (atol, rtol) by dtype: a rewrite only reorders the sums, so fp32 stays tight.
DEFAULTS = {
    np.dtype("float64"): (1e-9, 1e-7),
    np.dtype("float32"): (1e-5, 1e-4),
    np.dtype("float16"): (1e-2, 1e-2),
}
EXACT = (0.0, 0.0)  # integers and booleans
# scale_tol by dtype: max|a - b| relative to max|a|.
SCALE_DEFAULTS = {
    np.dtype("float64"): 1e-10,
    np.dtype("float32"): 1e-5,
    np.dtype("float16"): 1e-2,
}


def default_tolerance(dtype) -> tuple[float, float]:
    return DEFAULTS.get(np.dtype(dtype), EXACT)


def default_scale_tolerance(dtype) -> float:
    return SCALE_DEFAULTS.get(np.dtype(dtype), 0.0)


@dataclass
class Tolerances:
    """``all`` applies to every output, ``per_output`` to one by name; unset: dtype defaults.
    ``rule``: SCALE (default) or ELEMENTWISE decides pass or fail."""

    atol_all: float | None = None
    rtol_all: float | None = None
    atol: dict[str, float] = field(default_factory=dict)
    rtol: dict[str, float] = field(default_factory=dict)
    rule: str = SCALE
    scale_all: float | None = None
    scale: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(
        cls,
        atol: list[str] | None,
        rtol: list[str] | None,
        scale_tol: list[str] | None = None,
        compare: str | None = None,
    ) -> Tolerances:
        """Tolerances from ``[NAME:]VALUE`` texts; ``compare``: the rule (None: element-wise when
        ``atol`` or ``rtol`` is given, else scale)."""
        if compare is not None and compare not in RULES:
            raise UsageError(
                f"compare {compare!r}: not a comparison rule",
                options=("compare",),
                hint=f"use one of: {', '.join(RULES)}",
            )
        if compare == ELEMENTWISE and scale_tol:
            raise UsageError(
                "scale_tol sets the scale rule's tolerance; it has no effect with compare elementwise",
                options=("scale_tol", "compare"),
                hint="drop scale_tol, or use compare scale",
            )
        tolerances = cls(rule=compare or (ELEMENTWISE if (atol or rtol) else SCALE))
        for option, values, target in (
            ("atol", atol, "atol"),
            ("rtol", rtol, "rtol"),
            ("scale_tol", scale_tol, "scale"),
        ):
            for text in values or []:
                name, _, number = text.rpartition(":")
                try:
                    value = float(number)
                except ValueError as err:
                    raise UsageError(
                        f"{option} {text!r}: {number!r} is not a number",
                        options=(option,),
                        hint=f"use {option} VALUE or {option} OUTPUT:VALUE",
                    ) from err
                if value != value or value in (float("inf"), float("-inf")):  # NaN passes every pair
                    raise UsageError(
                        f"{option} {text!r}: a tolerance must be a finite number",
                        options=(option,),
                        hint=f"give a number such as {option} 1e-5",
                    )
                if value < 0:
                    raise UsageError(f"{option} {text!r}: a tolerance cannot be negative", options=(option,))
                if name:
                    getattr(tolerances, target)[name] = value
                else:
                    setattr(tolerances, f"{target}_all", value)
        return tolerances

    def for_output(self, name: str, dtype) -> tuple[float, float]:
        atol, rtol = default_tolerance(dtype)
        atol = self.atol.get(name, self.atol_all if self.atol_all is not None else atol)
        rtol = self.rtol.get(name, self.rtol_all if self.rtol_all is not None else rtol)
        return atol, rtol

    def scale_for_output(self, name: str, dtype) -> float | None:
        """The scale rule's tolerance, or None under the element-wise rule."""
        if self.rule != SCALE:
            return None
        return self.scale.get(name, self.scale_all if self.scale_all is not None else default_scale_tolerance(dtype))

    def check_names(self, outputs: list[str]) -> None:
        unknown = sorted((set(self.atol) | set(self.rtol) | set(self.scale)) - set(outputs))
        if unknown:
            raise UsageError(
                f"tolerances given for outputs the models do not have: {', '.join(unknown)}",
                hint=f"the outputs are: {', '.join(outputs)}",
            )
