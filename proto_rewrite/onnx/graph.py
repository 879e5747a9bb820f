"""A read-only index over an ONNX graph: who produces and reads each tensor, types and shapes,
constant values. The matchers and the planner ask it questions; nothing here changes the model."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from onnx import AttributeProto, defs, helper, numpy_helper

from proto_rewrite.errors import InputFileError
from proto_rewrite.onnx.shapes import TensorType, checkable_model, collect_types, infer
from proto_rewrite.onnx.tensors import StoredTensor

DEFAULT_DOMAINS = ("", "ai.onnx")
SMALL_CONSTANT = 4096  # elements: larger constants are never decoded for shape questions
# The operators whose inputs and attributes the matchers, the planner and the pooling read: a node
# of these must have the arity and attribute types of its ONNX definition (check_node_schema).
INTERPRETED_OPS = frozenset(
    """Gemm MatMul Add Sub Mul Div Flatten Reshape Transpose Shape Gather Unsqueeze
    Squeeze Concat Slice Cast Constant Identity Dropout GlobalAveragePool GlobalMaxPool Softmax LogSoftmax
    ReduceMean ReduceSum ReduceProd AveragePool ConstantOfShape
    Relu LeakyRelu Elu Sigmoid Tanh Clip BatchNormalization Conv QuantizeLinear DequantizeLinear""".split()
)


def attribute(node, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return helper.get_attribute_value(attr)
    return default


def check_node_schema(node, opset: int) -> str | None:
    """What is wrong with ``node`` against its operator's definition at ``opset`` (the number of
    inputs and outputs, the type of each attribute it sets, the required attributes), or None.
    An operator onnx does not define is not judged here."""
    try:
        schema = defs.get_schema(node.op_type, min(max(opset, 1), 2**31 - 1), "")
    except defs.SchemaError:
        return None
    for what, count, low, high in (
        ("inputs", len(node.input), schema.min_input, schema.max_input),
        ("outputs", len(node.output), schema.min_output, schema.max_output),
    ):
        if not low <= count <= high:
            wanted = str(low) if low == high else f"{low} to {high}"
            return f"it has {count} {what}; {node.op_type} (opset {opset}) takes {wanted}"
    given = {attr.name: attr for attr in node.attribute}
    for name, spec in schema.attributes.items():
        attr = given.get(name)
        if attr is None:
            if spec.required:
                return f"it lacks the required attribute '{name}'"
        elif attr.type != int(spec.type):
            return (
                f"its attribute '{name}' is of type {_attribute_type(attr.type)}, "
                f"{node.op_type} expects {_attribute_type(int(spec.type))}"
            )
    return None


def _attribute_type(value: int) -> str:
    try:
        return AttributeProto.AttributeType.Name(value)
    except ValueError:
        return str(value)


def constant_node_tensor(node):
    """The TensorProto a Constant node makes, or None (sparse and string constants)."""
    for attr in node.attribute:
        if attr.name == "value":
            return attr.t
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            value = helper.get_attribute_value(attr)
            dtype = np.float32 if "float" in attr.name else np.int64
            return numpy_helper.from_array(np.array(value, dtype=dtype), node.output[0])
    return None


def subgraph_reads(node) -> set[str]:
    """Tensors a node's subgraphs (If, Loop, Scan bodies) read from the enclosing scope."""
    reads: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.HasField("g") else []
        graphs += list(attr.graphs)
        for graph in graphs:
            defined = {vi.name for vi in graph.input} | {t.name for t in graph.initializer}
            for inner in graph.node:
                for name in list(inner.input) + sorted(subgraph_reads(inner)):
                    if name and name not in defined:
                        reads.add(name)
                defined.update(inner.output)
    return reads


class GraphView:
    """The model's top-level graph, indexed. ``input_shapes`` fixes symbolic input dimensions."""

    def __init__(self, model, input_shapes: dict | None = None) -> None:
        self.model = model
        graph = model.graph
        self.nodes = list(graph.node)
        self.opset = model.opset or 0
        self.initializers = model.initializers
        self.ir_version = model.proto.ir_version
        listed = [vi.name for vi in graph.input]
        self.graph_inputs = [name for name in listed if name not in self.initializers]
        self.listed_initializers = {name for name in listed if name in self.initializers}
        self.outputs = [vi.name for vi in graph.output]
        self.output_set = set(self.outputs)
        self.producer: dict[str, int] = {}
        self.consumers: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for index, node in enumerate(self.nodes):
            for name in node.output:
                if name:
                    self.producer[name] = index
            for position, name in enumerate(node.input):
                if name:
                    self.consumers[name].append((index, position))
            for name in sorted(subgraph_reads(node)):
                self.consumers[name].append((index, -1))
        self._keys = self._make_keys()
        self.folds: dict = {}  # name -> fold.Folded | None, filled by fold.fold_constant
        self._check_schemas()
        inferred, self.inference_note = infer(checkable_model(model, input_shapes))
        self.types: dict[str, TensorType] = collect_types(inferred)
        self.input_types = {name: self.types.get(name) for name in self.graph_inputs}

    def _check_schemas(self) -> None:
        for index, node in enumerate(self.nodes):
            if node.domain in DEFAULT_DOMAINS and node.op_type in INTERPRETED_OPS:
                problem = check_node_schema(node, self.opset)
                if problem:
                    raise InputFileError(
                        f"node '{self.key(index)}' ({node.op_type}) is malformed: {problem}",
                        path=self.model.path,
                        layer=self.key(index),
                        hint="the model is corrupt (onnx.checker says the same); export it again",
                    )

    def _make_keys(self) -> list[str]:
        counts = defaultdict(int)
        for node in self.nodes:
            counts[node.name] += 1
        keys = []
        for node in self.nodes:
            if node.name and counts[node.name] == 1:
                keys.append(node.name)
            else:
                keys.append(node.output[0] if node.output and node.output[0] else f"{node.op_type}_{len(keys)}")
        return keys

    # -- nodes
    def key(self, index: int) -> str:
        """The node's name; its first output's name when it has none (or shares it)."""
        return self._keys[index]

    def label(self, index: int) -> str:
        return f"{self.nodes[index].op_type} '{self.key(index)}'"

    def producer_of(self, name: str):
        index = self.producer.get(name)
        return None if index is None else (index, self.nodes[index])

    def producer_op(self, name: str) -> str | None:
        found = self.producer_of(name)
        if found is None or found[1].domain not in DEFAULT_DOMAINS:
            return None
        return found[1].op_type

    def uses(self, name: str) -> list[tuple[int, int]]:
        """(node index, input position) of every reader; position -1: read inside a subgraph."""
        return self.consumers.get(name, [])

    def is_graph_output(self, name: str) -> bool:
        return name in self.output_set

    # -- types and shapes
    def type(self, name: str) -> TensorType | None:
        return self.types.get(name)

    def shape(self, name: str) -> tuple | None:
        found = self.types.get(name)
        return None if found is None else found.shape

    def rank(self, name: str) -> int | None:
        shape = self.shape(name)
        return None if shape is None else len(shape)

    # -- constants
    def is_overridable(self, name: str) -> bool:
        """An initializer that is also a graph input (IR >= 4): a default the caller may replace."""
        return name in self.listed_initializers and self.ir_version >= 4

    def constant_tensor(self, name: str):
        """The tensor behind a constant: an initializer, or a Constant node's value. None otherwise."""
        if name in self.initializers and not self.is_overridable(name):
            return self.initializers[name]
        if self.producer_op(name) == "Constant":
            tensor = constant_node_tensor(self.nodes[self.producer[name]])
            if tensor is not None:
                return StoredTensor.from_proto(tensor, self.model.base_dir)
        return None

    def const_value(self, name: str) -> np.ndarray | None:
        """The value of a small constant (shape targets, axes, scalars), or None."""
        tensor = self.constant_tensor(name)
        if tensor is None or tensor.numel > SMALL_CONSTANT:
            return None
        try:
            return np.asarray(tensor.array())
        except Exception:
            return None
