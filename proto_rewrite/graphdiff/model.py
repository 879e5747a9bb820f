"""The format-neutral graph the diff works on: nodes with a name, an op, attributes, inputs,
outputs and weights, and the model's inputs and outputs.

``caffe_view`` and ``onnx_view`` build a :class:`Graph` from a loaded model; everything after
that (matching, weight relations, cost, rendering) reads only these records. Weights stay lazy:
a :class:`Weight` holds a function that returns the array, called when the values are compared.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field

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


def side_label(side: str, path: str) -> str:
    """``a/path`` as git writes it, for a relative path; an absolute path as it is."""
    return path if os.path.isabs(path) else f"{side}/{path}"
