"""Build the format-neutral inspect summary of a loaded Caffe model."""

from __future__ import annotations

import math

from proto_rewrite.caffe.blob_shapes import expected_blobs
from proto_rewrite.caffe.model import CaffeModel
from proto_rewrite.summary import LayerInfo, ModelSummary, TensorInfo, WeightInfo


def summarize(model: CaffeModel) -> ModelSummary:
    inputs = []
    layers = []
    for layer in model.net.layer:
        if layer.type == "Input":
            shapes = list(layer.input_param.shape)
            for index, top in enumerate(layer.top):
                shape = shapes[index] if index < len(shapes) else (shapes[0] if len(shapes) == 1 else None)
                inputs.append(TensorInfo(top, None if shape is None else list(shape.dim)))
        layers.append(_layer_info(model, layer))
    return ModelSummary(
        model_format="caffe",
        path=model.prototxt_path,
        weights_path=model.weights_path,
        source_format=model.source_format,
        upgrades=list(model.upgrades),
        inputs=inputs,
        layers=layers,
        excluded_layers=list(model.excluded_layers),
        diagnostics=list(model.diagnostics),
    )


def _layer_info(model: CaffeModel, layer) -> LayerInfo:
    arrays = model.weights.get(layer.name)
    if arrays is not None:
        weights = [WeightInfo(list(a.shape), str(a.dtype)) for a in arrays]
    else:
        weights = [WeightInfo(None if s is None else list(s), None) for s in (expected_blobs(layer) or [])]
    params = 0
    for weight in weights:
        if weight.shape is None or any(d is None for d in weight.shape):
            params = None
            break
        params += math.prod(weight.shape)
    return LayerInfo(layer.name, layer.type, list(layer.bottom), list(layer.top), weights, params,
                     model.layer_lines.get(layer.name))
