"""Helpers for the Caffe rewrite tests: random weights, saving, running OpenCV dnn."""

from __future__ import annotations

import numpy as np

from proto_rewrite.caffe.init_weights import random_weights
from proto_rewrite.caffe.model import CaffeModel, load_caffe, save_caffe
from proto_rewrite.caffe.shapes import infer_shapes


def batch_one(model: CaffeModel) -> dict[str, tuple[int, ...]]:
    """Input shapes of the model with the batch size set to 1."""
    shapes = {}
    for layer in model.net.layer:
        if layer.type == "Input":
            declared = [tuple(s.dim) for s in layer.input_param.shape]
            for top, shape in zip(layer.top, declared * len(layer.top) if len(declared) == 1 else declared):
                shapes[top] = (1, *shape[1:])
    return shapes


def with_random_weights(path, seed: int = 0) -> CaffeModel:
    model = load_caffe(path, weights=None)
    shapes = infer_shapes(model.net, batch_one(model))
    model.weights = random_weights(model.net, shapes, seed)
    return model


def save(model: CaffeModel, folder, stem: str):
    prototxt, caffemodel = folder / f"{stem}.prototxt", folder / f"{stem}.caffemodel"
    save_caffe(model, prototxt, caffemodel if model.weights else None)
    return prototxt, caffemodel


def opencv_outputs(prototxt, caffemodel, inputs: dict[str, np.ndarray], layers: list[str]) -> dict[str, np.ndarray]:
    import cv2

    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    for name, value in inputs.items():
        net.setInput(value, name)
    return dict(zip(layers, net.forward(layers)))


def output_blobs(net) -> list[str]:
    """The blobs no layer consumes: the net's outputs."""
    consumed = {b for layer in net.layer for b in layer.bottom}
    return [top for layer in net.layer if layer.type != "Input" for top in layer.top if top not in consumed]


def opencv_blobs(prototxt, caffemodel, net, inputs: dict[str, np.ndarray], blobs: list[str]) -> dict[str, np.ndarray]:
    """OpenCV's values of ``blobs`` (each as its producing layer outputs it, before in-place layers)."""
    layers = [producer_of(net, blob) for blob in blobs]
    values = opencv_outputs(prototxt, caffemodel, inputs, layers)
    return {blob: values[layer] for blob, layer in zip(blobs, layers)}


def assert_close(actual, expected, rtol: float = 1e-5, what: str = ""):
    """Max abs difference within rtol x max |expected| (the output's scale)."""
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    scale = float(np.max(np.abs(expected))) or 1.0
    error = float(np.max(np.abs(actual.astype(np.float64) - expected)))
    assert error <= rtol * scale, f"{what}: max abs error {error:.3g} > {rtol} x {scale:.3g}"


def producer_of(net, blob: str) -> str:
    """The layer that makes ``blob`` (the first one, not an in-place one)."""
    for layer in net.layer:
        if blob in layer.top and blob not in layer.bottom:
            return layer.name
    raise KeyError(blob)
