"""Element-wise layers, each as Caffe's ``*_layer.cpp`` computes it.

ReLU (negative_slope: LeakyRelu), PReLU (per channel or channel_shared), ELU, Sigmoid, TanH,
AbsVal, Power ``(shift + scale*x)^power`` (a constant when power or scale is 0), Exp
``base^(shift + scale*x)``, Log ``log_base(shift + scale*x)``, BNLL (Caffe's overflow-safe
``max(x, 0) + log(1 + exp(-|x|))``), Threshold ``x > t ? 1 : 0``, Clip, and Dropout (the
identity at inference; ``scale_train: false`` scales by 1 - ratio instead).
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto, helper

from proto_rewrite.caffe.onnx_export.context import LayerContext, converter


@converter("ReLU")
def relu(ctx: LayerContext) -> None:
    slope = ctx.layer.relu_param.negative_slope
    if slope == 0:
        ctx.emit("Relu", ctx.inputs, top=0)
    else:
        ctx.emit("LeakyRelu", ctx.inputs, top=0, alpha=float(slope))


@converter("PReLU")
def prelu(ctx: LayerContext) -> None:
    blob = ctx.blob(0)
    rank = ctx.rank()
    if rank < 2:
        raise ctx.refuse(f"needs an input with a channel axis; it is {ctx.in_shapes[0]}")
    channels = ctx.in_shapes[0][1]
    if ctx.layer.prelu_param.channel_shared:
        if blob.size != 1:
            raise ctx.error(f"channel_shared: the slope blob has {blob.size} values, not 1")
        slope = ctx.weight(0, "slope", blob.reshape((1,)))
    else:
        if blob.size != channels:
            raise ctx.error(f"the slope blob has {blob.size} values for {channels} channels")
        shape = (channels, *(1,) * (rank - 2))
        slope = ctx.weight(0, "slope") if tuple(blob.shape) == shape else ctx.weight(0, "slope", blob.reshape(shape))
    ctx.emit("PRelu", [ctx.inputs[0], slope], top=0)


@converter("ELU")
def elu(ctx: LayerContext) -> None:
    ctx.emit("Elu", ctx.inputs, top=0, alpha=float(ctx.layer.elu_param.alpha))


@converter("Sigmoid", "TanH", "AbsVal")
def simple(ctx: LayerContext) -> None:
    op = {"Sigmoid": "Sigmoid", "TanH": "Tanh", "AbsVal": "Abs"}[ctx.layer.type]
    ctx.emit(op, ctx.inputs, top=0)


@converter("Clip")
def clip(ctx: LayerContext) -> None:
    param = ctx.layer.clip_param
    ctx.emit("Clip", [ctx.inputs[0], ctx.floats(param.min, "min"), ctx.floats(param.max, "max")], top=0)


def _constant_like(ctx: LayerContext, value: float) -> None:
    shape = ctx.graph.shape_of(ctx.inputs[0], ctx.name)
    tensor = helper.make_tensor("value", TensorProto.FLOAT, [1], [float(value)])
    ctx.emit("ConstantOfShape", [shape], top=0, value=tensor)


def _affine(ctx: LayerContext, x: str, scale: float, shift: float) -> str:
    if scale != 1:
        x = ctx.emit("Mul", [x, ctx.floats(scale, "scale")], suffix="scaled")
    if shift != 0:
        x = ctx.emit("Add", [x, ctx.floats(shift, "shift")], suffix="shifted")
    return x


@converter("Power")
def power(ctx: LayerContext) -> None:
    param = ctx.layer.power_param
    exponent, scale, shift = np.float32(param.power), np.float32(param.scale), np.float32(param.shift)
    if exponent * scale == 0:  # Caffe ignores the input
        value = 1.0 if exponent == 0 else float(np.power(shift, exponent, dtype=np.float32))
        _constant_like(ctx, value)
        return
    x = _affine(ctx, ctx.inputs[0], scale, shift)
    if exponent == 1:
        ctx.emit("Identity", [x], top=0)
    else:
        ctx.emit("Pow", [x, ctx.floats(exponent, "power")], top=0)


@converter("Exp")
def exp(ctx: LayerContext) -> None:
    param = ctx.layer.exp_param
    base, scale, shift = float(param.base), float(param.scale), float(param.shift)
    if base != -1 and base <= 0:
        raise ctx.error(f"base {base} must be positive (or -1 for e)")
    log_base = 1.0 if base == -1 else math.log(base)
    inner = np.float32(log_base * scale)
    outer = np.float32(1.0 if shift == 0 else (math.exp(shift) if base == -1 else base**shift))
    x = ctx.inputs[0]
    if inner != 1:
        x = ctx.emit("Mul", [x, ctx.floats(inner, "inner_scale")], suffix="scaled")
    if outer == 1:
        ctx.emit("Exp", [x], top=0)
    else:
        ctx.emit("Mul", [ctx.emit("Exp", [x], suffix="exp"), ctx.floats(outer, "outer_scale")], top=0)


@converter("Log")
def log(ctx: LayerContext) -> None:
    param = ctx.layer.log_param
    base = float(param.base)
    if base != -1 and base <= 0:
        raise ctx.error(f"base {base} must be positive (or -1 for e)")
    base_scale = np.float32(1.0 if base == -1 else 1.0 / math.log(base))
    x = _affine(ctx, ctx.inputs[0], np.float32(param.scale), np.float32(param.shift))
    if base_scale == 1:
        ctx.emit("Log", [x], top=0)
    else:
        ctx.emit("Mul", [ctx.emit("Log", [x], suffix="log"), ctx.floats(base_scale, "base_scale")], top=0)


@converter("BNLL")
def bnll(ctx: LayerContext) -> None:
    x = ctx.inputs[0]
    negative_abs = ctx.emit("Neg", [ctx.emit("Abs", [x], suffix="abs")], suffix="neg_abs")
    soft = ctx.emit(
        "Log",
        [ctx.emit("Add", [ctx.floats(1.0, "one"), ctx.emit("Exp", [negative_abs], suffix="exp")], suffix="one_plus")],
        suffix="log",
    )
    ctx.emit("Add", [ctx.emit("Relu", [x], suffix="relu"), soft], top=0)


@converter("Threshold")
def threshold(ctx: LayerContext) -> None:
    above = ctx.emit(
        "Greater", [ctx.inputs[0], ctx.floats(ctx.layer.threshold_param.threshold, "threshold")], suffix="above"
    )
    ctx.emit("Cast", [above], top=0, to=TensorProto.FLOAT)


@converter("Dropout")
def dropout(ctx: LayerContext) -> None:
    param = ctx.layer.dropout_param
    if getattr(param, "scale_train", True) or param.dropout_ratio == 0:
        ctx.emit("Identity", ctx.inputs, top=0)
    else:  # weights not scaled in training: Caffe scales by (1 - ratio) at test time
        ctx.emit("Mul", [ctx.inputs[0], ctx.floats(1.0 - param.dropout_ratio, "keep")], top=0)
