"""Tolerances per output: defaults by dtype, overridden by ``--atol/--rtol [NAME:]VALUE``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from proto_rewrite.errors import UsageError

# (atol, rtol) by dtype: a rewrite only reorders the sums, so fp32 stays tight.
DEFAULTS = {
    np.dtype("float64"): (1e-9, 1e-7),
    np.dtype("float32"): (1e-5, 1e-4),
    np.dtype("float16"): (1e-2, 1e-2),
}
EXACT = (0.0, 0.0)  # integers and booleans


def default_tolerance(dtype) -> tuple[float, float]:
    return DEFAULTS.get(np.dtype(dtype), EXACT)


@dataclass
class Tolerances:
    """``all`` applies to every output, ``per_output`` to one by name; unset: dtype defaults."""

    atol_all: float | None = None
    rtol_all: float | None = None
    atol: dict[str, float] = field(default_factory=dict)
    rtol: dict[str, float] = field(default_factory=dict)

    @classmethod
    def parse(cls, atol: list[str] | None, rtol: list[str] | None) -> Tolerances:
        tolerances = cls()
        for option, values, target in (("--atol", atol, "atol"), ("--rtol", rtol, "rtol")):
            for text in values or []:
                name, _, number = text.rpartition(":")
                try:
                    value = float(number)
                except ValueError as err:
                    raise UsageError(f"{option} {text!r}: {number!r} is not a number",
                                     hint=f"use {option} VALUE or {option} OUTPUT:VALUE") from err
                if value < 0:
                    raise UsageError(f"{option} {text!r}: a tolerance cannot be negative")
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

    def check_names(self, outputs: list[str]) -> None:
        unknown = sorted((set(self.atol) | set(self.rtol)) - set(outputs))
        if unknown:
            raise UsageError(f"tolerances given for outputs the models do not have: {', '.join(unknown)}",
                             hint=f"the outputs are: {', '.join(outputs)}")
