"""LRN, BatchNorm, Scale, Bias, MVN, and SSD's Normalize.

* LRN ACROSS_CHANNELS: Caffe's ``x * (k + alpha/size * sum of x^2 over size channels)^-beta``
  is ONNX LRN with ``bias = k`` (ONNX also divides alpha by size). WITHIN_CHANNEL: Caffe squares,
  average-pools ``size x size`` windows (padding (size-1)/2 counted: the divisor is always
  size^2), then ``x * (1 + alpha * average)^-beta``; ``k`` is not used (as in Caffe).
* BatchNorm: mean and variance are the stored blobs times ``1 / blob[2]`` (0 when blob[2] is
  0); ``(x - mean) / sqrt(var + eps)`` as BatchNormalization with unit scale and zero bias.
  ``use_global_stats: false`` normalises with the batch's own statistics, as Caffe does then.
* Scale / Bias: the factor (learned, or the second bottom) covers ``num_axes`` axes from
  ``axis``; it is reshaped with trailing ones to broadcast.
* MVN: ``(x - mean) / (sqrt(E[(x - mean)^2]) + eps)`` over H*W (or C*H*W with across_channels).
* Normalize (SSD): ``x / sqrt(sum x^2 + eps)`` over C (or C*H*W with across_spatial), times the
  learned scale (one, or one per channel).
"""

from __future__ import annotations

import numpy as np

from proto_rewrite.caffe.onnx_export.context import (
    LayerContext,
    canonical_axis,
    converter,
)

ACROSS_CHANNELS, WITHIN_CHANNEL = 0, 1


@converter("LRN")
def lrn(ctx: LayerContext) -> None:
    param = ctx.layer.lrn_param
    size = param.local_size
    if size % 2 == 0:
        raise ctx.error(f"local_size {size} is even; Caffe supports only odd sizes")
    if ctx.rank() != 4:
        raise ctx.refuse(f"needs a 4-D input (N, C, H, W); it is {ctx.in_shapes[0]}")
    x = ctx.inputs[0]
    if param.norm_region == ACROSS_CHANNELS:
        ctx.emit("LRN", [x], top=0, size=size, alpha=float(param.alpha), beta=float(param.beta), bias=float(param.k))
        return
    pad = (size - 1) // 2
    square = ctx.emit("Mul", [x, x], suffix="square")
    average = ctx.emit(
        "AveragePool",
        [square],
        suffix="pool",
        kernel_shape=[size, size],
        strides=[1, 1],
        pads=[pad] * 4,
        count_include_pad=1,
    )
    scaled = ctx.emit("Mul", [average, ctx.floats(param.alpha, "alpha")], suffix="scaled")
    shifted = ctx.emit("Add", [scaled, ctx.floats(1.0, "one")], suffix="shifted")
    factor = ctx.emit("Pow", [shifted, ctx.floats(-param.beta, "power")], suffix="factor")
    ctx.emit("Mul", [x, factor], top=0)


@converter("BatchNorm")
def batch_norm(ctx: LayerContext) -> None:
    param = ctx.layer.batch_norm_param
    rank = ctx.rank()
    if rank < 2:
        raise ctx.refuse(f"needs an input with a channel axis; it is {ctx.in_shapes[0]}")
    channels = ctx.in_shapes[0][1]
    eps = float(param.eps)
    x = ctx.inputs[0]
    use_global_stats = param.use_global_stats if param.HasField("use_global_stats") else True
    if not use_global_stats:
        axes = [0, *range(2, rank)]
        mean = ctx.graph.reduce("ReduceMean", x, axes, name=ctx.sub("mean"))
        centered = ctx.emit("Sub", [x, mean], suffix="centered")
        variance = ctx.graph.reduce(
            "ReduceMean", ctx.emit("Mul", [centered, centered], suffix="square"), axes, name=ctx.sub("variance")
        )
        std = ctx.emit(
            "Sqrt", [ctx.emit("Add", [variance, ctx.floats(eps, "eps")], suffix="variance_eps")], suffix="std"
        )
        ctx.emit("Div", [centered, std], top=0)
        return
    mean, variance, factor = (ctx.blob(i) for i in range(3))
    if mean.shape != (channels,) or variance.shape != (channels,) or factor.size != 1:
        raise ctx.error(
            f"blobs of shapes {[tuple(b.shape) for b in (mean, variance, factor)]}; expected "
            f"({channels},), ({channels},), (1,)"
        )
    stored = np.float32(factor.reshape(-1)[0])
    if stored == 1:
        mean_name, variance_name = ctx.weight(0, "mean"), ctx.weight(1, "variance")
    else:
        scale = np.float32(0) if stored == 0 else np.float32(1) / stored
        mean_name = ctx.weight(0, "mean", mean.astype(np.float32) * scale)
        variance_name = ctx.weight(1, "variance", variance.astype(np.float32) * scale)
    ones = ctx.floats(np.ones(channels, np.float32), "unit_scale")
    zeros = ctx.floats(np.zeros(channels, np.float32), "zero_bias")
    ctx.emit("BatchNormalization", [x, ones, zeros, mean_name, variance_name], top=0, epsilon=eps)


def _broadcast_shape(ctx: LayerContext, factor_shape: tuple, axis: int) -> tuple:
    """The factor's shape with trailing ones, to broadcast against the input from ``axis``."""
    rank = ctx.rank()
    shape = ctx.in_shapes[0]
    if tuple(shape[axis : axis + len(factor_shape)]) != tuple(factor_shape):
        raise ctx.error(f"the factor of shape {factor_shape} does not match the input {shape} from axis {axis}")
    return (*factor_shape, *(1,) * (rank - axis - len(factor_shape)))


def _learned_factor(ctx: LayerContext, index: int, role: str, axis: int, num_axes: int) -> str:
    blob = ctx.blob(index)
    rank = ctx.rank()
    count = rank - axis if num_axes == -1 else num_axes
    expected = tuple(ctx.in_shapes[0][axis : axis + count])
    if blob.size != int(np.prod(expected, dtype=np.int64)):
        raise ctx.error(
            f"blob {index} has {blob.size} values; axes {axis}..{axis + count - 1} of the input "
            f"{ctx.in_shapes[0]} need {expected}"
        )
    shape = _broadcast_shape(ctx, expected, axis)
    if tuple(blob.shape) == shape:
        return ctx.weight(index, role)
    return ctx.weight(index, role, blob.reshape(shape))


def _input_factor(ctx: LayerContext, axis: int) -> str:
    factor_shape = ctx.in_shapes[1]
    trailing = ctx.rank() - axis - len(factor_shape)
    _broadcast_shape(ctx, factor_shape, axis)
    factor = ctx.inputs[1]
    if trailing and len(factor_shape):
        start = len(factor_shape)
        factor = ctx.graph.unsqueeze(factor, list(range(start, start + trailing)), name=ctx.sub("factor"))
    return factor


@converter("Scale", "Bias")
def scale_or_bias(ctx: LayerContext) -> None:
    is_scale = ctx.layer.type == "Scale"
    param = ctx.layer.scale_param if is_scale else ctx.layer.bias_param
    op = "Mul" if is_scale else "Add"
    x = ctx.inputs[0]
    rank = ctx.rank()
    if len(ctx.inputs) > 1:
        axis = 0 if not ctx.in_shapes[1] else canonical_axis(ctx, param.axis, rank)
        factor = _input_factor(ctx, axis)
        learned_bias = 0
    else:
        axis = canonical_axis(ctx, param.axis, rank)
        factor = _learned_factor(ctx, 0, "scale" if is_scale else "bias", axis, param.num_axes)
        learned_bias = 1
    if is_scale and param.bias_term:
        scaled = ctx.emit("Mul", [x, factor], suffix="scaled")
        if len(ctx.inputs) > 1:
            bias_blob = ctx.blob(0)
            shape = _broadcast_shape(ctx, tuple(ctx.in_shapes[1]), axis)
            bias = ctx.weight(0, "bias", bias_blob.reshape(shape))
        else:
            bias = _learned_factor(ctx, learned_bias, "bias", axis, param.num_axes)
        ctx.emit("Add", [scaled, bias], top=0)
        return
    ctx.emit(op, [x, factor], top=0)


@converter("MVN")
def mvn(ctx: LayerContext) -> None:
    param = ctx.layer.mvn_param
    rank = ctx.rank()
    axes = list(range(1 if param.across_channels else 2, rank))
    x = ctx.inputs[0]
    if not axes:  # one value per mean: x - mean is 0
        ctx.emit("Sub", [x, x], top=0)
        return
    mean = ctx.graph.reduce("ReduceMean", x, axes, name=ctx.sub("mean"))
    if not param.normalize_variance:
        ctx.emit("Sub", [x, mean], top=0)
        return
    centered = ctx.emit("Sub", [x, mean], suffix="centered")
    variance = ctx.graph.reduce(
        "ReduceMean", ctx.emit("Mul", [centered, centered], suffix="square"), axes, name=ctx.sub("variance")
    )
    std = ctx.emit("Add", [ctx.emit("Sqrt", [variance], suffix="std"), ctx.floats(param.eps, "eps")], suffix="std_eps")
    ctx.emit("Div", [centered, std], top=0)


@converter("Normalize")
def normalize(ctx: LayerContext) -> None:
    param = ctx.layer.norm_param
    rank = ctx.rank()
    if rank < 2:
        raise ctx.refuse(f"needs an input of at least 2 axes; it is {ctx.in_shapes[0]}")
    x = ctx.inputs[0]
    axes = list(range(1, rank)) if param.across_spatial else [1]
    square = ctx.emit("Mul", [x, x], suffix="square")
    total = ctx.graph.reduce("ReduceSum", square, axes, name=ctx.sub("sum"))
    norm = ctx.emit("Sqrt", [ctx.emit("Add", [total, ctx.floats(param.eps, "eps")], suffix="sum_eps")], suffix="norm")
    normalized = ctx.emit("Div", [x, norm], suffix="normalized")
    blob = ctx.blob(0)
    channels = ctx.in_shapes[0][1]
    if param.channel_shared:
        if blob.size != 1:
            raise ctx.error(f"channel_shared: the scale blob has {blob.size} values, not 1")
        scale = ctx.weight(0, "scale", blob.reshape(()))
    else:
        if blob.size != channels:
            raise ctx.error(f"the scale blob has {blob.size} values for {channels} channels")
        scale = ctx.weight(0, "scale", blob.reshape((channels, *(1,) * (rank - 2))))
    ctx.emit("Mul", [normalized, scale], top=0)
