"""The FC patterns of ONNX graphs, and why a node does not match one.

An FC is a Gemm, or a MatMul with a constant 2-D weight (optionally followed by an Add of a
constant bias). A constant is an initializer, a Constant node, or a subgraph of constants that
``fold`` folds into one tensor (a reshaped, transposed, cast or scaled initializer). Its input is
one of:

* ``map``: a 4-D map (N, C, H, W) flattened by Flatten(axis 1), by a Reshape to (N, C*H*W) with a
  constant target or a shape chain ``shape_expr`` evaluates (the legacy and dynamo exporters'), or
  whose result shape inference knows to be (N, C*H*W), optionally after a Transpose to NHWC (the
  kernel is then permuted); a global pool's (N, C, 1, 1) result is a 1 x 1 map
  (:func:`global_pool_of`);
* ``pooled`` (--classifier-before-pool): the global average of a map (any form
  :func:`global_pool_of` knows) that nothing else reads, the FC moved before the pool;
* ``chain``: the output of an FC already rewritten (now (N, K, 1, 1)), possibly through the
  nodes that carry a score map (``onnx.layout``);
* ``vector``: any other 2-D tensor (an MLP, a pooled (N, C)): unsqueezed to (N, K, 1, 1).

Like onnxscript's rewrite rules, each check returns a :class:`Failure` carrying the reason code
when it does not hold, so every FC that is not rewritten is reported with why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from onnx import TensorProto

from proto_rewrite.onnx.fold import fold_constant, shared_with, why_not_constant
from proto_rewrite.onnx.graph import DEFAULT_DOMAINS, GraphView, attribute
from proto_rewrite.onnx.shape_expr import Dim, chain_nodes, evaluate, known
from proto_rewrite.onnx.tensors import FLOAT_TYPES, dtype_name
from proto_rewrite.rewrite_plan import Reason
from proto_rewrite.shape_text import tuple_text as _text

MAP, POOLED, CHAIN, VECTOR = "map", "pooled", "chain", "vector"

QUANTIZED_FC_OPS = {
    ("", "MatMulInteger"),
    ("", "QLinearMatMul"),
    ("com.microsoft", "QGemm"),
    ("com.microsoft", "MatMulNBits"),
    ("com.microsoft", "DynamicQuantizeMatMul"),
    ("com.microsoft", "MatMulIntegerToFloat"),
    ("com.microsoft", "QLinearMatMul"),
}
QUANTIZED_DTYPES = {TensorProto.INT8, TensorProto.UINT8, TensorProto.INT16, TensorProto.UINT16}
for _name in ("INT4", "UINT4", "FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ"):
    if hasattr(TensorProto, _name):
        QUANTIZED_DTYPES.add(getattr(TensorProto, _name))
UNSUPPORTED_DTYPE = getattr(Reason, "UNSUPPORTED_DTYPE", Reason.QUANTIZED)


@dataclass(frozen=True)
class Failure:
    """A check that did not hold (falsy), with the plan's reason code."""

    reason: Reason
    detail: str = ""

    def __bool__(self) -> bool:
        return False


def fail(reason: Reason, detail: str = "") -> Failure:
    return Failure(reason, detail)


@dataclass
class Operand:
    """A constant operand of an FC (weight or bias)."""

    name: str
    tensor: object  # StoredTensor / DerivedTensor
    constant_node: int | None = None  # index of the node that writes it (a Constant, or a folded subgraph's last)
    nodes: frozenset[int] = frozenset()  # every node that computes it (fold.fold_constant), constant_node included

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(self.tensor.dims)


@dataclass
class FcMatch:
    """An FC that can become a Conv, with everything the rewrite needs."""

    index: int
    key: str
    op: str  # "Gemm", "MatMul" or "MatMul+Add"
    output: str  # the tensor the FC (or its Add) writes: the Conv writes it
    weight: Operand
    transposed: bool  # weight stored (K, M)
    alpha: float
    bias: Operand | None
    beta: float
    kind: str  # MAP, POOLED, CHAIN or VECTOR
    source: str  # the tensor the Conv reads (VECTOR: the 2-D tensor to unsqueeze)
    batch: object  # N: int, str (symbolic) or None
    channels: int
    height: int
    width: int
    outputs: int
    channels_last: bool = False
    add: int | None = None  # the Add node folded in (MatMul+Add)
    flatten: int | None = None  # the Flatten / Reshape node
    shape_nodes: set[int] = field(default_factory=set)  # the Reshape target's shape chain
    transpose: int | None = None
    pool: int | None = None  # POOLED: the GlobalAveragePool node

    @property
    def kernel(self) -> tuple[int, int]:
        return (1, 1) if self.kind == POOLED else (self.height, self.width)

    @property
    def replaced(self) -> set[int]:
        """Nodes this match replaces with the Conv."""
        return {self.index} | ({self.add} if self.add is not None else set())


def fc_kind(view: GraphView, node) -> str | None:
    """ "Gemm", "MatMul", "quantized" for the nodes that are FC layers; None for the others."""
    if (node.domain if node.domain != "ai.onnx" else "", node.op_type) in QUANTIZED_FC_OPS:
        return "quantized"
    if node.domain not in DEFAULT_DOMAINS:
        return None
    if node.op_type == "Gemm" and len(node.input) >= 2 and node.output:
        return "Gemm"
    if node.op_type == "MatMul" and len(node.input) == 2 and node.output:
        weight = node.input[1]
        if _constant(view, weight) is not None or view.producer_op(weight) == "DequantizeLinear":
            return "MatMul"
        if view.rank(node.input[0]) == 2 and view.rank(weight) == 2:
            return "MatMul"  # an FC whose weight is computed: reported, not rewritten
    return None


def op_label(view: GraphView, index: int) -> str:
    node = view.nodes[index]
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"


def match_fc(
    view: GraphView,
    index: int,
    mapped: dict[str, str],
    *,
    classifier_before_pool: bool = False,
    taken: set[int] = frozenset(),
) -> FcMatch | Failure:
    """Match the FC at ``index``. ``mapped``: tensors already 4-D after the rewrite so far."""
    node = view.nodes[index]
    is_gemm = node.op_type == "Gemm"
    quantized = _quantized(view, index)
    if quantized is not None:
        return quantized
    if is_gemm:
        if attribute(node, "transA", 0):
            return fail(Reason.TRANS_A)
        transposed = not attribute(node, "transB", 0)
        alpha, beta = float(attribute(node, "alpha", 1.0)), float(attribute(node, "beta", 1.0))
    else:
        transposed, alpha, beta = True, 1.0, 1.0

    weight = _operand(view, node.input[1], index, "weight")
    if not weight:
        return weight
    if len(weight.dims) != 2:
        return fail(
            Reason.MATMUL_ND if not is_gemm else Reason.UNSUPPORTED_INPUT_RANK,
            f"weight '{weight.name}' has shape {list(weight.dims)}",
        )
    dtype = weight.tensor.data_type
    if dtype not in FLOAT_TYPES:
        reason = Reason.QUANTIZED if dtype in QUANTIZED_DTYPES else UNSUPPORTED_DTYPE
        return fail(reason, f"weight '{weight.name}' is {dtype_name(dtype)}; Conv takes float16, float32, float64")
    inputs, outputs = weight.dims if transposed else weight.dims[::-1]

    if (
        not is_gemm
        and view.rank(node.input[0]) is not None
        and view.rank(node.input[0]) > 2
        and node.input[0] not in mapped
    ):
        return fail(Reason.MATMUL_ND, f"its input '{node.input[0]}' has shape {_text(view.shape(node.input[0]))}")

    op, output, add = node.op_type, node.output[0], None
    bias = None
    if is_gemm and len(node.input) > 2 and node.input[2]:
        bias = _bias(view, node.input[2], index, outputs, dtype, beta)
        if not bias:
            return bias
    elif not is_gemm:
        found = _bias_add(view, index, taken)
        if found is not None:
            add, bias_name = found
            bias = _bias(view, bias_name, add, outputs, dtype, 1.0)
            if not bias:
                return bias
            op, output = "MatMul+Add", view.nodes[add].output[0]

    source = _match_input(view, index, node.input[0], mapped, inputs, classifier_before_pool)
    if not source:
        return source
    return FcMatch(
        index=index,
        key=view.key(index),
        op=op,
        output=output,
        weight=weight,
        transposed=transposed,
        alpha=alpha,
        bias=bias,
        beta=beta,
        outputs=outputs,
        add=add,
        **source,
    )


# -- the checks ------------------------------------------------------------------------------


def _quantized(view: GraphView, index: int) -> Failure | None:
    node = view.nodes[index]
    for name in node.input[:2]:
        if view.producer_op(name) in ("DequantizeLinear", "QuantizeLinear", "DynamicQuantizeLinear"):
            return fail(Reason.QUANTIZED, f"'{name}' comes from {view.producer_op(name)} (QDQ)")
    for reader, _ in view.uses(node.output[0]):
        if view.nodes[reader].op_type == "QuantizeLinear":
            return fail(Reason.QUANTIZED, f"its output goes to QuantizeLinear {view.key(reader)!r} (QDQ)")
    return None


def _constant(view: GraphView, name: str) -> tuple[object, int | None, frozenset[int]] | None:
    """(tensor, the node that writes it, the nodes that compute it) of a constant: an initializer, a
    Constant node, or a subgraph of constants folded into one tensor (``fold``). None otherwise."""
    tensor = view.constant_tensor(name)
    if tensor is not None:
        node = view.producer.get(name) if name not in view.initializers else None
        return tensor, node, frozenset() if node is None else frozenset({node})
    folded = fold_constant(view, name)
    if folded is None:
        return None
    return folded.tensor, folded.producer, folded.nodes


def _folded_shared(view: GraphView, name: str, role: str) -> Failure | None:
    """A folded operand whose subgraph shares a tensor with the rest of the graph: refused."""
    folded = fold_constant(view, name)
    shared = shared_with(view, folded) if folded is not None else ""
    if shared:
        return fail(Reason.SHARED_WEIGHTS, f"{role} '{name}' is folded from {shared}")
    return None


def _operand(view: GraphView, name: str, index: int, role: str) -> Operand | Failure:
    found = _constant(view, name)
    if found is None:
        if name in view.graph_inputs or view.is_overridable(name):
            return fail(Reason.WEIGHT_NOT_CONSTANT, f"{role} '{name}' is a graph input")
        found = view.producer_of(name)
        if found is None:
            return fail(Reason.WEIGHT_NOT_CONSTANT, f"{role} '{name}' is computed by nothing")
        what, stop = view.label(found[0]), why_not_constant(view, name)
        detail = what if stop == what else f"{what}, from {stop}"
        return fail(Reason.WEIGHT_NOT_CONSTANT, f"{role} '{name}' is computed by {detail}")
    others = _other_readers(view, name, index)
    if others:
        return fail(Reason.SHARED_WEIGHTS, f"{role} '{name}' is also read by {others}")
    shared = _folded_shared(view, name, role)
    return shared if shared is not None else Operand(name, *found)


def _other_readers(view: GraphView, name: str, index: int) -> str:
    readers = sorted({view.label(i) for i, _ in view.uses(name) if i != index})
    if view.is_graph_output(name):
        readers.append("a graph output")
    return ", ".join(readers)


def _bias(view: GraphView, name: str, index: int, outputs: int, dtype: int, beta: float) -> Operand | Failure:
    found = _constant(view, name)
    if found is None:
        return fail(Reason.WEIGHT_NOT_CONSTANT, f"bias '{name}' is not a constant")
    tensor, constant_node, nodes = found
    dims = tuple(tensor.dims)
    if tensor.data_type != dtype:
        return fail(
            UNSUPPORTED_DTYPE, f"bias '{name}' is {dtype_name(tensor.data_type)}, the weight {dtype_name(dtype)}"
        )
    numel = math.prod(dims)
    if numel != 1 and dims not in ((outputs,), (1, outputs)):
        if len(dims) == 2 and dims[0] > 1:
            return fail(Reason.BATCHED_BIAS, f"bias '{name}' has shape {list(dims)}")
        return fail(Reason.ELEMENT_COUNT_MISMATCH, f"bias '{name}' has shape {list(dims)}, the FC {outputs} outputs")
    unchanged = dims == (outputs,) and beta == 1.0
    others = _other_readers(view, name, index)
    if others and not unchanged:
        return fail(Reason.SHARED_WEIGHTS, f"bias '{name}' is also read by {others}")
    if constant_node is not None and others:
        return fail(Reason.SHARED_WEIGHTS, f"bias '{name}' is also read by {others}")
    shared = _folded_shared(view, name, "bias")
    return shared if shared is not None else Operand(name, tensor, constant_node, nodes)


def _bias_add(view: GraphView, index: int, taken: set[int]) -> tuple[int, str] | None:
    """The Add that adds a constant to a MatMul's output, alone, and the bias tensor's name."""
    output = view.nodes[index].output[0]
    readers = view.uses(output)
    if len(readers) != 1 or view.is_graph_output(output):
        return None
    add, _ = readers[0]
    node = view.nodes[add]
    if node.op_type != "Add" or node.domain not in DEFAULT_DOMAINS or add in taken or len(node.input) != 2:
        return None
    other = node.input[1] if node.input[0] == output else node.input[0]
    found = _constant(view, other) if other != output else None
    if found is None:
        return None
    shape = tuple(found[0].dims)
    if len(shape) > 2:
        return None
    return add, other


def _match_input(
    view: GraphView, index: int, name: str, mapped: dict, inputs: int, classifier_before_pool: bool
) -> dict | Failure:
    node = view.nodes[index]
    if name in mapped:
        return _chain(view, name, inputs)
    if classifier_before_pool:
        pooled = _movable_pool(view, name, inputs)
        if pooled is not None:
            return pooled
    producer = view.producer_of(name)
    if producer is not None and producer[1].domain in DEFAULT_DOMAINS and producer[1].op_type in ("Flatten", "Reshape"):
        flat_index, flat = producer
        x = flat.input[0]
        if x in mapped:
            found = _check_flatten(view, flat_index, x, (_batch(view, x), _width(view, x), 1, 1))
            if isinstance(found, Failure):
                return found
            chain = _chain(view, x, inputs)
            return chain if isinstance(chain, Failure) else {**chain, "flatten": flat_index, "shape_nodes": found}
        shape = view.shape(x)
        if shape is None or not all(isinstance(d, int) for d in shape[1:]):
            shape = _pool_result_shape(view, x) or shape  # a global pool shape inference did not follow
        if shape is None:
            return fail(
                Reason.INPUT_SHAPE_UNKNOWN,
                f"the shape of '{x}', which {flat.op_type} '{view.key(flat_index)}' flattens, is unknown",
            )
        if len(shape) == 2:
            return _vector(view, name, inputs, node.op_type)
        if len(shape) != 4:
            return fail(Reason.UNSUPPORTED_INPUT_RANK, f"'{x}' has shape {_text(shape)}")
        shape_nodes = _check_flatten(view, flat_index, x, shape)
        if isinstance(shape_nodes, Failure):
            return shape_nodes
        return _map(view, x, shape, inputs, flat_index, shape_nodes)
    rank = view.rank(name)
    if rank is None and len(_pool_result_shape(view, name) or ()) == 2:
        rank = 2  # the (N, C) result of a global pool (ReduceMean keepdims 0, or squeezed)
    if rank == 2 or (rank is None and node.op_type == "Gemm"):
        return _vector(view, name, inputs, node.op_type)
    if rank is None:
        return fail(Reason.INPUT_SHAPE_UNKNOWN, f"the shape of its input '{name}' is unknown")
    if node.op_type == "MatMul" and rank > 2:
        return fail(Reason.MATMUL_ND, f"its input '{name}' has shape {_text(view.shape(name))}")
    return fail(Reason.UNSUPPORTED_INPUT_RANK, f"its input '{name}' has shape {_text(view.shape(name))}")


def _check_flatten(view: GraphView, flat_index: int, x: str, shape: tuple) -> set[int] | Failure:
    """The Flatten / Reshape turns (N, C, H, W) into (N, C*H*W): the shape-chain nodes, or why not."""
    flat = view.nodes[flat_index]
    key = view.key(flat_index)
    if flat.op_type == "Flatten":
        axis = int(attribute(flat, "axis", 1))
        if axis < 0:
            axis += len(shape)
        if axis != 1:
            return fail(Reason.UNSUPPORTED_AXIS, f"Flatten '{key}' has axis {axis}")
        return set()
    nodes: set[int] = set()
    target = evaluate(view, flat.input[1], nodes) if len(flat.input) > 1 else None
    if target is None or target.rank != 1:
        if len(flat.input) > 1 and _inferred_flatten(view, flat, shape):
            return chain_nodes(view, flat.input[1])
        return fail(
            Reason.UNSUPPORTED_FLATTEN,
            f"the target shape of Reshape '{key}' is computed in a way proto-rewrite does not follow",
        )
    allowzero = bool(attribute(flat, "allowzero", 0))
    if not _is_flatten_target(view, target.items, x, shape, allowzero):
        return fail(
            Reason.UNSUPPORTED_FLATTEN,
            f"Reshape '{key}' turns {_text(shape)} into {_text([_item_text(i) for i in target.items])}",
        )
    return nodes


def _inferred_flatten(view: GraphView, flat, shape: tuple) -> bool:
    """Shape inference (with onnx's data propagation) found the Reshape's result to be (N, C*H*W).
    A Reshape's result depends on its output shape alone, so that is a flatten from axis 1 whatever
    computed the target: a rank-2 result whose second dimension is C*H*W, or whose first is the
    input's own batch dimension (the element count then fixes the second)."""
    out = view.shape(flat.output[0])
    if out is None or len(out) != 2 or shape is None or len(shape) < 2:
        return False
    rest = math.prod(shape[1:]) if all(isinstance(d, int) for d in shape[1:]) else None
    if rest is not None and out[1] == rest:
        return True
    batch = shape[0]
    return (isinstance(batch, int) and out[0] == batch) or (
        isinstance(batch, str) and bool(batch) and out[0] == batch and not batch.startswith("unk__")
    )


# -- global pools over H and W -----------------------------------------------------------------


def global_pool_of(view: GraphView, tensor: str) -> tuple[int, str, str] | None:
    """The global pool over H and W whose result ``tensor`` is: (pool node index, the (N, C, H, W) map
    it pools, method) or None. Recognised: GlobalAveragePool; ReduceMean ("avg") or ReduceSum ("sum")
    over axes 2 and 3 with either keepdims (axes an attribute before opset 18, an input from 18, a
    constant or a chain :func:`~proto_rewrite.onnx.shape_expr.evaluate` follows); an AveragePool whose
    kernel covers the whole map without padding. Each possibly followed by one Flatten(axis 1),
    Reshape to (N, C) / (N, -1) or Squeeze of axes 2 and 3. A sum is the average times H*W."""
    found = view.producer_of(tensor)
    if found is None or found[1].domain not in DEFAULT_DOMAINS:
        return None
    pooled = _spatial_pool(view, found[0])
    if pooled is not None:
        return found[0], pooled[0], pooled[1]
    index, node = found
    if node.op_type not in ("Flatten", "Reshape", "Squeeze") or not node.input:
        return None
    inner = view.producer_of(node.input[0])
    if inner is None or inner[1].domain not in DEFAULT_DOMAINS:
        return None
    pooled = _spatial_pool(view, inner[0])
    if pooled is None or not _drops_unit_dims(view, index, pooled):
        return None
    return inner[0], pooled[0], pooled[1]


def _spatial_pool(view: GraphView, index: int) -> tuple[str, str, bool] | None:
    """(map, method, keepdims) when the node pools a 4-D map over H and W to one value per channel."""
    node = view.nodes[index]
    if not node.input or not node.input[0] or view.rank(node.input[0]) != 4:
        return None
    x = node.input[0]
    if node.op_type == "GlobalAveragePool":
        return x, "avg", True
    if node.op_type in ("ReduceMean", "ReduceSum"):
        axes = _reduce_axes(view, node)
        if axes is None or sorted({a + 4 if a < 0 else a for a in axes}) != [2, 3] or len(axes) != 2:
            return None
        return x, "avg" if node.op_type == "ReduceMean" else "sum", bool(attribute(node, "keepdims", 1))
    if node.op_type == "AveragePool":
        shape = view.shape(x)
        if shape is None or not all(isinstance(d, int) for d in shape[2:]):
            return None
        kernel = [int(k) for k in attribute(node, "kernel_shape", [])]
        pads = [int(p) for p in attribute(node, "pads", [0, 0, 0, 0])]
        dilations = [int(d) for d in attribute(node, "dilations", [1, 1])]
        auto_pad = attribute(node, "auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
        if kernel == list(shape[2:]) and not any(pads) and dilations == [1, 1] and auto_pad in ("NOTSET", "VALID"):
            return x, "avg", True
    return None


def _reduce_axes(view: GraphView, node) -> list[int] | None:
    """The axes of a ReduceX or a Squeeze: an attribute before the opset that made them an input
    (ReduceSum and Squeeze 13, the other reductions 18), the input from then on."""
    since = 13 if node.op_type in ("ReduceSum", "Squeeze") else 18
    if view.opset < since:
        axes = attribute(node, "axes", None)
        return None if axes is None else [int(a) for a in axes]
    if len(node.input) < 2 or not node.input[1]:
        return None
    value = evaluate(view, node.input[1])
    if value is None:
        return None
    axes = [known(item) for item in value.items]
    return None if None in axes else axes


def _drops_unit_dims(view: GraphView, index: int, pooled: tuple[str, str, bool]) -> bool:
    """The node after a pool turns its (N, C, 1, 1) or (N, C) result into (N, C)."""
    node = view.nodes[index]
    x, _, keepdims = pooled
    shape = view.shape(x)
    batch = shape[0] if shape else None
    channels = shape[1] if shape and isinstance(shape[1], int) else None
    if node.op_type == "Flatten":
        return int(attribute(node, "axis", 1)) in (1, -3 if keepdims else -1)
    if node.op_type == "Reshape":
        return not isinstance(_check_flatten(view, index, node.input[0], (batch, channels, 1, 1)), Failure)
    if node.op_type == "Squeeze" and keepdims:
        axes = _reduce_axes(view, node)
        return axes is not None and len(axes) == 2 and sorted({a + 4 if a < 0 else a for a in axes}) == [2, 3]
    return False


def _pool_result_shape(view: GraphView, name: str) -> tuple | None:
    """The shape of a global pool's result (``global_pool_of``) from the map's: (N, C, 1, 1), or (N, C)
    without keepdims or after the Flatten / Reshape / Squeeze. For when shape inference did not say."""
    found = global_pool_of(view, name)
    if found is None:
        return None
    index, x, _ = found
    shape = view.shape(x)
    if shape is None or len(shape) != 4 or not isinstance(shape[1], int):
        return None
    node = view.nodes[index]
    keepdims = node.op_type in ("GlobalAveragePool", "AveragePool") or bool(attribute(node, "keepdims", 1))
    if keepdims and view.nodes[index].output[0] == name:
        return (shape[0], shape[1], 1, 1)
    return (shape[0], shape[1])


def _is_flatten_target(view: GraphView, items: list, x: str, shape: tuple, allowzero: bool) -> bool:
    if len(items) != 2:
        return False
    batch = shape[0]
    rest = math.prod(shape[1:]) if all(isinstance(d, int) for d in shape[1:]) else None
    same_batch = {x}
    found = view.producer_of(x)
    if found is not None and found[1].op_type == "Transpose":
        same_batch.add(found[1].input[0])

    def is_batch(item) -> bool:
        if isinstance(item, Dim):
            if item.index == 0 and item.tensor in same_batch:
                return True
            # the dynamo exporter reads the batch from the graph input: the same symbol, or the same number
            return (isinstance(batch, str) and item.symbol == batch) or (isinstance(batch, int) and item.value == batch)
        if item == 0:
            return not allowzero
        if isinstance(batch, int):
            return item == batch
        return item == 1  # a hard-coded batch of 1 on a symbolic batch

    def is_rest(item) -> bool:
        value = known(item)
        return value == -1 or (rest is not None and value == rest)

    first, second = items
    if is_batch(first) and is_rest(second):
        return True
    return known(first) == -1 and rest is not None and known(second) == rest


def _map(
    view: GraphView,
    x: str,
    shape: tuple,
    inputs: int,
    flat_index: int,
    shape_nodes: set[int],
) -> dict | Failure:
    source, channels_last, transpose = x, False, None
    found = view.producer_of(x)
    if found is not None and found[1].op_type == "Transpose" and found[1].domain in DEFAULT_DOMAINS:
        perm = list(attribute(found[1], "perm", []) or [])
        if perm == [0, 2, 3, 1]:
            source, channels_last, transpose = found[1].input[0], True, found[0]
            shape = view.shape(source)
            if shape is None or len(shape) != 4:
                return fail(
                    Reason.INPUT_SHAPE_UNKNOWN, f"the shape of '{source}' (before the NHWC Transpose) is unknown"
                )
        elif perm[:1] != [0]:
            return fail(
                Reason.UNSUPPORTED_LAYOUT,
                f"Transpose '{view.key(found[0])}' with perm {perm} moves the batch axis before the flatten",
            )
        # any other perm (ConvNeXt's LayerNorm2d returns to NCHW with (0, 3, 1, 2)): the flatten reads
        # a 4-D map in its own layout, which is what a Conv over that map sees
    batch, channels, height, width = shape
    if not all(isinstance(d, int) for d in (channels, height, width)):
        return fail(
            Reason.INPUT_SHAPE_UNKNOWN,
            f"'{source}' has shape {_text(shape)}; give input_shapes to fix the symbolic dimensions",
        )
    if channels * height * width != inputs:
        return fail(
            Reason.ELEMENT_COUNT_MISMATCH,
            f"the weight has {inputs} inputs, '{source}' is {channels} x {height} x {width} = "
            f"{channels * height * width}",
        )
    match = {
        "kind": MAP,
        "source": source,
        "batch": batch,
        "channels": channels,
        "height": height,
        "width": width,
        "channels_last": channels_last,
        "flatten": flat_index,
        "shape_nodes": set(shape_nodes),
        "transpose": transpose,
    }
    return match


def _movable_pool(view: GraphView, name: str, inputs: int) -> dict | None:
    """--classifier-before-pool: the FC reads the global average of a map (GlobalAveragePool,
    ReduceMean over H and W, an AveragePool covering the map, then maybe a Flatten / Reshape /
    Squeeze) that nothing else reads: the FC can work on the map, the pool coming after it."""
    found = global_pool_of(view, name)
    if found is None:
        return None
    pool, source, method = found
    shape = view.shape(source)
    if method != "avg" or shape is None or len(shape) != 4 or shape[1] != inputs:
        return None
    pool_out = view.nodes[pool].output[0]
    flatten = view.producer.get(name) if view.producer.get(name) != pool else None
    if flatten is not None and (view.uses(pool_out) != [(flatten, 0)] or view.is_graph_output(pool_out)):
        return None
    if len(view.uses(name)) != 1 or view.is_graph_output(name):
        return None
    return {
        "kind": POOLED,
        "source": source,
        "batch": shape[0],
        "channels": inputs,
        "height": 1,
        "width": 1,
        "pool": pool,
        "flatten": flatten,
    }


def _chain(view: GraphView, name: str, inputs: int) -> dict | Failure:
    width = _width(view, name)
    if width is not None and width != inputs:
        return fail(Reason.ELEMENT_COUNT_MISMATCH, f"the weight has {inputs} inputs, '{name}' has {width}")
    return {"kind": CHAIN, "source": name, "batch": _batch(view, name), "channels": inputs, "height": 1, "width": 1}


def _vector(view: GraphView, name: str, inputs: int, op: str) -> dict | Failure:
    width = _width(view, name)
    if width is not None and width != inputs:
        return fail(Reason.ELEMENT_COUNT_MISMATCH, f"the weight has {inputs} inputs, '{name}' has {width}")
    return {"kind": VECTOR, "source": name, "batch": _batch(view, name), "channels": inputs, "height": 1, "width": 1}


def _batch(view: GraphView, name: str):
    shape = view.shape(name)
    return shape[0] if shape else None


def _width(view: GraphView, name: str) -> int | None:
    shape = view.shape(name)
    if shape is None or len(shape) != 2 or not isinstance(shape[1], int):
        return None
    return shape[1]


def _item_text(item) -> object:
    if isinstance(item, Dim):
        return f"dim {item.index} of {item.tensor}"
    return item
