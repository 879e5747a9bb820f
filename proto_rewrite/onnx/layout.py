"""How the nodes downstream of a rewritten FC carry its 4-D score map: one rule per operator.

A rewritten FC writes (N, K, h, w) where the model had (N, K): (N, K, 1, 1) at the planning size,
a map of h x w cells at a larger one. Every node that reads such a map is asked here whether it
computes, cell by cell, on the map what it computed on the (N, K) row, and what has to change
for that (:class:`Carry`): an attribute (Softmax's axis becomes 1), a constant operand reshaped
from (K) or (1, K) to (K, 1, 1) or (1, K, 1, 1) so it broadcasts over the cells, a new constant
input (Slice's axes), a channels-last detour (Softmax below opset 13 flattens from its axis on),
or nothing at all. A Flatten / Reshape that only restores (N, K) is dropped (``alias``): what
reads it reads the map. An operator without a rule, or one used in a way its rule does not cover,
ends the map region (:class:`Stop`, with a reason code): the planner puts a Flatten in front of it.

The table is ``RULES``; a rule is ``rule(view, index, maps) -> Carry | Stop``, where ``maps`` holds
the tensors that are maps so far. Adding an operator is adding one function and one entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proto_rewrite.onnx.graph import DEFAULT_DOMAINS, GraphView, attribute
from proto_rewrite.onnx.patterns import Failure
from proto_rewrite.onnx.shape_expr import evaluate, known

# Stop reasons (the plan's edits quote them).
NO_RULE = "no-layout-rule"
READS_VECTOR = "reads-vector"  # an operand that is neither a map nor a constant
CONSTANT_SHAPE = "constant-shape"  # a constant that does not broadcast like a per-feature vector
NOT_FEATURE_AXIS = "not-feature-axis"  # the op works across the batch or every axis, not per feature
DROPS_AXIS = "drops-feature-axis"  # keepdims=0 / a scalar index: the cells would change place
MASK_USED = "mask-used"  # Dropout's mask is read
TRAINING = "training-mode"
RESHAPES = "reshape"  # a Flatten / Reshape that does more than restore (N, K)

STOP_TEXT = {
    NO_RULE: "proto-rewrite has no rule for carrying a score map through this operator",
    READS_VECTOR: "it also reads a tensor that is neither a score map nor a constant",
    CONSTANT_SHAPE: "its constant operand does not broadcast per feature",
    NOT_FEATURE_AXIS: "it works across another axis than the features",
    DROPS_AXIS: "it drops the feature axis (keepdims=0 or a scalar index)",
    MASK_USED: "its mask output is read",
    TRAINING: "it runs in training mode",
    RESHAPES: "it reshapes the features to something other than (N, K)",
}

UNARY = frozenset(
    """Relu LeakyRelu Sigmoid Tanh Clip Dropout Identity Elu Selu Celu HardSigmoid HardSwish
    Softplus Softsign Gelu Mish Abs Neg Exp Log Sqrt Reciprocal Erf Cast CastLike Floor Ceil Round Sign
    ThresholdedRelu Shrink Sin Cos Tan Asin Acos Atan Sinh Cosh Asinh Acosh Atanh IsNaN IsInf Not
    Swish""".split()
)
BINARY = frozenset(
    """Add Sub Mul Div Pow Max Min Sum Mean PRelu Mod Equal Less Greater LessOrEqual
    GreaterOrEqual And Or Xor Where BitShift""".split()
)
SOFTMAX = frozenset({"Softmax", "LogSoftmax", "Hardmax"})
REDUCE = frozenset(
    """ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceLogSum
    ReduceLogSumExp ReduceSumSquare""".split()
)
PER_CELL_SOFTMAX_OPSET = 13  # from here on Softmax(axis=1) of a 4-D map is per cell


@dataclass(frozen=True)
class Carry:
    """The node works on maps, after these changes."""

    attrs: dict = field(default_factory=dict)  # attribute name -> new value
    reshape: dict = field(default_factory=dict)  # input position -> new dims of that constant operand
    new_inputs: dict = field(default_factory=dict)  # input position -> int64 values of a new constant
    channels_last: bool = False  # Softmax below opset 13: Transpose to NHWC, axis 3, back
    alias: bool = False  # a Flatten / Reshape / Unsqueeze that only restores (N, K): dropped
    what: str = ""  # for the plan: what changes

    @property
    def changes_node(self) -> bool:
        return bool(self.attrs or self.reshape or self.new_inputs or self.channels_last)


@dataclass(frozen=True)
class Stop(Failure):
    """The map region ends in front of this node (``reason``: one of the codes above). Falsy."""

    @property
    def text(self) -> str:
        return STOP_TEXT[self.reason] + (f" ({self.detail})" if self.detail else "")


def carry(view: GraphView, index: int, maps) -> Carry | Stop:
    """How node ``index`` carries the maps it reads (``maps``: the tensors that are maps)."""
    node = view.nodes[index]
    if node.domain not in DEFAULT_DOMAINS:
        return Stop(NO_RULE, f"{node.domain}.{node.op_type}")
    rule = RULES.get(node.op_type)
    if rule is None:
        return Stop(NO_RULE, node.op_type)
    return rule(view, index, maps)


# -- element-wise ------------------------------------------------------------------------------


def _unary(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    if any(name in maps for name in node.input[1:]):
        return Stop(READS_VECTOR, "a map as its parameter")
    if node.op_type == "Dropout":
        if (
            len(node.output) > 1
            and node.output[1]
            and (view.uses(node.output[1]) or view.is_graph_output(node.output[1]))
        ):
            return Stop(MASK_USED)
        if len(node.input) > 2 and node.input[2]:
            value = view.const_value(node.input[2])
            if value is None or bool(value.reshape(-1)[0]):
                return Stop(TRAINING, "training_mode is not a constant false")
    return Carry()


def _binary(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    reshape = {}
    for position, name in enumerate(node.input):
        if not name or name in maps:
            continue
        tensor = view.constant_tensor(name)
        if tensor is None:
            return Stop(READS_VECTOR, f"'{name}'")
        dims = tuple(tensor.dims)
        if tensor.numel == 1 and len(dims) <= 4:
            continue
        if len(dims) == 1:
            reshape[position] = (dims[0], 1, 1)
        elif len(dims) == 2:
            reshape[position] = dims + (1, 1)
        else:
            return Stop(CONSTANT_SHAPE, f"'{name}' has shape {list(dims)}")
    what = ", ".join(f"'{node.input[p]}' reshaped to {list(d)}" for p, d in sorted(reshape.items()))
    return Carry(reshape=reshape, what=what)


def _batch_norm(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    if any(name in maps for name in node.input[1:]):
        return Stop(READS_VECTOR, "a map as a parameter")
    if any(node.output[1:]) or attribute(node, "training_mode", 0):
        return Stop(TRAINING)
    return Carry()  # scale, bias, mean and variance are per channel: axis 1 of the map


# -- over the feature axis -------------------------------------------------------------------


def _feature_axis(value, default) -> bool:
    axis = default if value is None else int(value)
    return axis in (1, -1)


def _softmax(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    default = -1 if view.opset >= PER_CELL_SOFTMAX_OPSET else 1
    if not _feature_axis(attribute(node, "axis"), default):
        return Stop(NOT_FEATURE_AXIS, f"axis {attribute(node, 'axis', default)}")
    if view.opset >= PER_CELL_SOFTMAX_OPSET:
        return Carry(attrs={"axis": 1}, what="axis 1: over the classes of each cell")
    return Carry(
        channels_last=True,
        what=f"opset {view.opset} < 13 flattens from the axis on: over axis 3 of the "
        "channels-last map, between two Transposes",
    )


def _arg_or_topk(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    default = -1 if node.op_type == "TopK" else 0
    if not _feature_axis(attribute(node, "axis"), default):
        return Stop(NOT_FEATURE_AXIS, f"axis {attribute(node, 'axis', default)}")
    if node.op_type != "TopK" and not attribute(node, "keepdims", 1):
        return Stop(DROPS_AXIS, "keepdims=0")
    if any(name in maps for name in node.input[1:]):
        return Stop(READS_VECTOR)
    return Carry(attrs={"axis": 1}, what="axis 1")


def _reduce(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    if not attribute(node, "keepdims", 1):
        return Stop(DROPS_AXIS, "keepdims=0")
    from_input = len(node.input) > 1 and node.input[1]
    if from_input:
        value = view.const_value(node.input[1])
        if value is None:
            return Stop(NOT_FEATURE_AXIS, "its axes are not a constant")
        axes = [int(a) for a in value.reshape(-1)]
    else:
        axes = list(attribute(node, "axes", []) or [])
    if not axes or any(a not in (1, -1) for a in axes):
        return Stop(NOT_FEATURE_AXIS, f"axes {axes or 'all'}")
    if from_input:
        return Carry(new_inputs={1: [1]}, what="axes [1]")
    return Carry(attrs={"axes": [1]}, what="axes [1]")


def _concat(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    if not _feature_axis(attribute(node, "axis"), 1):
        return Stop(NOT_FEATURE_AXIS, f"axis {attribute(node, 'axis')}")
    others = [name for name in node.input if name and name not in maps]
    if others:
        return Stop(READS_VECTOR, f"'{others[0]}'")
    return Carry(attrs={"axis": 1}, what="axis 1")


def _split(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    if not _feature_axis(attribute(node, "axis"), 0):
        return Stop(NOT_FEATURE_AXIS, f"axis {attribute(node, 'axis', 0)}")
    if any(name in maps for name in node.input[1:]):
        return Stop(READS_VECTOR)
    return Carry(attrs={"axis": 1}, what="axis 1")


def _gather(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    if not _feature_axis(attribute(node, "axis"), 0):
        return Stop(NOT_FEATURE_AXIS, f"axis {attribute(node, 'axis', 0)}")
    if node.input[1] in maps:
        return Stop(READS_VECTOR, "its indices are a map")
    rank = view.rank(node.input[1])
    if rank != 1:
        return Stop(DROPS_AXIS, "its indices are not a 1-D tensor")
    return Carry(attrs={"axis": 1}, what="axis 1")


def _slice(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    if any(name in maps for name in node.input[1:]):
        return Stop(READS_VECTOR)
    if view.opset < 10:
        starts = list(attribute(node, "starts", []) or [])
        axes = list(attribute(node, "axes", []) or range(len(starts)))
    else:
        starts_value = view.const_value(node.input[1]) if len(node.input) > 1 else None
        if len(node.input) > 3 and node.input[3]:
            value = view.const_value(node.input[3])
            if value is None:
                return Stop(NOT_FEATURE_AXIS, "its axes are not a constant")
            axes = [int(a) for a in value.reshape(-1)]
        elif starts_value is not None:
            axes = list(range(starts_value.size))
        else:
            return Stop(NOT_FEATURE_AXIS, "its axes are not known")
    axes = [a + 2 if a < 0 else a for a in axes]  # the 2-D tensor's axes
    if any(a not in (0, 1) for a in axes):
        return Stop(NOT_FEATURE_AXIS, f"axes {axes}")
    if view.opset < 10:
        return Carry(attrs={"axes": axes}, what=f"axes {axes}")
    return Carry(new_inputs={3: axes}, what=f"axes {axes}")


# -- reshapes that only restore (N, K) ----------------------------------------------------------


def _flatten(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    axis = int(attribute(node, "axis", 1))
    if axis not in (1, -1):
        return Stop(RESHAPES, f"Flatten axis {axis}")
    return Carry(alias=True, what="restores (N, K): dropped, its readers read the map")


def _reshape(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    name = node.input[0]
    if len(node.input) < 2 or node.input[1] in maps:
        return Stop(RESHAPES)
    shape = view.shape(name)
    target = evaluate(view, node.input[1], set())
    if shape is None or len(shape) != 2 or target is None or target.rank != 1 or len(target.items) != 2:
        return Stop(RESHAPES, "its target is not (N, K)")
    first, second = (known(item) for item in target.items)
    batch, width = shape
    allowzero = bool(attribute(node, "allowzero", 0))
    batch_ok = (
        (first == 0 and not allowzero)
        or (first is not None and first == batch)
        or (first is None and getattr(target.items[0], "index", None) == 0)
        or (first == -1 and second == width)
    )
    width_ok = second == -1 or (second is not None and second == width)
    if batch_ok and width_ok:
        return Carry(alias=True, what="restores (N, K): dropped, its readers read the map")
    return Stop(RESHAPES, f"target {[first, second]}")


def _unsqueeze(view: GraphView, index: int, maps) -> Carry | Stop:
    node = view.nodes[index]
    if view.opset >= 13:
        value = view.const_value(node.input[1]) if len(node.input) > 1 else None
        axes = None if value is None else [int(a) for a in value.reshape(-1)]
    else:
        axes = list(attribute(node, "axes", []) or [])
    if axes is None or sorted(a + 4 if a < 0 else a for a in axes) != [2, 3]:
        return Stop(RESHAPES, f"Unsqueeze axes {axes}")
    return Carry(alias=True, what="makes (N, K, 1, 1), which the map already is: dropped")


RULES = {
    **{op: _unary for op in UNARY},
    **{op: _binary for op in BINARY},
    **{op: _softmax for op in SOFTMAX},
    **{op: _reduce for op in REDUCE},
    "BatchNormalization": _batch_norm,
    "ArgMax": _arg_or_topk,
    "ArgMin": _arg_or_topk,
    "TopK": _arg_or_topk,
    "Concat": _concat,
    "Split": _split,
    "Gather": _gather,
    "Slice": _slice,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Unsqueeze": _unsqueeze,
}
