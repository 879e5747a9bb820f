"""Evaluate a Reshape target symbolically: constants, and the exporters' shape chains.

``x.view(x.size(0), -1)`` exports (legacy PyTorch exporter) as Shape -> Gather -> Unsqueeze ->
Concat -> Reshape; the un-optimised dynamo exporter writes Shape(start 0, end 1) -> Squeeze ->
Reshape([-1]) -> Concat. Such a target is not a constant but it is known: ``[dim 0 of x, -1]``.
:func:`evaluate` follows these chains, one rule per op (Shape with start / end, Gather, Slice,
Squeeze, Unsqueeze, Reshape, Concat, Cast, Identity, Add / Sub / Mul / Div and ReduceProd on known
values, Constant, ConstantOfShape), and returns the value as a scalar or a list of ints and
:class:`Dim` references, with the nodes it went through, or None when the chain holds anything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, numpy_helper

from proto_rewrite.onnx.graph import DEFAULT_DOMAINS, GraphView, attribute

MAX_DEPTH = 32
INTEGER_TYPES = {
    TensorProto.INT64,
    TensorProto.INT32,
    TensorProto.INT16,
    TensorProto.INT8,
    TensorProto.UINT64,
    TensorProto.UINT32,
    TensorProto.UINT16,
    TensorProto.UINT8,
}


@dataclass(frozen=True)
class Dim:
    """Dimension ``index`` of tensor ``tensor`` (``value`` when the shape is known; ``symbol``: its
    name when it is symbolic, the same name for the same dimension)."""

    tensor: str
    index: int
    value: int | None
    symbol: str | None = None


@dataclass
class Value:
    rank: int  # 0 (scalar) or 1
    items: list  # int or Dim


def known(item) -> int | None:
    if isinstance(item, Dim):
        return item.value
    return int(item)


def evaluate(view: GraphView, name: str, nodes: set[int] | None = None, depth: int = 0) -> Value | None:
    """The value of an integer shape tensor; ``nodes`` collects the node indices it depends on."""
    if nodes is None:
        nodes = set()
    if depth > MAX_DEPTH:
        return None
    found = view.producer_of(name)
    constant = view.const_value(name)
    if constant is not None:
        if found is not None:
            nodes.add(found[0])
        if constant.dtype.kind not in "iu" or constant.ndim > 1:
            return None
        return Value(constant.ndim, [int(v) for v in constant.reshape(-1)])
    if found is None:
        return None
    index, node = found
    if node.domain not in DEFAULT_DOMAINS:
        return None
    nodes.add(index)
    rule = _RULES.get(node.op_type)
    if rule is None:
        return None
    try:
        return rule(view, node, nodes, depth + 1)
    except (IndexError, ValueError, TypeError):
        return None


def _input(view, node, position, nodes, depth) -> Value | None:
    if position >= len(node.input) or not node.input[position]:
        return None
    return evaluate(view, node.input[position], nodes, depth)


def _const(view, node, position, nodes) -> np.ndarray | None:
    """A small integer constant input; the Constant node that makes it joins ``nodes``."""
    if position >= len(node.input) or not node.input[position]:
        return None
    value = view.const_value(node.input[position])
    if value is None or value.dtype.kind not in "iu":
        return None
    producer = view.producer.get(node.input[position])
    if producer is not None:
        nodes.add(producer)
    return value


def _ints(view, node, position, nodes=None) -> list[int] | None:
    value = _const(view, node, position, set() if nodes is None else nodes)
    return None if value is None else [int(v) for v in value.reshape(-1)]


def _shape(view, node, nodes, depth):
    tensor = node.input[0]
    shape = view.shape(tensor)
    if shape is None:
        return None
    items = [
        Dim(tensor, i, d if isinstance(d, int) else None, d if isinstance(d, str) and d else None)
        for i, d in enumerate(shape)
    ]
    start = int(attribute(node, "start", 0))
    end = attribute(node, "end", None)
    return Value(1, items[start : None if end is None else int(end)])  # clamped like ONNX, negatives too


def _gather(view, node, nodes, depth):
    data = _input(view, node, 0, nodes, depth)
    indices = _const(view, node, 1, nodes)
    if (
        data is None
        or data.rank != 1
        or indices is None
        or attribute(node, "axis", 0) not in (0, -1)
        or indices.ndim > 1
    ):
        return None
    count = len(data.items)
    picked = []
    for i in indices.reshape(-1):
        if not -count <= int(i) < count:
            return None
        picked.append(data.items[int(i)])
    return Value(indices.ndim, picked)


def _axes(view, node, nodes, position: int, opset: int) -> list[int] | None:
    """Axes as an attribute (before ``opset``) or as the input at ``position``; [] when absent."""
    if view.opset < opset:
        axes = attribute(node, "axes", None)
        return [] if axes is None else [int(a) for a in axes]
    if position >= len(node.input) or not node.input[position]:
        return []
    value = _const(view, node, position, nodes)
    return None if value is None else [int(v) for v in value.reshape(-1)]


def _unsqueeze(view, node, nodes, depth):
    data = _input(view, node, 0, nodes, depth)
    axes = _axes(view, node, nodes, 1, 13)
    if data is None or data.rank != 0 or axes not in ([0], [-1]):
        return None
    return Value(1, data.items)


def _squeeze(view, node, nodes, depth):
    data = _input(view, node, 0, nodes, depth)
    axes = _axes(view, node, nodes, 1, 13)
    if data is None or data.rank != 1 or len(data.items) != 1 or axes not in ([], [0], [-1]):
        return None
    return Value(0, data.items)


def _reshape(view, node, nodes, depth):
    """A scalar or a list reshaped to a list ([-1], [n]) or a scalar ([])."""
    data = _input(view, node, 0, nodes, depth)
    target = _input(view, node, 1, nodes, depth) if len(node.input) > 1 else None
    if data is None or target is None or target.rank != 1:
        return None
    dims = [known(item) for item in target.items]
    count = len(data.items)
    if dims == []:
        return Value(0, data.items) if count == 1 else None
    if len(dims) == 1 and dims[0] in (-1, count):
        return Value(1, data.items)
    return None


def _reduce_prod(view, node, nodes, depth):
    data = _input(view, node, 0, nodes, depth)
    axes = _axes(view, node, nodes, 1, 18)
    if data is None or axes is None:
        return None
    if not axes and attribute(node, "noop_with_empty_axes", 0):
        return data
    if data.rank != 1 or axes not in ([], [0], [-1]):
        return None
    values = [known(item) for item in data.items]
    if None in values:
        return None
    product = math.prod(values)
    return Value(1, [product]) if attribute(node, "keepdims", 1) else Value(0, [product])


def _constant_of_shape(view, node, nodes, depth):
    shape = _input(view, node, 0, nodes, depth)
    if shape is None or shape.rank != 1 or len(shape.items) > 1:
        return None
    value = attribute(node, "value", None)
    if value is None:
        fill = 0
    else:
        array = numpy_helper.to_array(value).reshape(-1)
        if array.dtype.kind not in "iu" or array.size != 1:
            return None
        fill = int(array[0])
    if not shape.items:
        return Value(0, [fill])
    count = known(shape.items[0])
    return None if count is None or count < 0 else Value(1, [fill] * count)


def _concat(view, node, nodes, depth):
    if attribute(node, "axis", 0) not in (0, -1):
        return None
    items = []
    for position in range(len(node.input)):
        part = _input(view, node, position, nodes, depth)
        if part is None or part.rank != 1:
            return None
        items += part.items
    return Value(1, items)


def _slice(view, node, nodes, depth):
    data = _input(view, node, 0, nodes, depth)
    if data is None or data.rank != 1:
        return None
    if view.opset < 10:
        starts, ends = attribute(node, "starts"), attribute(node, "ends")
        axes, steps = attribute(node, "axes", [0]), [1]
    else:
        starts, ends = _ints(view, node, 1, nodes), _ints(view, node, 2, nodes)
        axes = _ints(view, node, 3, nodes) if len(node.input) > 3 and node.input[3] else [0]
        steps = _ints(view, node, 4, nodes) if len(node.input) > 4 and node.input[4] else [1]
    if None in (starts, ends, axes, steps) or list(axes) not in ([0], [-1]) or steps[0] == 0:
        return None
    items = _sliced(data.items, starts[0], ends[0], steps[0])
    return None if items is None else Value(1, items)


def _sliced(items: list, start: int, end: int, step: int) -> list | None:
    """ONNX Slice on a list: negative bounds count from the end, then clamped ([0, n] stepping
    forwards, [0, n - 1] and [-1, n - 1] backwards). Not Python's slicing, which differs backwards."""
    count = len(items)
    if step < 0 and (count == 0 or end >= count):
        return None  # an end past the last item stepping backwards: onnxruntime and the spec disagree
    start += count if start < 0 else 0
    end += count if end < 0 else 0
    if step > 0:
        start, end = min(max(start, 0), count), min(max(end, 0), count)
    else:
        start, end = min(max(start, 0), count - 1), min(max(end, -1), count - 1)
    return [items[i] for i in range(start, end, step)]


def _passthrough(view, node, nodes, depth):
    return _input(view, node, 0, nodes, depth)


def _cast(view, node, nodes, depth):
    if attribute(node, "to", None) not in INTEGER_TYPES:
        return None  # a float shape value (interpolation sizes): not followed
    return _input(view, node, 0, nodes, depth)


def _arithmetic(view, node, nodes, depth):
    left = _input(view, node, 0, nodes, depth)
    right = _input(view, node, 1, nodes, depth)
    if left is None or right is None:
        return None
    a = [known(i) for i in left.items]
    b = [known(i) for i in right.items]
    if None in a or None in b:
        return None
    a = np.array(a, np.int64).reshape([-1] if left.rank else [])
    b = np.array(b, np.int64).reshape([-1] if right.rank else [])
    if node.op_type == "Div":
        if np.any(b == 0) or np.any(np.broadcast_to(a, np.broadcast_shapes(a.shape, b.shape)) % b):
            return None  # integer Div truncates, floor division floors: only exact quotients
        result = a // b
    else:
        result = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract}[node.op_type](a, b)
    return Value(result.ndim, [int(v) for v in result.reshape(-1)])


_RULES = {
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Slice": _slice,
    "Cast": _cast,
    "Identity": _passthrough,
    "Reshape": _reshape,
    "ReduceProd": _reduce_prod,
    "ConstantOfShape": _constant_of_shape,
    "Mul": _arithmetic,
    "Add": _arithmetic,
    "Sub": _arithmetic,
    "Div": _arithmetic,
}


def chain_nodes(view: GraphView, name: str) -> set[int]:
    """The nodes that compute an integer shape tensor, back to the Shape nodes that start it (their
    data inputs excluded): what a Reshape target's chain holds when :func:`evaluate` cannot follow
    it but shape inference knew the Reshape's result."""
    found: set[int] = set()
    stack = [name]
    while stack:
        current = stack.pop()
        producer = view.producer.get(current)
        if producer is None or producer in found:
            continue
        node = view.nodes[producer]
        types = [view.type(out) for out in node.output if out]
        if node.domain not in DEFAULT_DOMAINS or any(t is None or t.elem_type not in INTEGER_TYPES for t in types):
            continue  # data, not a shape
        found.add(producer)
        if node.op_type not in ("Shape", "Size"):
            stack.extend(n for n in node.input if n)
    return found
