"""What ``inspect`` reports, independent of the model format: inputs, layers, weights, totals.

:func:`summarize_graph` reads them off the format-neutral graph view (``proto_rewrite.graph_view``,
built by the same adapter per format as the diff's; ``caffe.summary`` and ``onnx.summary`` load
and call it); ``to_dict`` gives the JSON document described by ``schemas/inspect.schema.json``
and ``render_text`` the table. Parameters are counted by the graph view's one rule: a layer has
the parameters of the weights it reads, the model each weight once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from proto_rewrite.diagnostics import Diagnostic
from proto_rewrite.graph_view import Graph, parameters, total_parameters
from proto_rewrite.shape_text import shape_text as _shape_text

SCHEMA_VERSION = 1


@dataclass
class TensorInfo:
    name: str
    shape: list[int] | None  # None when unknown


@dataclass
class WeightInfo:
    shape: list[int | None] | None  # None dims: depend on an unknown input shape
    dtype: str | None  # None when no weights file was read


@dataclass
class LayerInfo:
    name: str
    type: str
    inputs: list[str]
    outputs: list[str]
    weights: list[WeightInfo] = field(default_factory=list)
    parameters: int | None = 0  # None when a weight shape is not fully known
    line: int | None = None
    output_shapes: list[list[int] | None] = field(default_factory=list)  # one per output; None: unknown


@dataclass
class ModelSummary:
    model_format: str  # "caffe" or "onnx"
    path: str
    weights_path: str | None
    source_format: str
    upgrades: list[str]
    inputs: list[TensorInfo]
    layers: list[LayerInfo]
    excluded_layers: list[str] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    total_parameters: int | None = 0  # each weight once, however many layers read it

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "model_format": self.model_format,
            "path": self.path,
            "weights_path": self.weights_path,
            "source_format": self.source_format,
            "upgrades": list(self.upgrades),
            "inputs": [asdict(t) for t in self.inputs],
            "layers": [asdict(layer) for layer in self.layers],
            "excluded_layers": list(self.excluded_layers),
            "totals": {
                "layers": len(self.layers),
                "parameters": self.total_parameters,
                "layer_types": dict(sorted(Counter(layer.type for layer in self.layers).items())),
            },
            "diagnostics": [d.to_dict() for d in self.diagnostics],
        }


def summarize_graph(graph: Graph) -> ModelSummary:
    """The inspect summary of a model's graph view. Dimensions that are not numbers (symbolic
    ONNX dimensions) are shown as unknown."""
    layers = [
        LayerInfo(
            node.name,
            node.op,
            list(node.inputs),
            list(node.outputs),
            [WeightInfo(_numbers(w.shape), w.dtype) for w in node.weights],
            parameters(node),
            node.line,
            [_numbers(shape) for shape in node.output_shapes],
        )
        for node in graph.nodes
    ]
    return ModelSummary(
        model_format=graph.model_format,
        path=graph.path,
        weights_path=graph.weights_path,
        source_format=graph.source_format,
        upgrades=list(graph.upgrades),
        inputs=[TensorInfo(t.name, _numbers(t.shape)) for t in graph.inputs_at_size()],
        layers=layers,
        excluded_layers=list(graph.excluded_layers),
        diagnostics=list(graph.diagnostics),
        total_parameters=total_parameters(graph),
    )


def _numbers(shape) -> list | None:
    return None if shape is None else [d if isinstance(d, int) else None for d in shape]


COLUMN_MAX = 60


def render_text(summary: ModelSummary) -> str:
    lines = [f"model: {summary.path} ({summary.model_format}, {summary.source_format})"]
    lines.append(f"weights: {summary.weights_path or 'none'}")
    if summary.upgrades:
        lines.append(f"upgraded: {'; '.join(summary.upgrades)}")
    if summary.excluded_layers:
        lines.append(f"excluded by phase rules: {', '.join(summary.excluded_layers)}")
    for tensor in summary.inputs:
        lines.append(f"input: {tensor.name} {_shape_text(tensor.shape)}")
    rows = [("layer", "type", "inputs -> outputs", "output shapes", "weights", "params")]
    for layer in summary.layers:
        weights = ", ".join(_shape_text(w.shape) for w in layer.weights) or "-"
        params = "?" if layer.parameters is None else f"{layer.parameters:,}"
        outputs = ", ".join(_shape_text(shape) for shape in layer.output_shapes) or "-"
        rows.append(
            (
                layer.name,
                layer.type,
                f"{','.join(layer.inputs)} -> {','.join(layer.outputs)}",
                outputs,
                weights,
                params if layer.weights else "-",
            )
        )
    # A column is as wide as its cells, up to COLUMN_MAX: one huge cell (an Eltwise of 10 000
    # bottoms) overflows its own line instead of padding every other row to its width.
    widths = [min(max(len(row[i]) for row in rows), COLUMN_MAX) for i in range(5)]
    lines.append("")
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5].rjust(12))
    total = summary.total_parameters
    lines.append("")
    lines.append(f"{len(summary.layers)} layers, {'?' if total is None else f'{total:,}'} parameters")
    return "\n".join(lines) + "\n"
