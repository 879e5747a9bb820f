"""The inspect summary of a loaded ONNX model: one layer per node of its graph view.

A layer's data inputs are the node's inputs that are not initializers; its weights are the
initializers and Constant values it reads, with shapes and dtypes. Integer and boolean tensors
(shape targets, axes, indices) are listed as weights but are not parameters. An initializer read
by several nodes counts in each node's parameters, and once in the total.
"""

from __future__ import annotations

from proto_rewrite.onnx.view import onnx_graph
from proto_rewrite.summary import ModelSummary, summarize_graph


def summarize_onnx(model, input_shapes: dict | None = None) -> ModelSummary:
    """``input_shapes``: {input name: tuple of ints} fixing symbolic dimensions (-1 keeps one)."""
    return summarize_graph(onnx_graph(model, input_shapes))
