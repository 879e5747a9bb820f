"""How the size of a 4-D output follows the size of a 4-D input: stride, offset and receptive field
per spatial axis, read from the graph.

Each sliding-window layer (Conv, MaxPool, AveragePool, LpPool) on one axis computes
``out = floor((x + P - K) / s) + 1`` with ``K = dilation * (kernel - 1) + 1`` the effective kernel
and ``P`` the total padding (ceil mode adds ``s - 1`` to ``P``; SAME auto-padding is
``out = ceil(x / s)``, i.e. ``P - K = -1``). If the layer's input already follows the net input ``H``
as ``x = floor((H - M) / S) + 1``, then, since ``floor(floor(a / S) / s) == floor(a / (S s))``::

    out = floor((H - M + S (1 + P - K)) / (S s)) + 1

so the chain keeps the form ``cells = (H - M) // S + 1`` with ``S' = S s`` and
``M' = M + S (K - P - 1)``. The formula holds wherever every layer's output is at least one cell,
i.e. for ``H`` at or above every intermediate offset; the receptive field follows the usual recursion
(``rf += (K - 1) * jump; jump *= s``).

Ops that keep the grid (element-wise, normalisations, Softmax, Concat and Add of branches that agree,
Transposes, whose axes are tracked so an NHWC input with the keras2onnx / tf2onnx Transpose is
understood) pass the geometry through. Flatten, Reshape, Gemm, global pools, resizes and every op
without a rule make it unknown: :class:`GeometryUnknown` names the node and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from proto_rewrite.onnx.graph import attribute, constant_node_tensor, subgraph_reads
from proto_rewrite.rewrite_plan import AxisGeometry

# Ops whose output has the shape of their (first) input, or the broadcast of their inputs, along
# every axis: the spatial grid passes through unchanged.
GRID_KEEPING = frozenset(
    """
    Abs Acos Acosh Asin Asinh Atan Atanh Ceil Cos Cosh Elu Erf Exp Floor Gelu HardSigmoid HardSwish
    Identity IsInf IsNaN LeakyRelu Log Mish Neg Not Reciprocal Relu Round Selu Shrink Sigmoid Sign Sin
    Sinh Softplus Softsign Sqrt Tan Tanh ThresholdedRelu Celu Cast CastLike Clip Dropout
    BatchNormalization InstanceNormalization LRN MeanVarianceNormalization LpNormalization
    Softmax LogSoftmax Hardmax QuantizeLinear DequantizeLinear
    Add Sub Mul Div Pow Max Min Mean Sum PRelu Where And Or Xor Equal Greater Less GreaterOrEqual
    LessOrEqual BitShift Mod
""".split()
)
SLIDING = frozenset({"Conv", "MaxPool", "AveragePool", "LpPool"})
GLOBAL_POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"})
REDUCTIONS = frozenset(
    """ReduceMean ReduceMax ReduceMin ReduceSum ReduceProd ReduceL1 ReduceL2
    ReduceLogSum ReduceLogSumExp ReduceSumSquare ArgMax ArgMin""".split()
)
NOT_SPATIAL = frozenset(
    {
        "Flatten",
        "Reshape",
        "Gemm",
        "MatMul",
        "Squeeze",
        "Unsqueeze",
        "Expand",
        "Tile",
        "Resize",
        "Upsample",
        "ConvTranspose",
        "Gather",
        "SpaceToDepth",
        "DepthToSpace",
        "Einsum",
        "Col2Im",
    }
)
NO_GRID = frozenset({"Shape", "Size"})  # outputs that describe a tensor but carry no pixels


@dataclass(frozen=True)
class GeometryUnknown:
    """The geometry could not be read from the graph: ``node`` (a node name or a tensor) and why.
    Falsy, so ``if geometry:`` reads naturally."""

    node: str
    why: str

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class _Pooled:
    """A tensor pooled over the whole map (a squeeze-excitation branch, a classifier head): one cell
    at any input size, so it broadcasts against the map like a constant."""

    node: str


@dataclass(frozen=True)
class _Axis:
    """One axis of the net input seen through the layers so far: ``cells = (H - offset) // stride + 1``,
    valid for ``H >= valid_min``."""

    stride: int = 1
    offset: int = 1
    receptive_field: int = 1
    valid_min: int = 1

    def then(self, kernel: int, pad_total: int, step: int) -> _Axis:
        """After a layer ``out = floor((x + pad_total - kernel) / step) + 1`` (kernel effective)."""
        offset = self.offset + self.stride * (kernel - pad_total - 1)
        return _Axis(
            self.stride * step, offset, self.receptive_field + (kernel - 1) * self.stride, max(self.valid_min, offset)
        )

    def same_grid(self, other: _Axis) -> bool:
        return (self.stride, self.offset, self.valid_min) == (other.stride, other.offset, other.valid_min)

    def union(self, other: _Axis) -> _Axis:
        return _Axis(self.stride, self.offset, max(self.receptive_field, other.receptive_field), self.valid_min)


@dataclass(frozen=True)
class _Grid:
    """A tensor derived from the net input: ``axes[i]`` is the net input axis that the tensor's axis
    ``i`` runs along (None: an axis without pixels), ``geo`` the geometry of each net input axis."""

    axes: tuple
    geo: tuple  # one _Axis per net input axis
    spatial: tuple | None  # the two net input axes the windows slide over, once a window was seen

    def merge(self, other: _Grid, node_name: str):
        if self.axes != other.axes:
            return GeometryUnknown(node_name, "its inputs run along different axes of the net input")
        if self.spatial and other.spatial and self.spatial != other.spatial:
            return GeometryUnknown(node_name, "its inputs slide over different axes of the net input")
        for mine, theirs in zip(self.geo, other.geo):
            if not mine.same_grid(theirs):
                return GeometryUnknown(
                    node_name, "its branches have different strides or offsets, so their grids do not line up"
                )
        return _Grid(self.axes, tuple(a.union(b) for a, b in zip(self.geo, other.geo)), self.spatial or other.spatial)


def output_geometry(
    model: onnx.ModelProto, input_name: str, output_name: str
) -> tuple[AxisGeometry, AxisGeometry] | GeometryUnknown:
    """The (height, width) geometry of ``output_name`` as a function of the 4-D input ``input_name``,
    or a :class:`GeometryUnknown` naming the node that hides it. The height axis is the input axis
    the first window slides over as H (axis 2 of NCHW; axis 1 of an NHWC input, through its
    Transpose)."""
    if output_name not in {vi.name for vi in model.graph.output}:
        return GeometryUnknown(output_name, "the graph has no output of that name")
    return tensor_geometry(model, input_name, output_name)


def tensor_geometry(
    model: onnx.ModelProto, input_name: str, tensor_name: str
) -> tuple[AxisGeometry, AxisGeometry] | GeometryUnknown:
    """:func:`output_geometry` for any tensor of the graph (a score map that a pool then reduces)."""
    graph = model.graph
    inputs = {vi.name: vi for vi in graph.input}
    if input_name not in inputs:
        return GeometryUnknown(input_name, "the graph has no input of that name")
    rank = _rank(inputs[input_name])
    if rank != 4:
        return GeometryUnknown(
            input_name, f"the input is {rank if rank is not None else 'of unknown'}-D, not a 4-D image"
        )
    output_name = tensor_name
    init_dims = {t.name: tuple(t.dims) for t in graph.initializer}
    constants = _Constants(graph)
    state: dict = {input_name: _Grid((0, 1, 2, 3), (_Axis(),) * 4, None)}
    for index, node in enumerate(graph.node):
        name = node.name or f"{node.op_type}#{index}"
        reads = [state[n] for n in list(node.input) + sorted(subgraph_reads(node)) if n in state]
        if not reads:
            continue
        result = next((r for r in reads if isinstance(r, GeometryUnknown)), None)
        has_grid = any(isinstance(r, _Grid) for r in reads)
        if result is None and not has_grid and any(isinstance(r, _Shape) for r in reads):
            result = _shape_step(node, [state.get(n) for n in node.input], constants)
            if result is None:
                continue
        if result is None and not has_grid:
            result = next(r for r in reads if isinstance(r, _Pooled))  # still one cell at any size
        if result is None:
            if node.op_type in ("If", "Loop", "Scan"):
                result = GeometryUnknown(name, f"{node.op_type} reads the map in a subgraph")
            elif node.op_type == "Slice":
                result = _slice(node, name, [state.get(n) for n in node.input], constants)
            else:
                grids = [state.get(n) for n in node.input]
                grids = [g if isinstance(g, _Grid) else None for g in grids]
                result = _step(node, name, grids, init_dims, constants)
        if result is None:
            continue
        outputs = [o for o in node.output if o]
        if isinstance(result, list):
            for out, value in zip(outputs, result):
                if value is not None:
                    state[out] = value
        else:
            for out in outputs:
                state[out] = result
    final = state.get(output_name)
    if final is None:
        return GeometryUnknown(output_name, f"the output does not depend on the input '{input_name}'")
    if isinstance(final, GeometryUnknown):
        return final
    if isinstance(final, _Pooled):
        return GeometryUnknown(final.node, "global pool: the output has one cell at any size")
    if not isinstance(final, _Grid):
        return GeometryUnknown(output_name, "the output is a shape computed from the input, not a map")
    if len(final.axes) != 4:
        return GeometryUnknown(output_name, f"the output is {len(final.axes)}-D, not a 4-D map")
    spatial = final.spatial or _default_spatial(graph, input_name)
    if any(axis not in final.axes for axis in spatial):
        return GeometryUnknown(output_name, "the output has lost a spatial axis of the input")
    geos = [final.geo[axis] for axis in spatial]
    for geo in geos:
        if geo.valid_min > geo.offset:
            return GeometryUnknown(
                output_name,
                f"a layer pads more than its kernel: sizes below "
                f"{geo.valid_min} fail, so no single formula gives the map size",
            )
    height, width = (AxisGeometry(g.stride, g.offset, g.receptive_field) for g in geos)
    return height, width


def _step(node, name: str, grids: list, init_dims: dict, constants) -> object:
    """The state of the node's outputs: a _Grid, a GeometryUnknown, a list (one per output), or None."""
    op = node.op_type
    if node.domain not in ("", "ai.onnx"):
        return GeometryUnknown(name, f"{node.domain}.{op} is an operator the geometry has no rule for")
    data = grids[0] if grids else None
    if op == "Shape" and data is not None and not any(a.name in ("start", "end") for a in node.attribute):
        return _Shape(
            tuple(
                None if axis is None else _Size(axis, -data.geo[axis].offset, data.geo[axis].stride, 1)
                for axis in data.axes
            )
        )
    if op in NO_GRID:
        return None
    if op in SLIDING:
        if any(g is not None for g in grids[1:]):
            return GeometryUnknown(name, "its weights are computed from the input")
        return _window(node, name, data, init_dims)
    if data is None and op not in GRID_KEEPING and op != "Concat":
        return GeometryUnknown(name, f"{op} reads the map through an operand other than its data")
    if op in GLOBAL_POOLS:
        return _Pooled(name)
    if op in REDUCTIONS:
        return _reduce(node, name, data, constants)
    if op == "Transpose":
        perm = attribute(node, "perm")
        if perm is None:
            perm = list(reversed(range(len(data.axes))))
        if sorted(perm) != list(range(len(data.axes))):
            return GeometryUnknown(name, f"perm {list(perm)} does not fit a {len(data.axes)}-D tensor")
        return _Grid(tuple(data.axes[p] for p in perm), data.geo, data.spatial)
    if op == "Concat":
        axis = attribute(node, "axis", 1)
        return _join(node, name, grids, along=axis)
    if op == "Split":
        axis = attribute(node, "axis", 0)
        if data is None or (axis % len(data.axes)) in _spatial_positions(data):
            return GeometryUnknown(name, "it splits along a spatial axis")
        return [data] * len(node.output)
    if op == "Pad":
        return _pad(node, name, grids, constants)
    if op in GRID_KEEPING:
        return _join(node, name, grids, along=None)
    if op in NOT_SPATIAL:
        return GeometryUnknown(name, f"{op} is not spatial: the output must be a 4-D map reached without it")
    return GeometryUnknown(name, f"{op} is an operator the geometry has no rule for")


def _spatial_positions(grid: _Grid) -> set[int]:
    spatial = grid.spatial or ()
    return {i for i, axis in enumerate(grid.axes) if axis in spatial}


def _join(node, name: str, grids: list, along) -> object:
    present = [g for g in grids if g is not None]
    if along is not None and present and (along % len(present[0].axes)) in _spatial_positions(present[0]):
        return GeometryUnknown(name, "it concatenates along a spatial axis")
    merged = present[0]
    for other in present[1:]:
        merged = merged.merge(other, name)
        if isinstance(merged, GeometryUnknown):
            return merged
    return merged


def _window(node, name: str, grid: _Grid, init_dims: dict) -> object:
    op = node.op_type
    if len(grid.axes) != 4:
        return GeometryUnknown(name, f"{op} on a {len(grid.axes)}-D tensor: only 2-D windows are handled")
    spatial = (grid.axes[2], grid.axes[3])
    if None in spatial:
        return GeometryUnknown(name, f"{op} slides over an axis that is not an axis of the input image")
    if grid.spatial is not None and grid.spatial != spatial:
        return GeometryUnknown(
            name, f"{op} slides over axes {spatial} of the input, an earlier window over {grid.spatial}"
        )
    kernel = attribute(node, "kernel_shape")
    if kernel is None and op == "Conv" and len(node.input) > 1 and node.input[1] in init_dims:
        kernel = init_dims[node.input[1]][2:]
    if kernel is None or len(kernel) != 2:
        return GeometryUnknown(name, f"{op} without a known 2-D kernel_shape")
    strides = list(attribute(node, "strides") or [1, 1])
    dilations = list(attribute(node, "dilations") or [1, 1])
    pads = list(attribute(node, "pads") or [0, 0, 0, 0])
    auto_pad = attribute(node, "auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    ceil_mode = bool(attribute(node, "ceil_mode", 0)) and op != "Conv"
    if len(strides) != 2 or len(dilations) != 2 or len(pads) != 4 or min(strides) < 1 or min(dilations) < 1:
        return GeometryUnknown(name, f"{op} has strides, dilations or pads that do not fit a 2-D window")
    if op not in ("Conv", "MaxPool") and any(d != 1 for d in dilations):
        dilations = [1, 1]  # AveragePool and LpPool before opset 19 have no dilations
    geo = list(grid.geo)
    for i, axis in enumerate(spatial):
        k_eff = dilations[i] * (int(kernel[i]) - 1) + 1
        step = int(strides[i])
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pad_total = k_eff - 1  # out = ceil(x / s), i.e. P - K = -1
            ceil_mode = False
        elif auto_pad == "VALID":
            pad_total = 0
        elif auto_pad == "NOTSET":
            pad_total = int(pads[i]) + int(pads[i + 2])
        else:
            return GeometryUnknown(name, f"{op} has auto_pad {auto_pad!r}")
        if ceil_mode and auto_pad in ("NOTSET", "VALID"):
            pad_end = 0 if auto_pad == "VALID" else int(pads[i + 2])
            if k_eff < pad_end + step:
                return GeometryUnknown(
                    name,
                    f"{op} in ceil mode with a kernel smaller than its end padding "
                    "plus stride: whether the last window is kept depends on the size",
                )
            pad_total += step - 1
        geo[axis] = geo[axis].then(k_eff, pad_total, step)
    return _Grid(grid.axes, tuple(geo), spatial)


def _reduce(node, name: str, grid: _Grid, constants) -> object:
    rank = len(grid.axes)
    if node.op_type in ("ArgMax", "ArgMin"):
        axes = [attribute(node, "axis", 0)]
    else:
        axes = attribute(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = constants.value(node.input[1])
            axes = None if axes is None else [int(a) for a in np.asarray(axes).reshape(-1)]
        if axes is None:
            if attribute(node, "noop_with_empty_axes", 0):
                return grid
            axes = list(range(rank))
    axes = sorted({int(a) % rank for a in axes})
    spatial = _spatial_positions(grid) if grid.spatial else {2, 3}
    if any(a in spatial for a in axes):
        if all(a in axes for a in spatial):
            return _Pooled(name)
        return GeometryUnknown(name, "it reduces one spatial axis and keeps the other")
    if attribute(node, "keepdims", 1):
        return grid
    kept = tuple(axis for i, axis in enumerate(grid.axes) if i not in axes)
    return _Grid(kept, grid.geo, grid.spatial)


def _pad(node, name: str, grids: list, constants) -> object:
    grid = grids[0]
    if any(g is not None for g in grids[1:]):
        return GeometryUnknown(name, "its pads are computed from the input")
    pads = attribute(node, "pads")
    if pads is None and len(node.input) > 1:
        pads = constants.value(node.input[1])
    if pads is None or (len(node.input) > 3 and node.input[3]):
        return GeometryUnknown(name, "Pad with pads (or axes) that are not constant")
    pads = [int(p) for p in np.asarray(pads).reshape(-1)]
    rank = len(grid.axes)
    if len(pads) != 2 * rank:
        return GeometryUnknown(name, "Pad with pads that do not fit its input")
    geo = list(grid.geo)
    for i, axis in enumerate(grid.axes):
        total = pads[i] + pads[i + rank]
        if total and axis is None:
            continue
        if total:
            geo[axis] = geo[axis].then(1, total, 1)
    return _Grid(grid.axes, tuple(geo), grid.spatial)


@dataclass(frozen=True)
class _Size:
    """A size computed from the net input's extent ``H`` along ``axis``: ``floor((H + u) / v) + c``."""

    axis: int
    u: int
    v: int
    c: int

    def plus(self, k: int) -> _Size:
        return _Size(self.axis, self.u, self.v, self.c + k)

    def floordiv(self, d: int) -> _Size | None:
        # floor((floor((H + u) / v) + c) / d) = floor((H + u + v c) / (v d)), for a non-negative numerator
        return _Size(self.axis, self.u + self.v * self.c, self.v * d, 0) if d > 0 else None

    def offset_form(self) -> tuple[int, int]:
        """(offset, stride) with ``floor((H + u) / v) + c == floor((H - offset) / stride) + 1``."""
        return -(self.u + self.v * (self.c - 1)), self.v


@dataclass(frozen=True)
class _Shape:
    """A 1-D integer tensor of sizes (Shape of a map and arithmetic on it): each element a _Size,
    an int, or None (not known)."""

    elems: tuple


def _shape_step(node, states: list, constants) -> _Shape | None:
    """Shape arithmetic the exporters write to size a Slice or a Reshape; None when not followed."""
    op = node.op_type

    def elems(index):
        if index >= len(node.input) or not node.input[index]:
            return None
        value = states[index] if index < len(states) else None
        if isinstance(value, _Shape):
            return list(value.elems)
        const = constants.value(node.input[index])
        return None if const is None else [int(v) for v in np.asarray(const).reshape(-1)]

    first = elems(0)
    if first is None:
        return None
    if op in ("Identity", "Cast", "Squeeze", "Unsqueeze"):
        return _Shape(tuple(first))
    if op == "Gather":
        indices = elems(1)
        if indices is None or any(not isinstance(i, int) for i in indices) or attribute(node, "axis", 0) != 0:
            return None
        try:
            return _Shape(tuple(first[i] for i in indices))
        except IndexError:
            return None
    if op == "Slice" and len(node.input) >= 3:
        bounds = [elems(i) for i in range(1, min(len(node.input), 5))]
        if any(b is None or len(b) != 1 or not isinstance(b[0], int) for b in bounds):
            return None
        start, end = bounds[0][0], bounds[1][0]
        axis = bounds[2][0] if len(bounds) > 2 else 0
        step = bounds[3][0] if len(bounds) > 3 else 1
        return _Shape(tuple(first[start:end:step])) if axis in (0, -1) and step != 0 else None
    if op == "Concat":
        parts = [elems(i) for i in range(len(node.input))]
        return None if any(p is None for p in parts) else _Shape(tuple(e for p in parts for e in p))
    if op in ("Add", "Sub", "Div"):
        second = elems(1)
        if second is None:
            return None
        if len(first) == 1 and len(second) > 1:
            first = first * len(second)
        if len(second) == 1 and len(first) > 1:
            second = second * len(first)
        if len(first) != len(second):
            return None
        return _Shape(tuple(_arith(op, a, b) for a, b in zip(first, second)))
    return None


def _arith(op: str, a, b):
    if isinstance(a, int) and isinstance(b, int):
        return {"Add": a + b, "Sub": a - b, "Div": int(a / b) if b else None}[op]
    if isinstance(a, _Size) and isinstance(b, int):
        if op == "Add":
            return a.plus(b)
        if op == "Sub":
            return a.plus(-b)
        return a.floordiv(b)
    if isinstance(a, int) and isinstance(b, _Size) and op == "Add":
        return b.plus(a)
    return None


def _slice(node, name: str, states: list, constants) -> object:
    """Slice of a map: along each spatial axis it may only cut the end at a size computed from the
    map's own extent (the Caffe exporter's ceil-mode pooling at any size); other axes are free."""
    grid = states[0] if isinstance(states[0], _Grid) else None
    if grid is None or any(isinstance(s, _Grid) for s in states[1:]):
        return GeometryUnknown(name, "Slice with bounds computed from the map as data")
    if attribute(node, "starts") is not None:  # opset < 10: attributes
        starts, ends = list(attribute(node, "starts")), list(attribute(node, "ends"))
        axes = list(attribute(node, "axes") or range(len(starts)))
        steps = [1] * len(starts)
    else:

        def values(index, default=None):
            if index >= len(node.input) or not node.input[index]:
                return default
            value = states[index]
            if isinstance(value, _Shape):
                return list(value.elems)
            const = constants.value(node.input[index])
            return None if const is None else [int(v) for v in np.asarray(const).reshape(-1)]

        starts, ends = values(1), values(2)
        if starts is None or ends is None:
            return GeometryUnknown(name, "Slice with bounds that are not constant or computed from the map")
        axes = values(3, list(range(len(starts))))
        steps = values(4, [1] * len(starts))
        if axes is None or steps is None:
            return GeometryUnknown(name, "Slice with axes or steps that are not constant")
    rank = len(grid.axes)
    spatial = set(grid.spatial or (grid.axes[2], grid.axes[3]) if rank == 4 else grid.spatial or ())
    geo = list(grid.geo)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if not isinstance(axis, int):
            return GeometryUnknown(name, "Slice with axes that are not constant")
        source = grid.axes[axis % rank]
        if source is None or source not in spatial:
            continue
        if start != 0 or step != 1:
            return GeometryUnknown(name, "Slice that crops the start of a spatial axis or steps over it")
        if isinstance(end, int) and end >= 2**31 - 1:
            continue  # to the end: nothing cut
        if not isinstance(end, _Size) or end.axis != source:
            return GeometryUnknown(name, "Slice with a spatial end that is not computed from the map's own extent")
        offset, stride = end.offset_form()
        here = geo[source]
        if stride != here.stride:
            return GeometryUnknown(name, "Slice with a spatial end on a different stride than the map")
        if offset > here.offset:
            geo[source] = _Axis(here.stride, offset, here.receptive_field, max(here.valid_min, offset))
    return _Grid(grid.axes, tuple(geo), grid.spatial)


class _Constants:
    """Small constant values (initializers, Constant nodes) for Pad pads and Reduce axes."""

    def __init__(self, graph) -> None:
        self._tensors = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                tensor = constant_node_tensor(node)
                if tensor is not None:
                    self._tensors[node.output[0]] = tensor

    def value(self, name: str):
        tensor = self._tensors.get(name)
        if tensor is None or tensor.data_location == onnx.TensorProto.EXTERNAL:
            return None
        count = int(np.prod(tensor.dims)) if tensor.dims else 1
        if count > 64:
            return None
        try:
            return numpy_helper.to_array(tensor)
        except Exception:  # noqa: BLE001 - a malformed constant just leaves the value unknown
            return None


def _rank(value_info) -> int | None:
    kind = value_info.type.WhichOneof("value")
    if kind != "tensor_type" or not value_info.type.tensor_type.HasField("shape"):
        return None
    return len(value_info.type.tensor_type.shape.dim)


def _default_spatial(graph, input_name: str) -> tuple[int, int]:
    """The image axes of an input no window slid over: (1, 2) when it is read through an NHWC to
    NCHW Transpose, (2, 3) otherwise."""
    for node in graph.node:
        if node.op_type == "Transpose" and node.input and node.input[0] == input_name:
            if list(attribute(node, "perm") or []) == [0, 3, 1, 2]:
                return (1, 2)
    return (2, 3)
