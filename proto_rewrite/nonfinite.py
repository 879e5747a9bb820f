"""NaN and Inf in weights, found a chunk at a time.

A model whose weights hold NaN or Inf computes NaN: the conversion would succeed and the result
be useless, or a validation compare NaN with NaN. ``convert``, ``export`` and ``validate`` refuse
such weights (:class:`~proto_rewrite.errors.NonFiniteWeightsError`, naming the layer or
initializer) unless ``--allow-nonfinite``.

The scan never holds more than :data:`CHUNK_ELEMENTS` values' worth of temporaries, whatever the
weight's size, and works on the weights as they are: views of the memory-mapped input stay
views (the streaming writer still copies them file to file), and the pages a chunk read are
dropped from the process again (:func:`proto_rewrite.filecopy.release`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from proto_rewrite.errors import NonFiniteWeightsError
from proto_rewrite.filecopy import file_span, release

CHUNK_ELEMENTS = 1 << 20
ALLOW_HINT = (
    "the weights are corrupt, or were saved after training diverged; pass allow_nonfinite to process them anyway"
)

ALLOW_OPTIONS = ("allow_nonfinite",)


@dataclass
class NonFinite:
    """What a scan found in one tensor: counts, and the first bad value's position."""

    nan: int = 0
    inf: int = 0
    first: tuple[int, ...] | None = None

    def describe(self) -> str:
        counts = " and ".join(f"{n} {kind}" for n, kind in ((self.nan, "NaN"), (self.inf, "Inf")) if n)
        return f"{counts} value{'s' if self.nan + self.inf > 1 else ''} (the first at index {list(self.first)})"


def _chunks(array: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    """(flat offset, 1-D chunk) of ``array`` in C order, CHUNK_ELEMENTS at a time, copying nothing
    when the array is contiguous."""
    if array.flags.c_contiguous:
        flat = array.reshape(-1)
        for start in range(0, flat.size, CHUNK_ELEMENTS):
            yield start, flat[start : start + CHUNK_ELEMENTS]
        return
    start = 0
    iterator = np.nditer(
        array, flags=["external_loop", "buffered", "zerosize_ok"], buffersize=CHUNK_ELEMENTS, order="C"
    )
    for chunk in iterator:
        yield start, chunk
        start += chunk.size


def _bad_mask(chunk: np.ndarray, bfloat16: bool) -> tuple[np.ndarray | None, int, int]:
    if bfloat16:  # raw bits: exponent all ones is Inf (mantissa 0) or NaN
        exponent_ones = (chunk & 0x7F80) == 0x7F80
        if not exponent_ones.any():
            return None, 0, 0
        nan = int(np.count_nonzero(exponent_ones & ((chunk & 0x007F) != 0)))
        return exponent_ones, nan, int(np.count_nonzero(exponent_ones)) - nan
    finite = np.isfinite(chunk)
    if finite.all():
        return None, 0, 0
    nan = int(np.count_nonzero(np.isnan(chunk)))
    return ~finite, nan, int(finite.size - np.count_nonzero(finite)) - nan


def scan(array: np.ndarray, *, bfloat16: bool = False) -> NonFinite | None:
    """Count the NaN and Inf values of a float array (``bfloat16``: uint16 holding bfloat16
    bits); None when there are none, or the array holds no floats."""
    if not bfloat16 and array.dtype.kind not in "fc":
        return None
    found = NonFinite()
    for offset, chunk in _chunks(array):
        bad, nan, inf = _bad_mask(chunk, bfloat16)
        release(file_span(chunk))
        if bad is None:
            continue
        if found.first is None:
            flat_index = offset + int(np.argmax(bad))
            found.first = tuple(int(i) for i in np.unravel_index(flat_index, array.shape)) if array.shape else ()
        found.nan += nan
        found.inf += inf
    return found if found.first is not None else None


def scan_chunks(
    chunks: Iterable, dtype: np.dtype, shape: tuple[int, ...], *, bfloat16: bool = False
) -> NonFinite | None:
    """:func:`scan` over raw little-endian bytes given a block at a time (whole values per block)."""
    found = NonFinite()
    offset = 0
    for block in chunks:
        values = np.frombuffer(block, dtype=dtype)
        part = scan(values, bfloat16=bfloat16)
        if part is not None:
            if found.first is None:
                found.first = tuple(int(i) for i in np.unravel_index(offset + part.first[0], shape)) if shape else ()
            found.nan += part.nan
            found.inf += part.inf
        offset += values.size
    return found if found.first is not None else None


def refuse(
    findings: list[tuple[str, NonFinite]], *, path, what: str, layer: str | None = None, line: int | None = None
) -> None:
    """Raise :class:`NonFiniteWeightsError` for ``findings`` ((label, NonFinite) per bad tensor),
    naming the first and counting the others."""
    if not findings:
        return
    label, first = findings[0]
    more = f"; {len(findings) - 1} more {what}s hold NaN or Inf too" if len(findings) > 1 else ""
    raise NonFiniteWeightsError(
        f"{label} holds {first.describe()}{more}",
        path=path,
        layer=layer,
        line=line,
        hint=ALLOW_HINT,
        options=ALLOW_OPTIONS,
    )


FLOAT32_MAX = float(np.finfo(np.float32).max)


def beyond_float32(array: np.ndarray) -> tuple[int, float, tuple[int, ...]] | None:
    """For a float64 array: (count, first value, its index) of the finite values too large for
    float32 (they would become Inf where Caffe, or the ONNX export, reads them as float32)."""
    if array.dtype != np.float64:
        return None
    count, first = 0, None
    for offset, chunk in _chunks(array):
        big = np.abs(chunk) > FLOAT32_MAX
        big &= np.isfinite(chunk)
        release(file_span(chunk))
        hits = int(np.count_nonzero(big))
        if hits and first is None:
            flat = offset + int(np.argmax(big))
            first = (
                float(chunk[flat - offset]),
                tuple(int(i) for i in np.unravel_index(flat, array.shape)) if array.shape else (),
            )
        count += hits
    return None if first is None else (count, first[0], first[1])


def check_caffe_weights(model) -> None:
    """Refuse a :class:`~proto_rewrite.caffe.model.CaffeModel` whose weights hold NaN or Inf, or
    doubles beyond float32's range (Caffe and the export read them as float32: Inf)."""
    findings, first_layer = [], None
    for layer_name, arrays in model.weights.items():
        for index, array in enumerate(arrays):
            found = scan(np.asarray(array))
            if found is not None:
                findings.append((f"blob {index} of layer '{layer_name}'", found))
                first_layer = first_layer or layer_name
    refuse(findings, path=model.weights_path or model.prototxt_path, what="blob", layer=first_layer)
    for layer_name, arrays in model.weights.items():
        for index, array in enumerate(arrays):
            big = beyond_float32(np.asarray(array))
            if big is not None:
                count, value, where = big
                raise NonFiniteWeightsError(
                    f"blob {index} of layer '{layer_name}' holds {count} double value{'s' if count > 1 else ''} "
                    f"beyond float32's range (the first, {value:g}, at index {list(where)}): read as float32, as "
                    "Caffe does, they are Inf",
                    path=model.weights_path or model.prototxt_path,
                    layer=layer_name,
                    hint=ALLOW_HINT,
                    options=ALLOW_OPTIONS,
                )


def check_onnx_weights(model) -> None:
    """Refuse an :class:`~proto_rewrite.onnx.model.OnnxModel` whose float initializers or
    Constant node values hold NaN or Inf (initializers are read a block at a time)."""
    from onnx import TensorProto, numpy_helper

    raw_floats = {TensorProto.FLOAT: "<f4", TensorProto.FLOAT16: "<f2", TensorProto.DOUBLE: "<f8"}
    floats = set(raw_floats) | {TensorProto.BFLOAT16}
    findings, first_name = [], None
    for name, tensor in model.initializers.items():
        if tensor.data_type not in floats:
            continue
        if tensor.data_type in raw_floats:
            found = scan_chunks(tensor.data_chunks(), np.dtype(raw_floats[tensor.data_type]), tensor.dims)
        else:  # bfloat16: rare, read whole
            found = _scan_any(tensor.array())
        if found is not None:
            findings.append((f"initializer '{name}'", found))
            first_name = first_name or name
    for node in model.graph.node:
        if node.op_type != "Constant":
            continue
        for attribute in node.attribute:
            if attribute.name == "value" and attribute.t.data_type in floats:
                found = _scan_any(numpy_helper.to_array(attribute.t))
                if found is not None:
                    label = node.name or (node.output[0] if node.output else "Constant")
                    findings.append((f"Constant node '{label}'", found))
                    first_name = first_name or label
    refuse(findings, path=model.path, what="tensor", layer=first_name)


def _scan_any(values: np.ndarray) -> NonFinite | None:
    """:func:`scan` of what onnx's numpy_helper gives: numpy floats, or bfloat16 as a 2-byte
    extension type (ml_dtypes) or as raw uint16 bits."""
    values = np.asarray(values)
    if values.dtype.kind == "V" and values.dtype.itemsize == 2:
        return scan(values.view(np.uint16), bfloat16=True)
    return scan(values)
