"""A loaded ONNX model as its graph view (inspect and diff): one node per node of the top-level
graph.

A node's name is its own, or its first output's when it has none (or shares it). Its data inputs
are the inputs that are not initializers; the initializers it reads are its weights, with the
role their input position has (``weight`` and ``bias`` of Conv, Gemm and MatMul, ``scale``,
``bias``, ``mean``, ``variance`` of BatchNormalization, else the operator schema's input name),
and a Constant node's value is its weight ``value``. Attributes are ONNX's, except that a Conv's
geometry is normalised with defaults filled in: ``kernel`` (from the weight when
``kernel_shape`` is absent), ``stride``, ``pad`` (one number per axis when the padding is
symmetric), ``dilation``, ``group``.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from proto_rewrite.graph_view import Graph, Node, Tensor, Weight
from proto_rewrite.onnx.graph import DEFAULT_DOMAINS, GraphView, constant_node_tensor
from proto_rewrite.onnx.shapes import shape_of
from proto_rewrite.onnx.tensors import dtype_name

# Integer and boolean tensors (shape targets, axes, indices, masks) are weights but not parameters.
NOT_PARAMETERS = frozenset(
    (
        onnx.TensorProto.INT64,
        onnx.TensorProto.INT32,
        onnx.TensorProto.UINT64,
        onnx.TensorProto.UINT32,
        onnx.TensorProto.BOOL,
        onnx.TensorProto.STRING,
    )
)

ROLES = {
    "Conv": {1: "weight", 2: "bias"},
    "ConvTranspose": {1: "weight", 2: "bias"},
    "Gemm": {1: "weight", 2: "bias"},
    "MatMul": {1: "weight"},
    "BatchNormalization": {1: "scale", 2: "bias", 3: "mean", 4: "variance"},
    "InstanceNormalization": {1: "scale", 2: "bias"},
    "LayerNormalization": {1: "scale", 2: "bias"},
    "PRelu": {1: "slope"},
}
CONVOLUTIONS = ("Conv", "ConvTranspose")
CONV_GEOMETRY = ("kernel_shape", "strides", "pads", "dilations", "group")


def declared_inputs(model) -> list[Tensor]:
    initializers = model.initializers
    return [Tensor(vi.name, shape_of(vi.type)) for vi in model.graph.input if vi.name not in initializers]


def onnx_graph(model, input_shapes: dict | None = None) -> Graph:
    """``input_shapes``: {input: dims} fixing symbolic input dimensions (-1 keeps one) for the shapes."""
    view = GraphView(model, input_shapes)
    nodes = [_node(view, index) for index in range(len(view.nodes))]
    outputs = [Tensor(vi.name, shape_of(vi.type)) for vi in model.graph.output]
    files = model.external_data_files()
    proto = model.proto
    return Graph(
        "onnx",
        model.path or "",
        ", ".join(files) if files else None,
        nodes,
        declared_inputs(model),
        outputs,
        has_weights=True,
        diagnostics=list(model.diagnostics),
        normalized_text=lambda: _printed(proto),
        source_format=source_format(model),
        inference_note=view.inference_note,
        sized_inputs=[Tensor(name, _shape(view, name)) for name in view.graph_inputs],
    )


def source_format(model) -> str:
    """``ONNX IR 8, opset 17 (+ com.microsoft 1), from pytorch 2.1``."""
    text = f"ONNX IR {model.proto.ir_version}, opset {model.opset if model.opset is not None else '-'}"
    others = [f"{e.domain} {e.version}" for e in model.proto.opset_import if e.domain not in DEFAULT_DOMAINS]
    if others:
        text += f" (+ {', '.join(others)})"
    producer = " ".join(p for p in (model.proto.producer_name, model.proto.producer_version) if p)
    return text + (f", from {producer}" if producer else "")


def _printed(proto) -> str:
    from onnx import printer

    return printer.to_text(proto.graph) + "\n"


def _node(view: GraphView, index: int) -> Node:
    node = view.nodes[index]
    op = node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"
    weights, inputs = [], []
    for position, name in enumerate(node.input):
        if not name:
            continue
        tensor = view.initializers.get(name)
        if tensor is None:
            inputs.append(name)
        else:
            weights.append(_weight(_role(node, position, view.opset), tensor))
    if node.op_type == "Constant":
        value = constant_node_tensor(node)
        if value is not None:
            weights.append(
                Weight(
                    "value",
                    node.output[0],
                    tuple(value.dims),
                    dtype_name(value.data_type),
                    _constant_loader(value),
                    value.data_type not in NOT_PARAMETERS,
                )
            )
    outputs = [name for name in node.output if name]
    return Node(
        view.key(index),
        op,
        _attributes(node, weights),
        inputs,
        outputs,
        weights,
        [_shape(view, name) for name in inputs],
        [_shape(view, name) for name in outputs],
    )


def _shape(view: GraphView, name: str):
    """The inferred shape; the names shape inference makes up for unknown dimensions become None."""
    shape = view.shape(name)
    if shape is None:
        return None
    return tuple(None if isinstance(d, str) and d.startswith("unk__") else d for d in shape)


def _weight(role: str, tensor) -> Weight:
    return Weight(
        role,
        tensor.name,
        tuple(tensor.dims),
        dtype_name(tensor.data_type),
        tensor.array,
        tensor.data_type not in NOT_PARAMETERS,
    )


def _constant_loader(value):
    return lambda: numpy_helper.to_array(value)


def _role(node, position: int, opset: int) -> str:
    if node.domain in DEFAULT_DOMAINS and node.op_type in ROLES:
        return ROLES[node.op_type].get(position, f"input {position}")
    try:
        formals = list(onnx.defs.get_schema(node.op_type, opset or 1, node.domain).inputs)
    except Exception:  # noqa: BLE001 - unknown or custom operators have no schema
        return f"input {position}"
    variadic = bool(formals) and formals[-1].option == onnx.defs.OpSchema.FormalParameterOption.Variadic
    if position < len(formals) - (1 if variadic else 0):
        return formals[position].name
    return f"input {position}"


# ---------------------------------------------------------------------------------------------
# Attributes


def _attributes(node, weights: list[Weight]) -> dict[str, object]:
    found = {attr.name: _value(helper.get_attribute_value(attr)) for attr in node.attribute}
    if node.op_type in CONVOLUTIONS and node.domain in DEFAULT_DOMAINS:
        found = {**_conv_geometry(found, weights), **{k: v for k, v in found.items() if k not in CONV_GEOMETRY}}
    return found


def _conv_geometry(found: dict, weights: list[Weight]) -> dict[str, object]:
    kernel = found.get("kernel_shape")
    if kernel is None:
        weight = next((w for w in weights if w.role == "weight"), None)
        kernel = list(weight.shape[2:]) if weight is not None and weight.shape else None
    count = len(kernel) if kernel is not None else 2
    pads = list(found.get("pads", [0] * 2 * count))
    if len(pads) == 2 * count and pads[:count] == pads[count:]:
        pads = pads[:count]
    return {
        "kernel": kernel,
        "stride": list(found.get("strides", [1] * count)),
        "pad": pads,
        "dilation": list(found.get("dilations", [1] * count)),
        "group": found.get("group", 1),
    }


def _value(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float):
        return float(str(np.float32(value)))
    if isinstance(value, onnx.TensorProto):
        return f"tensor {dtype_name(value.data_type)} {list(value.dims)}"
    if isinstance(value, onnx.GraphProto):
        return f"graph '{value.name}' ({len(value.node)} nodes)"
    if isinstance(value, (list, tuple)):
        return [_value(item) for item in value]
    if isinstance(value, (int, str)) or value is None:
        return value
    return str(value)
