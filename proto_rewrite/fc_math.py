"""The weight maths of the FC -> convolution rewrite. Knows nothing about files or formats.

An FC layer over a feature map of C channels and H x W positions, flattened in C, H, W order,
has a weight ``(M, C*H*W)``; the convolution that computes the same numbers has the kernel
``(M, C, H, W)``: the same bytes, reshaped. Only a weight stored the other way round, ``(K, M)``
(Caffe ``transpose: true``, ONNX Gemm ``transB=0`` and MatMul), has to be transposed, and a map
flattened in H, W, C order (NHWC) has its kernel's axes permuted.

Every function checks the element counts explicitly: a weight never gets reshaped into a kernel
it does not fill exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proto_rewrite.errors import WeightShapeError

RESHAPE = "reshape"  # same bytes, new shape
TRANSPOSE = "transpose"  # the (K, M) matrix transposed, then reshaped
PERMUTE = "permute"  # kernel axes reordered from an H, W, C flattening


@dataclass(frozen=True)
class ConvKernel:
    """A convolution kernel made from an FC weight, and how it was made."""

    weight: np.ndarray  # (M, C, H, W)
    transform: str  # RESHAPE, TRANSPOSE or PERMUTE


def fc_weight_to_kernel(
    weight: np.ndarray,
    outputs: int,
    channels: int,
    height: int,
    width: int,
    *,
    transposed: bool = False,
    channels_last: bool = False,
) -> ConvKernel:
    """Turn an FC weight into the kernel of the equivalent convolution.

    ``weight`` is ``(outputs, channels*height*width)``, or ``(channels*height*width, outputs)``
    when ``transposed``. ``channels_last``: the FC input was flattened in H, W, C order.
    A RESHAPE result is a view of ``weight`` (no copy) when ``weight`` is C-contiguous.
    """
    inputs = channels * height * width
    expected = (inputs, outputs) if transposed else (outputs, inputs)
    if weight.ndim != 2 or tuple(weight.shape) != expected:
        raise WeightShapeError(
            f"FC weight has shape {list(weight.shape)}, but an FC with {outputs} outputs over a "
            f"{channels} x {height} x {width} input needs {list(expected)}",
            hint="the weights do not belong to this network, or its input shape is not the one the weights were trained for",
        )
    matrix = np.ascontiguousarray(weight.T) if transposed else weight
    if channels_last:
        kernel = np.ascontiguousarray(matrix.reshape(outputs, height, width, channels).transpose(0, 3, 1, 2))
        return ConvKernel(kernel, PERMUTE)
    return ConvKernel(matrix.reshape(outputs, channels, height, width), TRANSPOSE if transposed else RESHAPE)


def kernel_to_fc_weight(kernel: np.ndarray) -> np.ndarray:
    """The inverse of a RESHAPE: ``(M, C, H, W)`` -> ``(M, C*H*W)``."""
    if kernel.ndim != 4:
        raise WeightShapeError(f"a convolution kernel has 4 dimensions, not {kernel.ndim} ({list(kernel.shape)})")
    return kernel.reshape(kernel.shape[0], -1)
