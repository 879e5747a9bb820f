"""Shape inference (and onnx.checker) on a model without its weight data.

onnx's shape inference and checker take a whole ModelProto. Handing them the weights would copy
every byte; they only need the weights' types and shapes. :func:`checkable_model` gives them the
skeleton with each large initializer declared as a graph input of the same type and shape, and
the small ones (shape constants, axes, scalars) inline, so values that shapes depend on are there.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper

from proto_rewrite.errors import UsageError

INLINE_BYTES = 4096  # initializers up to this size go in whole (their values may matter for shapes)


@dataclass(frozen=True)
class TensorType:
    elem_type: int
    shape: tuple | None  # None: rank unknown; items are int (known), str (symbolic) or None (unknown)

    @property
    def rank(self) -> int | None:
        return None if self.shape is None else len(self.shape)

    def dims(self) -> tuple[int, ...] | None:
        """The shape when every dimension is a known number, else None."""
        if self.shape is None or not all(isinstance(d, int) for d in self.shape):
            return None
        return self.shape


def checkable_model(model, input_shapes: dict | None = None) -> onnx.ModelProto:
    """The model's skeleton with its initializers as inputs (large) or inline (small)."""
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    graph = proto.graph
    listed = {vi.name for vi in graph.input}
    must_list = proto.ir_version < 4  # before IR 4, shape inference sees only initializers that are inputs
    for tensor in model.initializers.values():
        inline = tensor.nbytes <= INLINE_BYTES
        if inline:
            graph.initializer.append(tensor.to_tensor_proto())
        if tensor.name not in listed and (must_list or not inline):
            graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.dims)))
    if input_shapes:
        apply_input_shapes(graph, input_shapes, set(model.initializers))
    return proto


def apply_input_shapes(graph: onnx.GraphProto, input_shapes: dict, initializer_names: set[str]) -> None:
    """Fix the listed inputs' dimensions (-1 keeps a dimension as it is)."""
    inputs = {vi.name: vi for vi in graph.input if vi.name not in initializer_names}
    for name, shape in input_shapes.items():
        if shape is None:
            continue
        if name not in inputs:
            raise UsageError(
                f"input_shapes names '{name}', which is not an input of the model",
                hint=f"the inputs are: {', '.join(inputs) or 'none'}",
            )
        tensor_type = inputs[name].type.tensor_type
        dims = tensor_type.shape.dim
        if tensor_type.HasField("shape") and len(dims) != len(shape):
            raise UsageError(
                f"input '{name}' has {len(dims)} dimensions, input_shapes gives {len(shape)} ({list(shape)})",
                hint="give one number per dimension",
            )
        if not tensor_type.HasField("shape"):
            for _ in shape:
                tensor_type.shape.dim.add()
        for dim, value in zip(tensor_type.shape.dim, shape):
            value = int(value)
            if value == -1:
                continue
            if value < 1:
                raise UsageError(f"input_shapes for '{name}' has dimension {value}", hint="dimensions are >= 1")
            if dim.HasField("dim_value") and dim.dim_value != value:
                raise UsageError(
                    f"input '{name}' has the fixed shape {shape_of(inputs[name].type)}; input_shapes "
                    f"gives {list(shape)}",
                    hint="input_shapes may only fix symbolic dimensions",
                )
            dim.dim_value = value


def data_prop_is_safe(proto: onnx.ModelProto) -> bool:
    """Whether onnx's data propagation may run on ``proto``. Before onnx 1.21 it crashes the process
    (a segmentation fault, not an exception) on a Slice with a negative step over an empty shape
    tensor; there it runs only on graphs whose Slices all step forwards by a known step."""
    if _ONNX_VERSION >= (1, 21):
        return True
    constants = {t.name: t for t in proto.graph.initializer}
    constants.update(
        {
            n.output[0]: a.t
            for n in proto.graph.node
            if n.op_type == "Constant"
            for a in n.attribute
            if a.name == "value" and n.output
        }
    )
    for node in _all_nodes(proto.graph):
        if node.op_type != "Slice":
            continue
        if any(a.name == "steps" for a in node.attribute):
            return False
        if len(node.input) > 4 and node.input[4]:
            steps = constants.get(node.input[4])
            if steps is None or (onnx.numpy_helper.to_array(steps) <= 0).any():
                return False
    return True


def _all_nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _all_nodes(sub)


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


_ONNX_VERSION = _version(onnx.__version__)


def infer(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, str | None]:
    """onnx shape inference, forgiving: returns the inferred model and a note when it gave up."""
    del proto.graph.value_info[:]
    if data_prop_is_safe(proto):
        try:
            return onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False, data_prop=True), None
        except Exception:  # noqa: BLE001 - data propagation fails on some models; try without
            pass
    try:
        return onnx.shape_inference.infer_shapes(proto, check_type=False, strict_mode=False), None
    except Exception as err:  # noqa: BLE001 - onnx raises several error types
        text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return proto, f"shape inference failed: {text}"


def collect_types(proto: onnx.ModelProto) -> dict[str, TensorType]:
    graph = proto.graph
    types = {}
    for tensor in graph.initializer:
        types[tensor.name] = TensorType(tensor.data_type, tuple(tensor.dims))
    for value in list(graph.input) + list(graph.value_info) + list(graph.output):
        tensor_type = type_of(value.type)
        if tensor_type is not None and (value.name not in types or types[value.name].shape is None):
            types[value.name] = tensor_type
    return types


def type_of(type_proto: onnx.TypeProto) -> TensorType | None:
    if type_proto.WhichOneof("value") != "tensor_type":
        return None
    return TensorType(type_proto.tensor_type.elem_type, shape_of(type_proto))


def shape_of(type_proto: onnx.TypeProto) -> tuple | None:
    tensor_type = type_proto.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return tuple(dims)


def clean_type(type_proto: onnx.TypeProto) -> None:
    """Forget the ``unk__N`` names shape inference makes up for unknown dimensions."""
    if type_proto.WhichOneof("value") != "tensor_type":
        return
    for dim in type_proto.tensor_type.shape.dim:
        if dim.HasField("dim_param") and dim.dim_param.startswith("unk__"):
            dim.ClearField("dim_param")
