"""Load the two models of a diff (both Caffe or both ONNX) as graphs, and read a saved plan.

Shapes, and so the MAC counts, are at each model's declared input size. An ONNX model whose
input dimensions are symbolic (a converted net that takes any size) takes the other model's
numbers for them, input by input, so both sides are costed at the same size; ``input_shapes``
(``--input-shape``) set inputs of both.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from proto_rewrite.errors import UsageError
from proto_rewrite.formats import model_format
from proto_rewrite.graph_view import Graph
from proto_rewrite.graphdiff.text import side_label

AUTO = "auto"


@dataclass
class LoadOptions:
    weights_a: str | None = AUTO  # a caffemodel, None for none, AUTO for <stem>.caffemodel beside it
    weights_b: str | None = AUTO
    phase: str = "TEST"
    strict: bool = False
    input_shapes: dict[str, list[int]] = field(default_factory=dict)
    caffe_schema: object = None  # a fork's compiled Caffe schema (path or CaffeSchema); None: the bundled one


def load_pair(path_a, path_b, options: LoadOptions | None = None) -> tuple[Graph, Graph]:
    options = options or LoadOptions()
    kinds = model_format(path_a), model_format(path_b)
    if kinds[0] != kinds[1]:
        raise UsageError(
            f"cannot diff a {kinds[0]} model ({path_a}) with a {kinds[1]} model ({path_b})",
            hint="diff compares two Caffe prototxts or two .onnx models",
        )
    if kinds[0] == "onnx":
        for option, value in (("weights_a", options.weights_a), ("weights_b", options.weights_b)):
            if value not in (None, AUTO):
                raise UsageError(
                    f"{option} applies to Caffe models only", options=(option,), hint="ONNX models carry their weights"
                )
        return _load_onnx_pair(path_a, path_b, options)
    return _load_caffe(path_a, options.weights_a, options), _load_caffe(path_b, options.weights_b, options)


def _load_caffe(path, weights, options: LoadOptions) -> Graph:
    from proto_rewrite.caffe.model import AUTO as CAFFE_AUTO
    from proto_rewrite.caffe.model import load_caffe
    from proto_rewrite.caffe.view import caffe_graph

    model = load_caffe(
        path,
        CAFFE_AUTO if weights == AUTO else weights,
        phase=options.phase,
        strict=options.strict,
        input_shapes=options.input_shapes or None,
        schema=options.caffe_schema,
    )
    return caffe_graph(model)


def _load_onnx_pair(path_a, path_b, options: LoadOptions) -> tuple[Graph, Graph]:
    from proto_rewrite.onnx.model import load_onnx
    from proto_rewrite.onnx.view import declared_inputs

    model_a, model_b = load_onnx(path_a), load_onnx(path_b)
    given = {name: list(shape) for name, shape in options.input_shapes.items()}
    shapes_a = _known(given, model_a)
    graph_a = _onnx_graph(model_a, shapes_a or None)
    sizes_a = {t.name: t.shape for t in graph_a.inputs}
    for name, shape in shapes_a.items():
        sizes_a[name] = tuple(shape)
    shapes_b = _known(given, model_b)
    for tensor in declared_inputs(model_b):
        if tensor.name in shapes_b or tensor.shape is None:
            continue
        other = sizes_a.get(tensor.name)
        if other is None or len(other) != len(tensor.shape):
            continue
        fill = [o if not isinstance(d, int) and isinstance(o, int) else -1 for d, o in zip(tensor.shape, other)]
        if any(v != -1 for v in fill):
            shapes_b[tensor.name] = fill
    return graph_a, _onnx_graph(model_b, shapes_b or None)


def _onnx_graph(model, input_shapes) -> Graph:
    """The model's graph, warning when shape inference gave out (the diff's MACs need shapes)."""
    from proto_rewrite.diagnostics import Diagnostic
    from proto_rewrite.errors import Location
    from proto_rewrite.onnx.view import onnx_graph

    graph = onnx_graph(model, input_shapes)
    if graph.inference_note:
        graph.diagnostics.append(
            Diagnostic("warning", f"{graph.inference_note}; MACs may be unknown", Location(model.path))
        )
    return graph


def _known(given: dict, model) -> dict:
    """The given input shapes that name inputs of ``model``."""
    from proto_rewrite.onnx.view import declared_inputs

    names = {t.name for t in declared_inputs(model)}
    return {name: shape for name, shape in given.items() if name in names}


def text_diff(a: Graph, b: Graph) -> str:
    """A unified diff of the two models' normalised texts (Caffe: V2 prototxt)."""
    before = a.normalized_text().splitlines(keepends=True) if a.normalized_text else []
    after = b.normalized_text().splitlines(keepends=True) if b.normalized_text else []
    return "".join(difflib.unified_diff(before, after, side_label("a", a.path), side_label("b", b.path)))
