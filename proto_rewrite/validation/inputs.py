"""The inputs a comparison feeds both models: seeded random or from an .npz file."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from proto_rewrite.errors import InputFileError, UsageError
from proto_rewrite.limits import check_tensor_size
from proto_rewrite.shape_text import tuple_text as _text

_ORT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
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
            raise UsageError(
                f"input '{item.name}' has type {item.type}, which validate cannot generate",
                hint="feed the inputs from an .npz file (inputs_file)",
                options=("inputs_file",),
            )
        specs.append(InputSpec(item.name, np.dtype(_ORT_TYPES[item.type]), tuple(item.shape)))
    return specs


def concrete_shape(spec: InputSpec, overrides: dict[str, tuple[int, ...]], batch: int | None) -> tuple[int, ...]:
    if spec.name in overrides:
        shape = tuple(overrides[spec.name])
        fixed = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)]
        if len(shape) != len(spec.shape) or any(shape[i] != d for i, d in fixed if not (i == 0 and batch)):
            raise UsageError(
                f"input_shapes gives '{spec.name}' the shape {','.join(map(str, shape))}, which does not fit "
                f"the declared shape {_text(spec.shape)}",
                options=("input_shapes",),
            )
        return shape
    shape = list(spec.shape)
    if batch is not None and shape:
        check_batch(spec, batch)
        shape[0] = batch
    symbolic = [i for i, d in enumerate(shape) if not isinstance(d, int) or d < 0]
    if symbolic:
        raise UsageError(
            f"input '{spec.name}' has symbolic dimensions {_text(spec.shape)}",
            hint=f"give the shape of '{spec.name}' in input_shapes",
            options=("input_shapes",),
        )
    return tuple(shape)


def check_batch(spec: InputSpec, batch: int) -> None:
    """Refuse ``--batch`` for an input whose batch axis is fixed at another size (before any input
    is drawn: onnxruntime would refuse the run after it)."""
    first = spec.shape[0] if spec.shape else None
    if isinstance(first, int) and first > 0 and first != batch:
        raise UsageError(
            f"--batch {batch}: input '{spec.name}' has a fixed batch size of {first} (shape {_text(spec.shape)})",
            hint="leave out --batch for this model, or give a model with a dynamic batch axis",
        )


def random_inputs(
    specs: list[InputSpec],
    shapes: dict[str, tuple[int, ...]],
    seed: int,
    ranges: dict[str, tuple[float, float]],
    *,
    path=None,
) -> dict[str, np.ndarray]:
    """Standard normal floats (uniform in --input-range when given), small non-negative integers.
    A shape over the memory limit (:mod:`proto_rewrite.limits`) is refused before anything is
    drawn; ``path`` is the model the error names."""
    for spec in specs:  # numpy draws float64, then casts
        check_tensor_size(
            shapes[spec.name], max(8, spec.dtype.itemsize), f"input '{spec.name}'", path=path, layer=spec.name
        )
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
    """The arrays of an .npz inputs file. Each member's declared dtype and shape (its .npy header,
    read from the archive without inflating the data) are checked against the model's inputs
    and the tensor limit before any array is read; errors name the .npz and the member."""
    from proto_rewrite.input_guard import require_regular_file

    if require_regular_file(path, "the inputs file") is None:
        raise InputFileError("the inputs file is not found or is a folder", path=path, hint="give an .npz file")
    headers = npz_headers(path)
    by_name = {spec.name: spec for spec in specs}
    missing, extra = sorted(set(by_name) - set(headers)), sorted(set(headers) - set(by_name))
    if missing or extra:
        raise InputFileError(
            f"the inputs file does not match the model's inputs (missing: {missing or 'none'}, "
            f"unknown: {extra or 'none'})",
            path=path,
            hint=f"the model's inputs are {sorted(by_name)}",
        )
    for name, (dtype, shape) in headers.items():
        spec = by_name[name]
        if dtype != spec.dtype:
            raise InputFileError(
                f"input '{name}' is {dtype} in the file but the model takes {spec.dtype}",
                path=path,
                layer=name,
                hint="convert it explicitly before saving",
            )
        fixed = [(i, d) for i, d in enumerate(spec.shape) if isinstance(d, int) and d >= 0]
        if len(shape) != len(spec.shape) or any(shape[i] != d for i, d in fixed):
            raise InputFileError(
                f"input '{name}' has shape {_text(shape)} in the file but the model takes {_text(spec.shape)}",
                path=path,
                layer=name,
                hint="save arrays of the model's input shapes (symbolic dimensions may be any size)",
            )
        check_tensor_size(shape, dtype.itemsize, f"input '{name}' of the inputs file", path=path, layer=name)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except Exception as err:  # zipfile, zlib and numpy each raise their own types for a damaged archive
        raise InputFileError(
            f"cannot read the inputs file: it is damaged ({type(err).__name__}: {err})",
            path=path,
            hint="give an .npz written by numpy.savez, complete",
        ) from err


def npz_headers(path) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """Member name -> (dtype, shape) from each .npy header of an .npz, reading only the headers.
    A member whose declared size disagrees with its header (a zip bomb, a truncated archive) is
    refused; the data is never inflated here."""
    import zipfile

    hint = "give an .npz written by numpy.savez or numpy.savez_compressed"
    try:
        with open(path, "rb") as handle:
            head = handle.read(6)
            if head == b"\x93NUMPY":
                raise InputFileError(
                    "the inputs file is a .npy file (one array), not an .npz archive",
                    path=path,
                    hint="save the inputs with numpy.savez(FILE, NAME=array, ...), one array per "
                    "model input, named after it",
                )
            handle.seek(0)
            with zipfile.ZipFile(handle) as archive:
                found = {}
                for info in archive.infolist():
                    if not info.filename.endswith(".npy"):
                        raise InputFileError(
                            f"the inputs file holds '{info.filename}', which is not an array (.npy)",
                            path=path,
                            hint=hint,
                        )
                    name = info.filename[:-4]
                    with archive.open(info) as member:
                        version = np.lib.format.read_magic(member)
                        if version == (1, 0):
                            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
                        elif version in ((2, 0), (3, 0)):
                            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
                        else:
                            raise ValueError(f"unsupported .npy version {version}")
                        header_end = member.tell()
                    if dtype.hasobject:
                        raise InputFileError(
                            f"input '{name}' holds Python objects (dtype {dtype}): not read",
                            path=path,
                            layer=name,
                            hint="save numeric arrays",
                        )
                    needed = math.prod(shape) * dtype.itemsize
                    if info.file_size != header_end + needed:
                        raise InputFileError(
                            f"input '{name}' declares shape {_text(shape)} ({needed} bytes of data) but its member "
                            f"holds {max(info.file_size - header_end, 0)} bytes: the archive is damaged or forged",
                            path=path,
                            layer=name,
                            hint=hint,
                        )
                    found[name] = (dtype, tuple(int(d) for d in shape))
                return found
    except InputFileError:
        raise
    except zipfile.BadZipFile as err:
        raise InputFileError(
            f"the inputs file is not a complete .npz (zip) archive: {err}",
            path=path,
            hint="the file is truncated or is not an .npz; " + hint,
        ) from err
    except Exception as err:  # a damaged header: numpy, zipfile and zlib raise their own types
        raise InputFileError(f"cannot read the inputs file: {type(err).__name__}: {err}", path=path, hint=hint) from err


RANGE_OPTIONS = ("input_ranges",)


def parse_ranges(values: list[str] | None) -> dict[str, tuple[float, float]]:
    ranges = {}
    for text in values or []:
        name, _, bounds = text.partition(":")
        try:
            low, high = (float(v) for v in bounds.split(","))
        except ValueError as err:
            raise UsageError(f"input_ranges {text!r} is not NAME:LOW,HIGH", options=RANGE_OPTIONS) from err
        if not name or low > high:
            raise UsageError(f"input_ranges {text!r} is not NAME:LOW,HIGH with LOW <= HIGH", options=RANGE_OPTIONS)
        ranges[name] = (low, high)
    return ranges
