"""The inputs a comparison feeds both models: seeded random or from an .npz file."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proto_rewrite.errors import InputFileError, UsageError
from proto_rewrite.limits import check_tensor_size

_ORT_TYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    shape: tuple  # ints, or str/None for symbolic dimensions


def session_inputs(session) -> list[InputSpec]:
    specs = []
    for item in session.get_inputs():
        if item.type not in _ORT_TYPES:
            raise UsageError(f"input '{item.name}' has type {item.type}, which validate cannot generate",
                             hint="give the inputs with --inputs FILE.npz")
        specs.append(InputSpec(item.name, np.dtype(_ORT_TYPES[item.type]), tuple(item.shape)))
    return specs


def concrete_shape(spec: InputSpec, overrides: dict[str, tuple[int, ...]], batch: int | None) -> tuple[int, ...]:
    if spec.name in overrides:
        shape = tuple(overrides[spec.name])
        fixed = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
        if len(shape) != len(spec.shape) or any(shape[i] != d for i, d in fixed if not (i == 0 and batch)):
            raise UsageError(f"--input-shape {spec.name}:{','.join(map(str, shape))} does not fit the declared "
                             f"shape {_text(spec.shape)}")
        return shape
    shape = list(spec.shape)
    if batch is not None and shape:
        shape[0] = batch
    symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int) or d < 0]
    if symbolic:
        raise UsageError(f"input '{spec.name}' has symbolic dimensions {_text(spec.shape)}",
                         hint=f"give its shape with --input-shape {spec.name}:D0,D1,...")
    return tuple(shape)


def _text(shape) -> str:
    return "(" + ", ".join(str(d) if d not in (None, "") else "?" for d in shape) + ")"


def random_inputs(specs: list[InputSpec], shapes: dict[str, tuple[int, ...]], seed: int,
                  ranges: dict[str, tuple[float, float]], *, path=None) -> dict[str, np.ndarray]:
    """Standard normal floats (uniform in --input-range when given), small non-negative integers.
    A shape over the memory limit (:mod:`proto_rewrite.limits`) is refused before anything is
    drawn; ``path`` is the model the error names."""
    for spec in specs:  # numpy draws float64, then casts
        check_tensor_size(shapes[spec.name], max(8, spec.dtype.itemsize), f"input '{spec.name}'", path=path,
                          layer=spec.name)
    rng = np.random.RandomState(seed)
    values = {}
    for spec in specs:
        shape = shapes[spec.name]
        if spec.dtype.kind == "f":
            if spec.name in ranges:
                low, high = ranges[spec.name]
                data = rng.uniform(low, high, shape)
            else:
                data = rng.standard_normal(shape)
        elif spec.dtype.kind == "b":
            data = rng.randint(0, 2, shape)
        else:
            low, high = ranges.get(spec.name, (0, 10))
            data = rng.randint(int(low), int(high) + 1, shape)
        values[spec.name] = data.astype(spec.dtype)
    return values


def load_npz(path, specs: list[InputSpec]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            values = {name: data[name] for name in data.files}
    except (OSError, ValueError) as err:
        raise InputFileError(f"cannot read the inputs: {err}", path=path, hint="give an .npz written by numpy.savez") from err
    names = {spec.name for spec in specs}
    missing, extra = sorted(names - set(values)), sorted(set(values) - names)
    if missing or extra:
        raise InputFileError(f"the inputs file does not match the model's inputs (missing: {missing or 'none'}, "
                             f"unknown: {extra or 'none'})", path=path, hint=f"the model's inputs are {sorted(names)}")
    for spec in specs:
        if values[spec.name].dtype != spec.dtype:
            raise InputFileError(f"input '{spec.name}' is {values[spec.name].dtype} in the file but the model takes "
                                 f"{spec.dtype}", path=path, hint="convert it explicitly before saving")
    return values


def parse_ranges(values: list[str] | None) -> dict[str, tuple[float, float]]:
    ranges = {}
    for text in values or []:
        name, _, bounds = text.partition(":")
        try:
            low, high = (float(v) for v in bounds.split(","))
        except ValueError as err:
            raise UsageError(f"--input-range {text!r} is not NAME:LOW,HIGH") from err
        if not name or low > high:
            raise UsageError(f"--input-range {text!r} is not NAME:LOW,HIGH with LOW <= HIGH")
        ranges[name] = (low, high)
    return ranges
