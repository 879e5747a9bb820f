"""Build the format-neutral inspect summary of a loaded Caffe model."""

from __future__ import annotations

import math

from proto_rewrite.caffe.blob_shapes import expected_blobs
from proto_rewrite.caffe.model import CaffeModel
from proto_rewrite.caffe.shapes import NetShapes, infer_shapes
from proto_rewrite.summary import LayerInfo, ModelSummary, TensorInfo, WeightInfo


def summarize(model: CaffeModel, shapes: NetShapes | None = None) -> ModelSummary:
    """The inspect summary. ``shapes``: the net's inferred shapes (default: the model's own)."""
    diagnostics = list(model.diagnostics)
    shapes = shapes or model.shapes or infer_shapes(model.net, path=model.prototxt_path, lines=model.layer_lines)
    inputs = []
    layers = []
    for layer in model.net.layer:
        tops = shapes.tops.get(layer.name, [None] * len(layer.top))
        if layer.type == "Input":
            inputs.extend(TensorInfo(top, None if shape is None else list(shape)) for top, shape in zip(layer.top, tops))
        layers.append(_layer_info(model, layer, shapes))
    return ModelSummary(
        model_format="caffe",
        path=model.prototxt_path,
        weights_path=model.weights_path,
        source_format=model.source_format,
        upgrades=list(model.upgrades),
        inputs=inputs,
        layers=layers,
        excluded_layers=list(model.excluded_layers),
        diagnostics=diagnostics,
    )


def _layer_info(model: CaffeModel, layer, shapes: NetShapes) -> LayerInfo:
    arrays = model.weights.get(layer.name)
    if arrays is not None:
        weights = [WeightInfo(list(a.shape), str(a.dtype)) for a in arrays]
    else:
        expected = expected_blobs(layer, shapes.bottoms.get(layer.name)) or []
        weights = [WeightInfo(None if s is None else list(s), None) for s in expected]
    params = 0
    for weight in weights:
        if weight.shape is None or any(d is None for d in weight.shape):
            params = None
            break
        params += math.prod(weight.shape)
    outputs = [None if shape is None else list(shape) for shape in shapes.tops.get(layer.name, [])]
    return LayerInfo(layer.name, layer.type, list(layer.bottom), list(layer.top), weights, params,
                     model.layer_lines.get(layer.name), outputs)
