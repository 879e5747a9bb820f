"""Multiply-accumulate estimate of a node, at the shapes its graph was inferred at (the declared
input size). Parameters are counted by ``proto_rewrite.graph_view.parameters``.

MACs are counted for the layers that dominate: convolutions (Caffe ``Convolution``, ONNX
``Conv``): one per output element per kernel element of one group; transposed convolutions: one
per input element per kernel element; fully-connected layers (``InnerProduct``, ``Gemm``,
``MatMul``): one per output element per input feature. Every other node counts 0. None means
unknown: a shape the inference could not give. ``batch``: the batch size of the graph's inputs,
used where shape inference lost the batch dimension (ONNX's ``x.view(x.size(0), -1)`` chain).
"""

from __future__ import annotations

import math

from proto_rewrite.graph_view import Node

CONVOLUTIONS = frozenset(("Convolution", "Conv"))
TRANSPOSED_CONVOLUTIONS = frozenset(("Deconvolution", "ConvTranspose"))
FULLY_CONNECTED = frozenset(("InnerProduct", "Gemm"))


def macs(node: Node, batch: int | None = None) -> int | None:
    if node.op in CONVOLUTIONS or node.op in FULLY_CONNECTED:
        weight, out = node.weight("weight"), _first(node.output_shapes, batch)
        if weight is None:
            return 0
        flat = node.op == "Gemm" or node.attributes.get("axis", 1) == 1  # the output is (N, M)
        if weight.size is not None and out is None and node.op in FULLY_CONNECTED and flat and batch is not None:
            return batch * weight.size  # a Gemm's output is (N, M): its shape may be lost, not its rank
        if weight.size is None or out is None or not out:
            return None
        channels = out[1] if node.op in CONVOLUTIONS and len(out) > 1 else out[-1]
        if not channels:
            return None
        return math.prod(out) * weight.size // channels
    if node.op in TRANSPOSED_CONVOLUTIONS:
        weight, source = node.weight("weight"), _first(node.input_shapes, batch)
        if weight is None or weight.size is None or source is None or not weight.shape:
            return None
        return math.prod(source) * weight.size // weight.shape[0]
    if node.op == "MatMul":
        out = _first(node.output_shapes, batch)
        weight = node.weight("weight")
        if weight is not None:
            depth = weight.shape[-2] if weight.shape and len(weight.shape) >= 2 else None
        else:
            source = _first(node.input_shapes, batch)
            depth = source[-1] if source else None
        if out is None or not isinstance(depth, int):
            return None
        return math.prod(out) * depth
    return 0


def _first(shapes, batch: int | None = None) -> tuple | None:
    """The first shape, when every dimension is a known number (the batch one may be ``batch``)."""
    if not shapes or shapes[0] is None:
        return None
    shape = tuple(shapes[0])
    if shape and not isinstance(shape[0], int) and batch is not None:
        shape = (batch, *shape[1:])
    return shape if all(isinstance(d, int) for d in shape) else None


def graph_batch(inputs) -> int | None:
    """The batch size the graph's inputs agree on (their first dimension), or None."""
    sizes = {t.shape[0] for t in inputs if t.shape}
    return sizes.pop() if len(sizes) == 1 and isinstance(next(iter(sizes)), int) else None
