"""What a layer converter sees: its layer, value names, shapes, weights, and the graph to add to.

A converter is a function ``convert(ctx)`` registered for one or more Caffe layer types with
``@converter("Type", ...)``. It adds nodes that read ``ctx.inputs`` and write every name of
``ctx.outputs``; it reads shapes (as Caffe computes them for the export's input shapes) and
which of their dimensions vary with a dynamic batch or size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from proto_rewrite.caffe.onnx_export.errors import ExportError, UnsupportedLayerError
from proto_rewrite.onnx.graph_builder import Graph

Converter = Callable[["LayerContext"], None]
CONVERTERS: dict[str, Converter] = {}


def converter(*types: str):
    def register(function: Converter) -> Converter:
        for name in types:
            CONVERTERS[name] = function
        return function

    return register


@dataclass
class LayerContext:
    layer: object
    graph: Graph
    inputs: list[str]
    outputs: list[str]
    in_shapes: list[tuple]
    out_shapes: list[tuple]
    in_dynamic: list[tuple]  # per bottom: one bool per axis, True where the size varies
    weights: list[np.ndarray]
    shared: dict[str, str]  # Caffe param name -> initializer (weights shared between layers)
    path: str | None = None
    line: int | None = None
    unknown_dims: dict[int, dict[int, str]] = field(default_factory=dict)  # top -> axis -> dim name

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def opset(self) -> int:
        return self.graph.opset

    # -- errors ---------------------------------------------------------------------------------

    def error(self, message: str, hint: str | None = None, options: tuple[str, ...] = ()) -> ExportError:
        return ExportError(
            f"{self.layer.type}: {message}", path=self.path, line=self.line, layer=self.name, hint=hint, options=options
        )

    def refuse(self, message: str, hint: str | None = None) -> UnsupportedLayerError:
        return UnsupportedLayerError(
            f"{self.layer.type}: {message}",
            layer_type=self.layer.type,
            path=self.path,
            line=self.line,
            layer=self.name,
            hint=hint,
        )

    # -- nodes ----------------------------------------------------------------------------------

    def emit(
        self, op: str, inputs: Sequence[str], *, top: int | None = None, suffix: str | None = None, **attrs
    ) -> str:
        """One node. ``top``: write top number ``top`` (the node is named after the layer);
        otherwise a new value named ``LAYER/SUFFIX``."""
        if top is not None:
            if top >= len(self.outputs):
                raise self.error(
                    f"has {len(self.outputs)} top(s); this layer writes at least {top + 1}",
                    hint="give the layer its top (the blob it writes)",
                )
            return self.graph.op(op, inputs, name=self.name, out=self.outputs[top], **attrs)
        return self.graph.op(op, inputs, name=f"{self.name}/{suffix or op.lower()}", **attrs)

    def sub(self, suffix: str) -> str:
        """A name for a helper node or value of this layer."""
        return f"{self.name}/{suffix}"

    def out_or_none(self, top: int | None) -> str | None:
        if top is not None and top >= len(self.outputs):
            raise self.error(
                f"has {len(self.outputs)} top(s); this layer writes at least {top + 1}",
                hint="give the layer its top (the blob it writes)",
            )
        return None if top is None else self.outputs[top]

    # -- weights and constants ------------------------------------------------------------------

    def weight(self, index: int, role: str, array: np.ndarray | None = None) -> str:
        """Blob ``index`` of the layer as an initializer ``LAYER/ROLE`` (``array``: a view or a
        transform of it to store instead). Blobs shared through a Caffe param name are stored once."""
        share = None
        if array is None and index < len(self.layer.param) and self.layer.param[index].name:
            share = self.layer.param[index].name
            if share in self.shared:
                return self.shared[share]
        if array is None:
            array = self.blob(index)
        name = self.graph.weight(array, self.sub(role))
        if share:
            self.shared[share] = name
        return name

    def blob(self, index: int) -> np.ndarray:
        if index >= len(self.weights):
            raise self.error(
                f"has {len(self.weights)} weight blobs; blob {index} is missing",
                "give the caffemodel that goes with this prototxt (weights)",
                options=("weights",),
            )
        return self.weights[index]

    def ints(self, values, what: str) -> str:
        return self.graph.ints(list(values), self.sub(what))

    def floats(self, values, what: str) -> str:
        return self.graph.floats(values, self.sub(what))

    # -- shapes ---------------------------------------------------------------------------------

    def rank(self, bottom: int = 0) -> int:
        return len(self.in_shapes[bottom])

    def dynamic(self, bottom: int = 0, axes: Sequence[int] | None = None) -> bool:
        mask = self.in_dynamic[bottom]
        return any(mask[axis] for axis in (range(len(mask)) if axes is None else axes))

    def require_static(self, bottom: int, axes: Sequence[int], why: str) -> None:
        if self.dynamic(bottom, axes):
            raise self.error(
                f"{why}, so axes {list(axes)} of its input cannot vary",
                "export without dynamic_batch / dynamic_size, or at the size you need (input_shapes)",
                options=("dynamic_batch", "dynamic_size", "input_shapes"),
            )

    def shape_tensor(self, bottom: int, spec: Sequence) -> str:
        """A 1-D int64 shape for Reshape: each item an int (0: copy the input dim at the same
        index, -1: infer, > 0: that size), or ``("dim", axis)``: the input's size along ``axis``
        (a constant unless that size is dynamic)."""
        x, mask, shape = self.inputs[bottom], self.in_dynamic[bottom], self.in_shapes[bottom]
        pieces: list[list | str] = []
        for position, item in enumerate(spec):
            if isinstance(item, tuple):
                axis = item[1]
                if not mask[axis]:
                    value = shape[axis]
                elif axis == position:
                    value = 0
                else:
                    pieces.append(self.graph.dims_of(x, [axis], self.sub(f"dim{axis}")))
                    continue
            else:
                value = item
            if pieces and isinstance(pieces[-1], list):
                pieces[-1].append(value)
            else:
                pieces.append([value])
        parts = [piece if isinstance(piece, str) else self.ints(piece, "shape") for piece in pieces]
        if len(parts) == 1:
            return parts[0]
        return self.graph.op("Concat", parts, name=self.sub("shape"), axis=0)

    def count(self, bottom: int, start: int, end: int | None = None) -> int:
        return math.prod(self.in_shapes[bottom][start:end])


def canonical_axis(ctx: LayerContext, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise ctx.error(f"{what} {axis} is out of range for a {rank}-D input")
    return axis + rank if axis < 0 else axis
