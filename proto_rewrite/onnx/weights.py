"""The new initializers of a rewrite, as lazy tensors: their data is made when the model is written.

The maths is :func:`proto_rewrite.fc_math.fc_weight_to_kernel`, applied a block of output rows at
a time so that no step holds a second copy of a large weight. Scaling (Gemm's alpha, beta) is done
in the weight's own dtype: a float16 weight is never widened to float32 and back as a whole, a
float64 one never narrowed.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from proto_rewrite.fc_math import PERMUTE, RESHAPE, TRANSPOSE, fc_weight_to_kernel
from proto_rewrite.onnx.tensors import CHUNK_BYTES, DerivedTensor, StoredTensor, raw_dtype

SCALE = "scale"
BROADCAST = "broadcast"
UNCHANGED = "unchanged"


def kernel_tensor(
    name: str,
    source,
    outputs: int,
    channels: int,
    height: int,
    width: int,
    *,
    transposed: bool,
    channels_last: bool,
    alpha: float,
) -> DerivedTensor:
    """The Conv kernel (M, C, H, W) from an FC weight (M, C*H*W), or (C*H*W, M) when transposed."""
    dims = (outputs, channels, height, width)
    same_bytes = (
        not transposed
        and not channels_last
        and alpha == 1.0
        and source.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
    )

    def blocks():
        if same_bytes:
            yield from source.data_chunks()
            return
        weight = source.array()
        dtype = weight.dtype
        row_bytes = channels * height * width * dtype.itemsize
        rows = max(1, CHUNK_BYTES // max(1, row_bytes))
        for first in range(0, outputs, rows):
            last = min(outputs, first + rows)
            part = weight[:, first:last] if transposed else weight[first:last]
            kernel = fc_weight_to_kernel(
                part, last - first, channels, height, width, transposed=transposed, channels_last=channels_last
            ).weight
            if alpha != 1.0:
                kernel = kernel * dtype.type(alpha)
            yield np.ascontiguousarray(kernel, dtype=dtype)

    return DerivedTensor(name, dims, source.data_type, blocks, external=source.is_external, source=_stored(source))


def kernel_transform(transposed: bool, channels_last: bool, alpha: float) -> str:
    base = PERMUTE if channels_last else (TRANSPOSE if transposed else RESHAPE)
    return base + (f"+{SCALE}" if alpha != 1.0 else "")


def bias_tensor(name: str, source, outputs: int, beta: float) -> DerivedTensor:
    """A Conv bias (M,) from a Gemm C of shape (M,), (1, M) or a scalar, times beta."""
    numel = int(np.prod(source.dims)) if source.dims else 1
    same_bytes = numel == outputs and beta == 1.0

    def blocks():
        if same_bytes:
            yield from source.data_chunks()
            return
        values = np.asarray(source.array()).reshape(-1)
        dtype = values.dtype
        if numel != outputs:
            values = np.full(outputs, values[0], dtype=dtype)
        if beta != 1.0:
            values = values * dtype.type(beta)
        yield np.ascontiguousarray(values, dtype=dtype)

    return DerivedTensor(
        name, (outputs,), source.data_type, blocks, external=source.is_external and numel > 1, source=_stored(source)
    )


def bias_transform(dims: tuple[int, ...], outputs: int, beta: float) -> str:
    numel = int(np.prod(dims)) if dims else 1
    parts = []
    if numel != outputs:
        parts.append(BROADCAST)
    elif tuple(dims) != (outputs,):
        parts.append(RESHAPE)
    if beta != 1.0:
        parts.append(SCALE)
    return "+".join(parts) or UNCHANGED


def copy_tensor(name: str, source) -> DerivedTensor:
    """The same values under another name (a Constant node's value becoming an initializer)."""
    return DerivedTensor(name, tuple(source.dims), source.data_type, source.data_chunks, source=None)


def reshaped_tensor(name: str, source, dims: tuple[int, ...]) -> DerivedTensor:
    """The same bytes in another shape, under a new name (a per-feature constant made (K, 1, 1))."""
    if int(np.prod(dims)) != source.numel:
        raise ValueError(f"cannot reshape {list(source.dims)} to {list(dims)}")
    return DerivedTensor(name, tuple(dims), source.data_type, source.data_chunks, source=None)


def int64_tensor(name: str, values: list[int]) -> DerivedTensor:
    array = np.asarray(values, dtype=raw_dtype(TensorProto.INT64))
    return DerivedTensor(name, array.shape, TensorProto.INT64, lambda: iter([array]))


def _stored(source) -> StoredTensor | None:
    return source if isinstance(source, StoredTensor) else None
