"""Pooling with Caffe's exact windows (``pooling_layer.cpp``).

Caffe's output length is ``ceil((in + 2*pad - k) / stride) + 1`` (floor with ``round_mode:
FLOOR`` or a fork's ``ceil_mode: false``), minus one when the layer has any padding and the last
window would start in the padding. ONNX's own ``ceil_mode`` is not used: runtimes differ on the
last-window rule. Instead the end padding is explicit: ``e = (out - 1)*stride + k - in - pad``
(at least 0) makes floor rounding give exactly Caffe's windows.

* MAX ignores padding in both, so MaxPool with pads (pad, e).
* AVE divides by the window's size counting the padding, but clipped at the padded edge
  ``in + pad`` (a window that runs past it, in ceil mode, is divided by less than k*k). When no
  window runs past the padded edge: AveragePool with pads (pad, pad) and count_include_pad=1, every
  divisor is k*k. Otherwise: the padding made real with a Pad of zeros, then AveragePool with the
  extra end padding and count_include_pad=0, which divides by the count inside the padded input,
  exactly Caffe's clipped divisor.
* Global pooling: GlobalMaxPool / GlobalAveragePool (pad 0 and stride 1 are checked by shapes).
* With a dynamic spatial size the windows depend on the size: the pooling is done with the
  largest end padding allowed (k - 1) and the result sliced to Caffe's length, computed at run
  time with the same formula.
"""

from __future__ import annotations

from onnx import TensorProto

from proto_rewrite.caffe.layer_params import pool_params
from proto_rewrite.caffe.onnx_export.context import LayerContext, converter

MAX, AVE, STOCHASTIC = 0, 1, 2


@converter("Pooling")
def pooling(ctx: LayerContext) -> None:
    param = ctx.layer.pooling_param
    if ctx.rank() != 4:
        raise ctx.refuse(f"needs a 4-D input (N, C, H, W); it is {ctx.in_shapes[0]}")
    if param.pool == STOCHASTIC:
        raise ctx.refuse("STOCHASTIC pooling has no ONNX equivalent", "use MAX or AVE pooling")
    if len(ctx.outputs) > 1:
        raise ctx.refuse("the second top (the MAX pooling mask) has no ONNX equivalent", "remove the mask top")
    x = ctx.inputs[0]
    if param.global_pooling:
        ctx.emit("GlobalMaxPool" if param.pool == MAX else "GlobalAveragePool", [x], top=0)
        return
    pool = pool_params(param)
    kernel, stride, pad = list(pool.kernel), list(pool.stride), list(pool.pad)
    sizes = list(ctx.in_shapes[0][2:])
    if ctx.dynamic(0, [2, 3]):
        _dynamic_pooling(ctx, param, kernel, stride, pad, pool.ceil)
        return
    out = list(ctx.out_shapes[0][2:])
    for size, _, s, p, length in zip(sizes, kernel, stride, pad, out):
        if (length - 1) * s >= size + p:
            raise ctx.error(
                f"its last window (start {(length - 1) * s - p}) lies outside the {size}-long input",
                "use a stride no larger than the kernel, or floor rounding",
            )
    end = [max((length - 1) * s + k - size - p, 0) for size, k, s, p, length in zip(sizes, kernel, stride, pad, out)]
    common = {"kernel_shape": kernel, "strides": stride}
    if param.pool == MAX:
        pads = pad + end
        ctx.emit("MaxPool", [x], top=0, **common, pads=pads if any(pads) else None)
        return
    past_edge = [
        max((length - 1) * s + k - (size + 2 * p), 0) for size, k, s, p, length in zip(sizes, kernel, stride, pad, out)
    ]
    if not any(past_edge):
        pads = pad + pad
        ctx.emit(
            "AveragePool",
            [x],
            top=0,
            **common,
            pads=pads if any(pads) else None,
            count_include_pad=1 if any(pad) else None,
        )
        return
    if any(pad):
        x = ctx.graph.pad(x, [0, 0, *pad, 0, 0, *pad], 0.0, name=ctx.sub("pad"))
    ctx.emit("AveragePool", [x], top=0, **common, pads=[0, 0, *past_edge], count_include_pad=0)


def _dynamic_pooling(ctx: LayerContext, param, kernel, stride, pad, ceil: bool) -> None:
    """Pool with end padding k - 1 (every window Caffe has is complete), then slice the output to
    Caffe's length computed from the run-time size."""
    padded = any(pad)
    for k, s, _ in zip(kernel, stride, pad):
        if ceil and not padded and s > k:
            raise ctx.error(
                f"with stride {s} larger than the kernel {k}, the last window can fall outside the input at some sizes",
                "export at a fixed size",
            )
    g, x = ctx.graph, ctx.inputs[0]
    common = {"kernel_shape": kernel, "strides": stride}
    extra = [k - 1 for k in kernel]
    if param.pool == MAX:
        pooled = ctx.emit("MaxPool", [x], suffix="pool", **common, pads=[*pad, *extra])
    else:
        if padded:
            x = g.pad(x, [0, 0, *pad, 0, 0, *pad], 0.0, name=ctx.sub("pad"))
        pooled = ctx.emit("AveragePool", [x], suffix="pool", **common, pads=[0, 0, *extra], count_include_pad=0)
    size = g.dims_of(ctx.inputs[0], [2, 3], ctx.sub("size"))
    kernel_t, stride_t = ctx.ints(kernel, "kernel"), ctx.ints(stride, "stride")
    span = g.op(
        "Sub",
        [g.op("Add", [size, ctx.ints([2 * p for p in pad], "pad2")], name=ctx.sub("padded")), kernel_t],
        name=ctx.sub("span"),
    )
    if ceil:
        span = g.op("Add", [span, ctx.ints([s - 1 for s in stride], "stride_1")], name=ctx.sub("span_up"))
    steps = g.op("Div", [span, stride_t], name=ctx.sub("steps"))  # span >= 0: Div truncates = floor
    if padded:  # the last window must start inside the image: (length - 1)*stride < size + pad
        start = g.op("Mul", [steps, stride_t], name=ctx.sub("last_start"))
        limit = g.op("Add", [size, ctx.ints(pad, "pad")], name=ctx.sub("limit"))
        inside = g.op(
            "Cast",
            [g.op("Less", [start, limit], name=ctx.sub("inside"))],
            name=ctx.sub("inside_int"),
            to=TensorProto.INT64,
        )
        length = g.op("Add", [steps, inside], name=ctx.sub("length"))
    else:
        length = g.op("Add", [steps, ctx.ints([1, 1], "one")], name=ctx.sub("length"))
    g.slice(pooled, [0, 0], length, [2, 3], name=ctx.name, out=ctx.outputs[0])
