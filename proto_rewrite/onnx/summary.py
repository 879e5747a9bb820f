"""Build the format-neutral inspect summary of a loaded ONNX model.

One layer per node: its data inputs and outputs, its weights (the initializers and Constant
values it reads, with shapes and dtypes) and its parameter count. Integer initializers of 32 and
64 bits (shape targets, axes, indices) are listed as weights but not counted as parameters; an
initializer read by several nodes is counted once, at its first reader.
"""

from __future__ import annotations

import math

from onnx import TensorProto

from proto_rewrite.onnx.graph import GraphView, constant_node_tensor
from proto_rewrite.onnx.tensors import dtype_name
from proto_rewrite.summary import LayerInfo, ModelSummary, TensorInfo, WeightInfo

NOT_PARAMETERS = {TensorProto.INT64, TensorProto.INT32, TensorProto.UINT64, TensorProto.UINT32, TensorProto.BOOL,
                  TensorProto.STRING}


def summarize_onnx(model, input_shapes: dict | None = None) -> ModelSummary:
    """``input_shapes``: {input name: tuple of ints} fixing symbolic dimensions (-1 keeps one)."""
    view = GraphView(model, input_shapes)
    inputs = [TensorInfo(name, _shape(view, name)) for name in view.graph_inputs]
    counted: set[str] = set()
    layers = [_layer(view, index, counted) for index in range(len(view.nodes))]
    files = model.external_data_files()
    diagnostics = list(model.diagnostics)
    return ModelSummary(
        model_format="onnx",
        path=model.path or "",
        weights_path=", ".join(files) if files else None,
        source_format=_source_format(model),
        upgrades=[],
        inputs=inputs,
        layers=layers,
        diagnostics=diagnostics,
    )


def _source_format(model) -> str:
    text = f"ONNX IR {model.proto.ir_version}, opset {model.opset if model.opset is not None else '-'}"
    others = [f"{e.domain} {e.version}" for e in model.proto.opset_import if e.domain not in ("", "ai.onnx")]
    if others:
        text += f" (+ {', '.join(others)})"
    producer = " ".join(p for p in (model.proto.producer_name, model.proto.producer_version) if p)
    return text + (f", from {producer}" if producer else "")


def _layer(view: GraphView, index: int, counted: set[str]) -> LayerInfo:
    node = view.nodes[index]
    weights, data_inputs = [], []
    parameters = 0
    for name in node.input:
        if not name:
            continue
        tensor = view.initializers.get(name) if name in view.initializers else None
        if tensor is None:
            data_inputs.append(name)
            continue
        weights.append(WeightInfo(list(tensor.dims), dtype_name(tensor.data_type)))
        if name not in counted and tensor.data_type not in NOT_PARAMETERS:
            parameters += math.prod(tensor.dims)
        counted.add(name)
    if node.op_type == "Constant":
        value = constant_node_tensor(node)
        if value is not None:
            weights.append(WeightInfo(list(value.dims), dtype_name(value.data_type)))
            if value.data_type not in NOT_PARAMETERS:
                parameters += math.prod(value.dims)
    kind = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
    outputs = [name for name in node.output if name]
    return LayerInfo(name=view.key(index), type=kind, inputs=data_inputs, outputs=outputs, weights=weights,
                     parameters=parameters, output_shapes=[_shape(view, name) for name in outputs])


def _shape(view: GraphView, name: str) -> list | None:
    shape = view.shape(name)
    if shape is None:
        return None
    return [d if isinstance(d, int) else None for d in shape]
