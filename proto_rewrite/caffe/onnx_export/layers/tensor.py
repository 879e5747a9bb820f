"""Layers that move, join, split or reduce values.

* Concat / Slice: ``axis``, or the legacy ``concat_dim`` / ``slice_dim``; Slice by
  ``slice_point`` or in equal parts.
* Split: one Identity per top (each top keeps its blob name).
* Flatten: ``axis`` .. ``end_axis`` merged (ONNX Flatten only for axis 1 to the end, where it
  is the same; otherwise a Reshape that keeps the other axes).
* Reshape: ``shape`` with 0 (copy) and -1 (infer), applied to axes [axis, axis + num_axes).
* Crop: axes from ``axis`` cut to the second bottom's size at ``offset`` (one for all, or one
  per axis).
* Permute: Transpose with the listed axes first, then the others in order.
* Eltwise: SUM (with ``coeff``), PROD, MAX.
* Softmax over ``axis`` alone: at opset 13+ ONNX Softmax is exactly that. Below 13 ONNX
  Softmax normalises over every axis from ``axis`` on (a 4-D softmax over C*H*W), so the axis is
  first moved last, unless the axes after it all have size 1.
* ArgMax: top_k indices (or values with ``out_max_val``) along ``axis``, or per item over all
  of C*H*W laid out as Caffe does ((N, 1 or 2, top_k)). Ties: Caffe picks the larger index;
  ONNX ArgMax does too (select_last_index, opset 12+); TopK (top_k > 1) picks the smaller.
"""

from __future__ import annotations

import math

from onnx import TensorProto

from proto_rewrite.caffe.onnx_export.context import (
    LayerContext,
    canonical_axis,
    converter,
)


def _legacy_axis(ctx: LayerContext, param, legacy: str) -> int:
    if param.HasField(legacy):
        return getattr(param, legacy)
    return canonical_axis(ctx, param.axis, ctx.rank())


@converter("Concat")
def concat(ctx: LayerContext) -> None:
    axis = _legacy_axis(ctx, ctx.layer.concat_param, "concat_dim")
    if len(ctx.inputs) == 1:
        ctx.emit("Identity", ctx.inputs, top=0)
    else:
        ctx.emit("Concat", ctx.inputs, top=0, axis=axis)


@converter("Slice")
def slice_layer(ctx: LayerContext) -> None:
    axis = _legacy_axis(ctx, ctx.layer.slice_param, "slice_dim")
    ctx.require_static(0, [axis], "it slices at fixed points")
    sizes = [shape[axis] for shape in ctx.out_shapes]
    if len(sizes) == 1:
        ctx.emit("Identity", ctx.inputs, top=0)
        return
    ctx.graph.split(ctx.inputs[0], sizes, axis, ctx.outputs, name=ctx.name)


@converter("Split")
def split(ctx: LayerContext) -> None:
    for top in range(len(ctx.outputs)):
        ctx.emit("Identity", ctx.inputs, top=top)


@converter("Flatten")
def flatten(ctx: LayerContext) -> None:
    param = ctx.layer.flatten_param
    rank = ctx.rank()
    start = canonical_axis(ctx, param.axis, rank)
    end = canonical_axis(ctx, param.end_axis, rank, "end_axis")
    if start == 1 and end == rank - 1 and rank >= 2:
        ctx.emit("Flatten", ctx.inputs, top=0, axis=1)
        return
    merged = [-1] if ctx.dynamic(0, range(start, end + 1)) else [math.prod(ctx.in_shapes[0][start : end + 1])]
    spec = [0] * start + merged + [("dim", axis) for axis in range(end + 1, rank)]
    ctx.emit("Reshape", [ctx.inputs[0], ctx.shape_tensor(0, spec)], top=0)


@converter("Reshape")
def reshape(ctx: LayerContext) -> None:
    param = ctx.layer.reshape_param
    rank = ctx.rank()
    start = param.axis if param.axis >= 0 else rank + param.axis + 1
    end = rank if param.num_axes == -1 else start + param.num_axes
    wanted = list(param.shape.dim)
    spec: list = [0] * start
    spec += wanted  # ONNX's 0 copies the input dim at the same position: Caffe's start + index
    spec += [("dim", axis) for axis in range(end, rank)]
    ctx.emit("Reshape", [ctx.inputs[0], ctx.shape_tensor(0, spec)], top=0)


@converter("Crop")
def crop(ctx: LayerContext) -> None:
    param = ctx.layer.crop_param
    rank = ctx.rank()
    start = canonical_axis(ctx, param.axis, rank)
    offsets = list(param.offset)
    axes = list(range(start, rank))
    begin = [offsets[0] if len(offsets) == 1 else (offsets[i] if offsets else 0) for i in range(len(axes))]
    if ctx.dynamic(1, axes):
        sizes = ctx.graph.dims_of(ctx.inputs[1], axes, ctx.sub("reference"))
        ends = ctx.emit("Add", [sizes, ctx.ints(begin, "offsets")], suffix="ends")
    else:
        ends = [b + ctx.in_shapes[1][axis] for b, axis in zip(begin, axes)]
    ctx.graph.slice(ctx.inputs[0], begin, ends, axes, name=ctx.name, out=ctx.outputs[0])


@converter("Permute")
def permute(ctx: LayerContext) -> None:
    rank = ctx.rank()
    order = list(ctx.layer.permute_param.order)
    order += [axis for axis in range(rank) if axis not in order]
    if order == list(range(rank)):
        ctx.emit("Identity", ctx.inputs, top=0)
    else:
        ctx.emit("Transpose", ctx.inputs, top=0, perm=order)


PROD, SUM, MAX = 0, 1, 2


@converter("Eltwise")
def eltwise(ctx: LayerContext) -> None:
    param = ctx.layer.eltwise_param
    inputs = list(ctx.inputs)
    if param.operation == SUM:
        coeff = list(param.coeff) or [1.0] * len(inputs)
        if len(coeff) != len(inputs):
            raise ctx.error(f"{len(coeff)} coeff values for {len(inputs)} inputs")
        inputs = [
            x if c == 1 else ctx.emit("Mul", [x, ctx.floats(c, f"coeff{i}")], suffix=f"scaled{i}")
            for i, (x, c) in enumerate(zip(inputs, coeff))
        ]
        op = "Sum"
    elif param.operation == PROD:
        op = "Mul"
    elif param.operation == MAX:
        op = "Max"
    else:
        raise ctx.refuse(f"operation {param.operation} is not SUM, PROD or MAX")
    if op in ("Sum", "Max") and len(inputs) != 2:
        ctx.emit(op, inputs, top=0)
        return
    op = "Add" if op == "Sum" else op
    while len(inputs) > 2:  # Caffe accumulates from the first bottom on
        inputs = [ctx.emit(op, inputs[:2], suffix="partial"), *inputs[2:]]
    ctx.emit(op, inputs, top=0)


@converter("Softmax")
def softmax(ctx: LayerContext) -> None:
    rank = ctx.rank()
    axis = canonical_axis(ctx, ctx.layer.softmax_param.axis, rank)
    x = ctx.inputs[0]
    if ctx.opset >= 13:
        ctx.emit("Softmax", [x], top=0, axis=axis)
        return
    trailing = range(axis + 1, rank)
    if all(ctx.in_shapes[0][a] == 1 for a in trailing) and not ctx.dynamic(0, trailing):
        ctx.emit("Softmax", [x], top=0, axis=axis)
        return
    perm = [a for a in range(rank) if a != axis] + [axis]
    inverse = [perm.index(a) for a in range(rank)]
    moved = ctx.emit("Transpose", [x], suffix="to_last", perm=perm)
    normalized = ctx.emit("Softmax", [moved], suffix="softmax", axis=rank - 1)
    ctx.emit("Transpose", [normalized], top=0, perm=inverse)


@converter("ArgMax")
def argmax(ctx: LayerContext) -> None:
    param = ctx.layer.argmax_param
    k = param.top_k
    rank = ctx.rank()
    g = ctx.graph
    x = ctx.inputs[0]
    last = {"select_last_index": 1} if ctx.opset >= 12 else {}
    if param.HasField("axis"):
        axis = canonical_axis(ctx, param.axis, rank)
        if k == 1 and param.out_max_val:
            g.reduce("ReduceMax", x, [axis], name=ctx.name, out=ctx.outputs[0])
        elif k == 1:
            index = ctx.emit("ArgMax", [x], suffix="argmax", axis=axis, keepdims=1, **last)
            ctx.emit("Cast", [index], top=0, to=TensorProto.FLOAT)
        else:
            values, indices = g.add(
                "TopK",
                [x, ctx.ints([k], "k")],
                [g.fresh(ctx.sub("values")), g.fresh(ctx.sub("indices"))],
                name=ctx.sub("topk"),
                axis=axis,
            )
            if param.out_max_val:
                ctx.emit("Identity", [values], top=0)
            else:
                ctx.emit("Cast", [indices], top=0, to=TensorProto.FLOAT)
        return
    flat = ctx.emit("Flatten", [x], suffix="flatten", axis=1) if rank != 2 else x
    if k == 1:
        indices = ctx.emit("ArgMax", [flat], suffix="argmax", axis=1, keepdims=1, **last)
        values = g.reduce("ReduceMax", flat, [1], name=ctx.sub("max")) if param.out_max_val else None
    else:
        values, indices = g.add(
            "TopK",
            [flat, ctx.ints([k], "k")],
            [g.fresh(ctx.sub("values")), g.fresh(ctx.sub("indices"))],
            name=ctx.sub("topk"),
            axis=1,
        )
    indices = ctx.emit("Cast", [indices], suffix="indices_float", to=TensorProto.FLOAT)
    rows = ctx.emit("Concat", [indices, values], suffix="rows", axis=1) if param.out_max_val else indices
    out_rank = len(ctx.out_shapes[0])
    spec = [0, 2 if param.out_max_val else 1, k] + [1] * (out_rank - 3)
    ctx.emit("Reshape", [rows, ctx.ints(spec, "shape")], top=0)
