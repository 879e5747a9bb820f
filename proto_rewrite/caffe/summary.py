"""The inspect summary of a loaded Caffe model: one layer per layer of its graph view."""

from __future__ import annotations

from proto_rewrite.caffe.model import CaffeModel
from proto_rewrite.caffe.shapes import NetShapes, infer_shapes
from proto_rewrite.caffe.view import caffe_graph
from proto_rewrite.summary import ModelSummary, summarize_graph


def summarize(model: CaffeModel, shapes: NetShapes | None = None) -> ModelSummary:
    """The inspect summary. ``shapes``: the net's inferred shapes (default: the model's own)."""
    shapes = shapes or model.shapes or infer_shapes(model.net, path=model.prototxt_path, lines=model.layer_lines)
    return summarize_graph(caffe_graph(model, shapes))
