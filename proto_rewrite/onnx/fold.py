"""Fold the constant subgraphs that compute an FC's weight or bias.

Exporters do not always store an FC weight as it is used: the model-zoo Inception v1 reshapes it
from an initializer, others transpose it, cast a float16 copy to float32 or scale it by a constant.
:func:`fold_constant` follows such a subgraph back to its leaves (initializers and Constant nodes)
through a few ops (Identity, Cast, Reshape, Flatten, Squeeze, Unsqueeze, Transpose, and Add / Sub /
Mul / Div of two such values), works out the result's shape and type without reading any data,
and returns it as a lazy tensor: its values are computed with numpy (one rule per op) when the
model is written. A chain that only changes the shape (Identity, Reshape, Flatten, Squeeze,
Unsqueeze) of one leaf yields the leaf's own bytes, streamed as they are.

Nothing here changes the model. The caller writes only the folded tensor and removes the nodes that
computed it (``Folded.nodes``) once nothing else reads them. A subgraph whose initializer (or
step) a node outside it also reads is not folded (:func:`shared_with`): that tensor must stay, and
its data would be stored twice.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from onnx import TensorProto

from proto_rewrite.onnx.graph import DEFAULT_DOMAINS, GraphView, attribute
from proto_rewrite.onnx.tensors import DerivedTensor, StoredTensor, raw_dtype

MAX_DEPTH = 16  # ops between the operand and a leaf
# Data types folded: those numpy holds exactly (bfloat16 and the float8s are raw bits here).
FOLDABLE_TYPES = {
    TensorProto.FLOAT,
    TensorProto.DOUBLE,
    TensorProto.FLOAT16,
    TensorProto.INT8,
    TensorProto.UINT8,
    TensorProto.INT16,
    TensorProto.UINT16,
    TensorProto.INT32,
    TensorProto.UINT32,
    TensorProto.INT64,
    TensorProto.UINT64,
}
FLOATS = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16}


@dataclass(frozen=True)
class Folded:
    """A constant computed by a subgraph: its lazy value and what computes it."""

    name: str
    tensor: DerivedTensor
    nodes: frozenset[int]  # every node of the subgraph, the Constant leaves included
    leaves: tuple[str, ...]  # the initializers and Constant outputs it reads, sorted
    producer: int  # the subgraph's last node: it writes ``name``


@dataclass
class _Value:
    dims: tuple[int, ...]
    data_type: int
    compute: Callable[[], np.ndarray]
    same_bytes: StoredTensor | None  # the leaf whose bytes these are, in this order


def fold_constant(view: GraphView, name: str) -> Folded | None:
    """The folded value of ``name`` when a subgraph of constants computes it, else None. An
    initializer or Constant node on its own is not a subgraph: :meth:`GraphView.constant_tensor`
    answers for those."""
    cache = view.folds
    if name not in cache:
        cache[name] = _fold_top(view, name)
    return cache[name]


def _fold_top(view: GraphView, name: str) -> Folded | None:
    if view.constant_tensor(name) is not None or view.producer_of(name) is None:
        return None
    nodes: set[int] = set()
    leaves: set[str] = set()
    value = _fold(view, name, nodes, leaves, 0)
    if value is None:
        return None
    inferred = view.shape(name)
    if inferred is not None and all(isinstance(d, int) for d in inferred) and tuple(inferred) != value.dims:
        return None  # shape inference disagrees: better not fold than guess
    found = view.type(name)
    if found is not None and found.elem_type and found.elem_type != value.data_type:
        return None
    return Folded(
        name, _tensor(name, value, view, leaves), frozenset(nodes), tuple(sorted(leaves)), view.producer[name]
    )


def shared_with(view: GraphView, folded: Folded) -> str:
    """Who outside the subgraph also reads one of its tensors (a leaf initializer, a step), or "".
    Such a tensor must stay, so folding would store its data twice: refused, as for a weight read
    by two nodes. Scalars and the integer shapes and axes do not count."""
    tensors = set(folded.leaves)
    for index in folded.nodes:
        tensors.update(name for name in view.nodes[index].output if name)
    tensors.discard(folded.name)
    for name in sorted(tensors):
        if not _is_weight_data(view, name):
            continue
        readers = sorted({view.label(i) for i, _ in view.uses(name) if i not in folded.nodes})
        if view.is_graph_output(name):
            readers.append("a graph output")
        if readers:
            return f"'{name}' is also read by {', '.join(readers)}"
    return ""


def _is_weight_data(view: GraphView, name: str) -> bool:
    stored = view.constant_tensor(name)
    if stored is not None:
        data_type, dims = stored.data_type, tuple(stored.dims)
    else:
        found = view.type(name)
        if found is None:
            return True
        data_type, dims = found.elem_type, found.shape
    if data_type not in FLOATS:
        return False
    return dims is None or not all(isinstance(d, int) for d in dims) or math.prod(dims) != 1


def why_not_constant(view: GraphView, name: str) -> str:
    """Where the subgraph computing ``name`` stops being foldable: "graph input 'w'", "Relu 'r'"..."""
    seen: set[str] = set()
    stack = [name]
    while stack:
        current = stack.pop()
        if current in seen or view.constant_tensor(current) is not None:
            continue
        seen.add(current)
        if current in view.graph_inputs or view.is_overridable(current):
            return f"graph input '{current}'"
        found = view.producer_of(current)
        if found is None:
            return f"'{current}', which nothing produces"
        index, node = found
        if node.domain not in DEFAULT_DOMAINS or node.op_type not in _RULES:
            return view.label(index)
        stack.extend(reversed([n for n in node.input if n]))
    return f"{view.label(view.producer[name])}, whose result proto-rewrite could not work out"


def _tensor(name: str, value: _Value, view: GraphView, leaves: set[str]) -> DerivedTensor:
    if value.same_bytes is not None:
        source = value.same_bytes
        return DerivedTensor(
            name, value.dims, value.data_type, source.data_chunks, external=source.is_external, source=source
        )
    dtype = raw_dtype(value.data_type)

    def blocks():
        yield np.ascontiguousarray(value.compute(), dtype=dtype)

    external = any(getattr(view.constant_tensor(leaf), "is_external", False) for leaf in leaves)
    return DerivedTensor(name, value.dims, value.data_type, blocks, external=external)


def _fold(view: GraphView, name: str, nodes: set[int], leaves: set[str], depth: int) -> _Value | None:
    leaf = view.constant_tensor(name)
    if leaf is not None:
        if leaf.data_type not in FOLDABLE_TYPES:
            return None
        producer = view.producer.get(name)
        if producer is not None:
            nodes.add(producer)
        leaves.add(name)
        return _Value(
            tuple(leaf.dims),
            leaf.data_type,
            lambda: np.asarray(leaf.array()).reshape(leaf.dims),
            leaf if isinstance(leaf, StoredTensor) else None,
        )
    found = view.producer_of(name)
    if found is None or depth >= MAX_DEPTH:
        return None
    index, node = found
    rule = _RULES.get(node.op_type)
    if node.domain not in DEFAULT_DOMAINS or rule is None or len(node.output) != 1:
        return None
    nodes.add(index)
    try:
        return rule(view, node, nodes, leaves, depth + 1)
    except (IndexError, ValueError, TypeError, OverflowError):
        return None


def _data(view, node, nodes, leaves, depth) -> _Value | None:
    if not node.input or not node.input[0]:
        return None
    return _fold(view, node.input[0], nodes, leaves, depth)


def _ints(view: GraphView, node, position: int, nodes: set[int]) -> list[int] | None:
    """A small constant input (a shape, axes) as ints; its Constant node joins the subgraph."""
    if position >= len(node.input) or not node.input[position]:
        return None
    value = view.const_value(node.input[position])
    if value is None or value.dtype.kind not in "iu" or value.ndim > 1:
        return None
    producer = view.producer.get(node.input[position])
    if producer is not None:
        nodes.add(producer)
    return [int(v) for v in value.reshape(-1)]


def _axes(view: GraphView, node, nodes: set[int]) -> list[int] | None:
    """Squeeze / Unsqueeze axes: an attribute before opset 13, the optional second input from 13."""
    if view.opset < 13:
        axes = attribute(node, "axes", None)
        return None if axes is None else [int(a) for a in axes]
    return _ints(view, node, 1, nodes)


def _reshaped(value: _Value, dims: tuple[int, ...]) -> _Value:
    if math.prod(dims) != math.prod(value.dims):
        raise ValueError("element count")
    compute = value.compute
    return _Value(dims, value.data_type, lambda: compute().reshape(dims), value.same_bytes)


def _identity(view, node, nodes, leaves, depth):
    return _data(view, node, nodes, leaves, depth)


def _reshape(view, node, nodes, leaves, depth):
    value = _data(view, node, nodes, leaves, depth)
    target = _ints(view, node, 1, nodes) if view.opset >= 5 else attribute(node, "shape", None)
    if value is None or target is None:
        return None
    allowzero = bool(attribute(node, "allowzero", 0))
    dims = [value.dims[i] if d == 0 and not allowzero else d for i, d in enumerate(target)]
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        return None
    if -1 in dims:
        rest = math.prod(d for d in dims if d != -1)
        if rest == 0 or math.prod(value.dims) % rest:
            return None
        dims[dims.index(-1)] = math.prod(value.dims) // rest
    return _reshaped(value, tuple(dims))


def _flatten(view, node, nodes, leaves, depth):
    value = _data(view, node, nodes, leaves, depth)
    if value is None:
        return None
    axis = int(attribute(node, "axis", 1))
    axis += len(value.dims) if axis < 0 else 0
    if not 0 <= axis <= len(value.dims):
        return None
    return _reshaped(value, (math.prod(value.dims[:axis]), math.prod(value.dims[axis:])))


def _squeeze(view, node, nodes, leaves, depth):
    value = _data(view, node, nodes, leaves, depth)
    if value is None:
        return None
    axes = _axes(view, node, nodes)
    rank = len(value.dims)
    if axes is None:
        axes = [i for i, d in enumerate(value.dims) if d == 1]
    axes = {a + rank if a < 0 else a for a in axes}
    if any(not 0 <= a < rank or value.dims[a] != 1 for a in axes):
        return None
    return _reshaped(value, tuple(d for i, d in enumerate(value.dims) if i not in axes))


def _unsqueeze(view, node, nodes, leaves, depth):
    value = _data(view, node, nodes, leaves, depth)
    axes = _axes(view, node, nodes)
    if value is None or axes is None:
        return None
    rank = len(value.dims) + len(axes)
    axes = {a + rank if a < 0 else a for a in axes}
    if len(axes) != len(set(axes)) or any(not 0 <= a < rank for a in axes):
        return None
    rest = iter(value.dims)
    return _reshaped(value, tuple(1 if i in axes else next(rest) for i in range(rank)))


def _transpose(view, node, nodes, leaves, depth):
    value = _data(view, node, nodes, leaves, depth)
    if value is None:
        return None
    rank = len(value.dims)
    perm = attribute(node, "perm", None)
    perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]
    if sorted(perm) != list(range(rank)):
        return None
    if perm == list(range(rank)):
        return value
    compute = value.compute
    return _Value(tuple(value.dims[p] for p in perm), value.data_type, lambda: np.transpose(compute(), perm), None)


def _cast(view, node, nodes, leaves, depth):
    value = _data(view, node, nodes, leaves, depth)
    to = attribute(node, "to", None)
    if value is None or to not in FOLDABLE_TYPES:
        return None
    if to == value.data_type:
        return value
    if to not in FLOATS and value.data_type in FLOATS:
        return None  # float -> int rounding and saturation rules: not folded
    compute, dtype = value.compute, raw_dtype(to)
    return _Value(value.dims, to, lambda: compute().astype(dtype), None)


_ARITHMETIC = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


def _arithmetic(view, node, nodes, leaves, depth):
    if len(node.input) != 2:
        return None
    left = _fold(view, node.input[0], nodes, leaves, depth)
    right = _fold(view, node.input[1], nodes, leaves, depth)
    if left is None or right is None or left.data_type != right.data_type or left.data_type not in FLOATS:
        return None
    if view.opset < 7 and (attribute(node, "broadcast", 0) or left.dims != right.dims):
        return None  # the legacy broadcast attribute: not followed
    dims = tuple(np.broadcast_shapes(left.dims, right.dims))
    if math.prod(dims) > max(math.prod(left.dims), math.prod(right.dims)):
        return None  # an outer-product broadcast: the result would outgrow every stored tensor
    op, dtype = _ARITHMETIC[node.op_type], raw_dtype(left.data_type)
    a, b = left.compute, right.compute
    return _Value(dims, left.data_type, lambda: op(a(), b()).astype(dtype, copy=False), None)


_RULES = {
    "Identity": _identity,
    "Reshape": _reshape,
    "Flatten": _flatten,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    "Transpose": _transpose,
    "Cast": _cast,
    **{op: _arithmetic for op in _ARITHMETIC},
}
