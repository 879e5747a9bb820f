"""Convolution, Deconvolution, InnerProduct.

* Convolution -> Conv: group, dilation, per-axis pad (pad_h/pad_w), bias_term. Caffe's weight
  layout (num_output, C/group, k...) is ONNX's. Several bottoms share the weights, one Conv each.
* Deconvolution -> ConvTranspose: Caffe's weight (C, num_output/group, k...) is ONNX's, and the
  output size stride*(in-1) + dilation*(k-1) + 1 - 2*pad is ConvTranspose's with explicit pads.
* InnerProduct -> Gemm (axis 1): the input flattened from ``axis`` (Flatten keeps the batch,
  unlike a Reshape to (1, -1)); weight (num_output, K), or (K, num_output) with ``transpose``.
  Other axes: Reshape to (dims before axis..., K), MatMul, Add.
"""

from __future__ import annotations

from proto_rewrite.caffe.layer_params import conv_params
from proto_rewrite.caffe.onnx_export.context import (
    LayerContext,
    canonical_axis,
    converter,
)


def conv_attributes(ctx: LayerContext) -> dict:
    param = ctx.layer.convolution_param
    rank = ctx.rank()
    if canonical_axis(ctx, param.axis, rank) != 1:
        raise ctx.refuse(
            f"channel axis {param.axis}: ONNX convolutions take the channels on axis 1",
            "transpose the input so that channels are on axis 1",
        )
    conv = conv_params(param, rank, error=ctx.error)
    return {
        "kernel_shape": list(conv.kernel),
        "strides": list(conv.stride),
        "pads": list(conv.pad + conv.pad),
        "dilations": list(conv.dilation),
        "group": conv.group,
    }


def _check_weight(ctx: LayerContext, expected: tuple) -> None:
    weight = ctx.blob(0)
    if tuple(weight.shape) != tuple(expected):
        raise ctx.error(
            f"the weight blob has shape {tuple(weight.shape)}; this layer needs {tuple(expected)}",
            "give the caffemodel that goes with this prototxt",
        )


@converter("Convolution", "Deconvolution")
def convolution(ctx: LayerContext) -> None:
    param = ctx.layer.convolution_param
    attrs = conv_attributes(ctx)
    channels, group, outputs = ctx.in_shapes[0][1], param.group, param.num_output
    if ctx.layer.type == "Convolution":
        _check_weight(ctx, (outputs, channels // group, *attrs["kernel_shape"]))
        op = "Conv"
    else:
        _check_weight(ctx, (channels, outputs // group, *attrs["kernel_shape"]))
        op = "ConvTranspose"
    inputs = [ctx.weight(0, "weight")]
    if param.bias_term:
        inputs.append(ctx.weight(1, "bias"))
    for top, x in enumerate(ctx.inputs):
        ctx.emit(op, [x, *inputs], top=top, **attrs)


@converter("InnerProduct")
def inner_product(ctx: LayerContext) -> None:
    param = ctx.layer.inner_product_param
    rank = ctx.rank()
    axis = canonical_axis(ctx, param.axis, rank)
    ctx.require_static(0, range(axis, rank), f"its weights take {ctx.count(0, axis)} inputs per item")
    inputs_per_item = ctx.count(0, axis)
    expected = (inputs_per_item, param.num_output) if param.transpose else (param.num_output, inputs_per_item)
    _check_weight(ctx, expected)
    weight = ctx.weight(0, "weight")
    bias = [ctx.weight(1, "bias")] if param.bias_term else []
    x = ctx.inputs[0]
    if axis == 1:
        if rank != 2:
            x = ctx.emit("Flatten", [x], suffix="flatten", axis=1)
        ctx.emit("Gemm", [x, weight, *bias], top=0, transB=0 if param.transpose else 1)
        return
    x = ctx.emit("Reshape", [x, ctx.shape_tensor(0, [0] * axis + [-1])], suffix="flatten")
    if not param.transpose:
        weight = ctx.emit("Transpose", [weight], suffix="weight_t", perm=[1, 0])
    if bias:
        product = ctx.emit("MatMul", [x, weight], suffix="matmul")
        ctx.emit("Add", [product, bias[0]], top=0)
    else:
        ctx.emit("MatMul", [x, weight], top=0)
