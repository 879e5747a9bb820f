"""Evaluate a Reshape target symbolically: constants, and the exporters' shape chains.

``x.view(x.size(0), -1)`` exports as Shape -> Gather -> Unsqueeze -> Concat -> Reshape. Its target
is not a constant but it is known: ``[dim 0 of x, -1]``. :func:`evaluate` follows such chains
(Shape, Gather, Unsqueeze, Squeeze, Concat, Slice, Cast, Identity and integer arithmetic on known
values) and returns the target as a list of ints and :class:`Dim` references, with the nodes it
went through, or None when the chain holds anything else.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from proto_rewrite.onnx.graph import DEFAULT_DOMAINS, GraphView, attribute

MAX_DEPTH = 32


@dataclass(frozen=True)
class Dim:
    """Dimension ``index`` of tensor ``tensor`` (``value`` when the shape is known)."""

    tensor: str
    index: int
    value: int | None


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


def _ints(view, node, position) -> list[int] | None:
    if position >= len(node.input) or not node.input[position]:
        return None
    value = view.const_value(node.input[position])
    return None if value is None else [int(v) for v in value.reshape(-1)]


def _shape(view, node, nodes, depth):
    tensor = node.input[0]
    shape = view.shape(tensor)
    if shape is None:
        return None
    items = [Dim(tensor, i, d if isinstance(d, int) else None) for i, d in enumerate(shape)]
    start = attribute(node, "start", 0)
    end = attribute(node, "end", None)
    return Value(1, items[start:end])


def _gather(view, node, nodes, depth):
    data = _input(view, node, 0, nodes, depth)
    indices = view.const_value(node.input[1])
    if data is None or data.rank != 1 or indices is None or attribute(node, "axis", 0) != 0:
        return None
    picked = [data.items[int(i)] for i in indices.reshape(-1)]
    return Value(indices.ndim, picked)


def _unsqueeze(view, node, nodes, depth):
    data = _input(view, node, 0, nodes, depth)
    axes = attribute(node, "axes", None)
    axes = list(axes) if axes is not None else _ints(view, node, 1)
    if data is None or data.rank != 0 or axes not in ([0], [-1]):
        return None
    return Value(1, data.items)


def _squeeze(view, node, nodes, depth):
    data = _input(view, node, 0, nodes, depth)
    if data is None or data.rank != 1 or len(data.items) != 1:
        return None
    return Value(0, data.items)


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
        starts, ends = _ints(view, node, 1), _ints(view, node, 2)
        axes = _ints(view, node, 3) if len(node.input) > 3 and node.input[3] else [0]
        steps = _ints(view, node, 4) if len(node.input) > 4 and node.input[4] else [1]
    if None in (starts, ends, axes, steps) or list(axes) not in ([0], [-1]):
        return None
    return Value(1, data.items[slice(starts[0], ends[0], steps[0])])


def _passthrough(view, node, nodes, depth):
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
    op = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.floor_divide}[node.op_type]
    result = op(np.array(a, np.int64).reshape([-1] if left.rank else []),
                np.array(b, np.int64).reshape([-1] if right.rank else []))
    return Value(result.ndim, [int(v) for v in result.reshape(-1)])


_RULES = {
    "Shape": _shape, "Gather": _gather, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Concat": _concat,
    "Slice": _slice, "Cast": _passthrough, "Identity": _passthrough,
    "Mul": _arithmetic, "Add": _arithmetic, "Sub": _arithmetic, "Div": _arithmetic,
}
