"""fcn mode: find what still bakes the old input size into the rewritten model.

The rewritten model's shapes are inferred again at twice the planning height and width. A
Reshape whose constant target no longer fits its input there, or an FC left as it was whose
input no longer has the width of its weight, would fail at any other input size: each is
reported as a warning diagnostic naming the node (nothing is changed).
"""

from __future__ import annotations

import math

from proto_rewrite.diagnostics import Diagnostic
from proto_rewrite.errors import Location
from proto_rewrite.onnx.graph import GraphView
from proto_rewrite.onnx.shape_expr import evaluate, known

SCALE = 2


def size_warnings(new_model, program) -> list[Diagnostic]:
    if not program.resized_inputs:
        return []
    planned = program.plan.input_shapes
    shapes = {}
    for name in program.view.graph_inputs:
        shape = planned.get(name)
        if shape is None:
            continue
        shape = [1 if d == -1 else d for d in shape]
        if name in program.resized_inputs and len(shape) == 4:
            for position, _ in program.resized_inputs[name]:
                shape[position] *= SCALE
        shapes[name] = tuple(shape)
    view = GraphView(new_model, _fixable(new_model, shapes))
    downstream = _downstream(view, list(program.resized_inputs))
    warnings = []
    for index, node in enumerate(view.nodes):
        if index not in downstream:
            continue
        text = None
        if node.op_type == "Reshape":
            text = _reshape_text(view, index)
        elif node.op_type in ("Gemm", "MatMul"):
            text = _fc_text(view, index)
        if text:
            warnings.append(
                Diagnostic(
                    "warning",
                    text,
                    Location(path=program.plan.model_path or None, layer=view.key(index)),
                    "the rewritten model runs at the planning input size; at other sizes this node fails",
                )
            )
    return warnings


def _fixable(model, shapes: dict) -> dict:
    """Only dims that are symbolic in the new model can be set; keep the others."""
    result = {}
    for value in model.graph.input:
        if value.name not in shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        wanted = shapes[value.name]
        if len(dims) != len(wanted):
            continue
        result[value.name] = tuple(-1 if d.HasField("dim_value") else w for d, w in zip(dims, wanted))
    return result


def _downstream(view: GraphView, names: list[str]) -> set[int]:
    seen_tensors = set(names)
    nodes = set()
    for index, node in enumerate(view.nodes):
        if any(name in seen_tensors for name in node.input):
            nodes.add(index)
            seen_tensors.update(node.output)
    return nodes


def _reshape_text(view: GraphView, index: int) -> str | None:
    node = view.nodes[index]
    shape = view.shape(node.input[0])
    target = view.const_value(node.input[1]) if len(node.input) > 1 else None
    if target is None:
        value = evaluate(view, node.input[1]) if len(node.input) > 1 else None
        if value is None or any(known(item) is None for item in value.items):
            return None
        target = [known(item) for item in value.items]
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    target = [int(t) for t in list(target)]
    count = math.prod(shape)
    fixed = 1
    for position, item in enumerate(target):
        if item == 0 and position < len(shape):
            fixed *= shape[position]
        elif item != -1:
            fixed *= item
    fits = count % fixed == 0 if -1 in target else count == fixed
    if fits:
        return None
    return (
        f"Reshape '{view.key(index)}' has the fixed target {target}, which a "
        f"{'x'.join(map(str, shape))} input (at {SCALE}x the input size) does not fill"
    )


def _fc_text(view: GraphView, index: int) -> str | None:
    node = view.nodes[index]
    weight = view.constant_tensor(node.input[1]) if len(node.input) > 1 else None
    shape = view.shape(node.input[0])
    if weight is None or len(weight.dims) != 2 or shape is None or len(shape) != 2 or not isinstance(shape[1], int):
        return None
    transposed = node.op_type == "MatMul" or not any(a.name == "transB" and a.i for a in node.attribute)
    inputs = weight.dims[0] if transposed else weight.dims[1]
    if shape[1] == inputs:
        return None
    return (
        f"{node.op_type} '{view.key(index)}' (not rewritten) takes {inputs} inputs; at {SCALE}x the input size "
        f"it gets {shape[1]}"
    )
