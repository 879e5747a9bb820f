"""The format-neutral view of a model: nodes with a name, an op, attributes, inputs, outputs
and weights (shapes, dtypes, whether they are parameters), and the model's inputs and outputs.

One adapter per format builds a :class:`Graph` from a loaded model (``caffe.view``,
``onnx.view``); ``inspect`` (``proto_rewrite.summary``) and ``diff`` (``proto_rewrite.graphdiff``)
read only these records. Weights stay lazy: a :class:`Weight`
holds a function that returns the array, called when the values are compared.

Parameters are counted by one rule (:func:`parameters`, :func:`total_parameters`): a node has
the parameters of the weights it reads (integer shape constants and the like are not
parameters); a model has each weight once, however many nodes read it (a shared ONNX
initializer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# A shape: a tuple whose items are ints, symbolic names (str) or None (unknown); None: rank unknown.
Shape = tuple


@dataclass
class Weight:
    role: str  # "weight", "bias", "mean"... or "blob 2" / "input 3" when it has no known meaning
    name: str  # the initializer's name (ONNX) or "layer[index]" (Caffe)
    shape: Shape | None
    dtype: str | None  # None when no weights were read (Caffe without a caffemodel)
    load: Callable[[], np.ndarray] | None = None  # None: the values are not available
    is_parameter: bool = True  # integer shape constants and the like are not counted as parameters
    own_name: bool = True  # False: the name is made from the layer's (Caffe), so a renamed layer renames it

    @property
    def size(self) -> int | None:
        if self.shape is None or not all(isinstance(d, int) for d in self.shape):
            return None
        return math.prod(self.shape)

    def to_dict(self) -> dict:
        return {"role": self.role, "name": self.name, "shape": shape_list(self.shape), "dtype": self.dtype}


@dataclass
class Node:
    name: str
    op: str
    attributes: dict[str, object] = field(default_factory=dict)  # JSON values, normalised per op
    inputs: list[str] = field(default_factory=list)  # data inputs (bottoms), weights excluded
    outputs: list[str] = field(default_factory=list)
    weights: list[Weight] = field(default_factory=list)
    input_shapes: list[Shape | None] = field(default_factory=list)
    output_shapes: list[Shape | None] = field(default_factory=list)
    line: int | None = None  # where the node is declared (a prototxt's line), when known

    def weight(self, role: str) -> Weight | None:
        for weight in self.weights:
            if weight.role == role:
                return weight
        return None


@dataclass
class Tensor:
    name: str
    shape: Shape | None


@dataclass
class Graph:
    model_format: str  # "caffe" or "onnx"
    path: str
    weights_path: str | None
    nodes: list[Node]
    inputs: list[Tensor]  # as declared in the file
    outputs: list[Tensor]
    has_weights: bool = True  # False: weight values were not read (shapes only)
    diagnostics: list = field(default_factory=list)
    normalized_text: Callable[[], str] | None = None  # the model as normalised text (Caffe: V2 prototxt)
    source_format: str = ""  # what the file was: "V1 prototxt (upgraded)", "ONNX IR 8, opset 17"...
    upgrades: list[str] = field(default_factory=list)  # upgrades applied on reading (Caffe)
    excluded_layers: list[str] = field(default_factory=list)  # left out by the phase rules (Caffe)
    inference_note: str | None = None  # why shape inference gave less than every shape (ONNX)
    sized_inputs: list[Tensor] | None = None  # the inputs at the size the shapes are for, if not as declared

    def inputs_at_size(self) -> list[Tensor]:
        """The inputs with the shapes the node shapes were inferred from (given input shapes applied)."""
        return self.inputs if self.sized_inputs is None else self.sized_inputs

    def summary(self) -> dict:
        return {
            "path": self.path,
            "weights_path": self.weights_path,
            "has_weights": self.has_weights,
            "inputs": [{"name": t.name, "shape": shape_list(t.shape)} for t in self.inputs],
            "outputs": [{"name": t.name, "shape": shape_list(t.shape)} for t in self.outputs],
            "nodes": len(self.nodes),
        }


def shape_list(shape: Shape | None) -> list | None:
    return None if shape is None else list(shape)


def parameters(node: Node) -> int | None:
    """The parameters of the weights ``node`` reads; None when a weight's shape is not fully known."""
    total = 0
    for weight in node.weights:
        if not weight.is_parameter:
            continue
        size = weight.size
        if size is None:
            return None
        total += size
    return total


def total_parameters(graph: Graph) -> int | None:
    """Each weight counted once, however many nodes read it (a shared ONNX initializer)."""
    seen: set[str] = set()
    total = 0
    for node in graph.nodes:
        for weight in node.weights:
            if not weight.is_parameter or weight.name in seen:
                continue
            seen.add(weight.name)
            if weight.size is None:
                return None
            total += weight.size
    return total
