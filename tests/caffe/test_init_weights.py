"""Random weights: every learnable blob with the shape Caffe expects, deterministic per seed,
scaled so that activations stay in range and a final softmax does not saturate."""

import hashlib

import numpy as np
import pytest
from corpus import corpus_file
from google.protobuf import text_format

from proto_rewrite.caffe import init_weights
from proto_rewrite.caffe.blob_shapes import expected_blobs
from proto_rewrite.caffe.init_weights import logit_layers, random_weights, unknown_blob_layers
from proto_rewrite.caffe.model import load_caffe, save_caffe
from proto_rewrite.caffe.schema import bundled_schema
from proto_rewrite.caffe.shapes import infer_shapes
from proto_rewrite.errors import NetStructureError

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite

SMALL = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 12 dim: 12 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 8 kernel_size: 3 group: 1 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "scale" type: "Scale" bottom: "conv" top: "conv" scale_param { bias_term: true } }
layer { name: "prelu" type: "PReLU" bottom: "conv" top: "conv" }
layer { name: "norm" type: "Normalize" bottom: "conv" top: "norm" norm_param { channel_shared: false } }
layer { name: "shared" type: "Normalize" bottom: "norm" top: "shared" }
layer { name: "up" type: "Deconvolution" bottom: "shared" top: "up" convolution_param { num_output: 4 kernel_size: 4 stride: 2 bias_term: false } }
layer { name: "bias" type: "Bias" bottom: "up" top: "up" }
layer { name: "pool" type: "Pooling" bottom: "up" top: "pool" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 10 transpose: true } }
layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }
"""


def net(text):
    return text_format.Parse(text, schema.NetParameter())


def weights_of(text, seed=0, **inputs):
    parsed = net(text)
    return parsed, random_weights(parsed, infer_shapes(parsed, inputs or None), seed)


def digest(weights) -> str:
    hasher = hashlib.sha256()
    for name in sorted(weights):
        for array in weights[name]:
            hasher.update(name.encode())
            hasher.update(np.ascontiguousarray(array, dtype="<f4").tobytes())
    return hasher.hexdigest()


def test_every_learnable_blob_has_the_expected_shape():
    parsed, weights = weights_of(SMALL)
    shapes = infer_shapes(parsed)
    assert sorted(weights) == ["bias", "bn", "conv", "fc", "norm", "prelu", "scale", "shared", "up"]
    for layer in parsed.layer:
        if layer.name in weights:
            assert [a.shape for a in weights[layer.name]] == expected_blobs(layer, shapes.bottoms[layer.name])
            assert all(a.dtype == np.float32 and np.all(np.isfinite(a)) for a in weights[layer.name])
    assert weights["norm"][0].shape == (8,) and weights["shared"][0].shape == ()  # SSD: a 0-D blob when shared
    assert weights["up"][0].shape == (8, 4, 4, 4)
    assert weights["fc"][0].shape == (4 * 11 * 11, 10)  # transpose: K x N


def test_values_by_layer_type():
    _, weights = weights_of(SMALL)
    mean, var, factor = weights["bn"]
    assert np.all(var > 0) and factor.tolist() == [1.0] and np.abs(mean).max() < 1.0
    gamma, beta = weights["scale"]
    assert gamma.min() >= 0.8 and gamma.max() <= 1.2 and np.abs(beta).max() < 0.05
    assert np.all(weights["prelu"][0] == 0.25)
    assert np.all(weights["norm"][0] == 20.0)
    conv = weights["conv"][0]
    assert abs(conv.std() - np.sqrt(2 / 27)) < 0.1 * np.sqrt(2 / 27)  # He: fan-in 3 x 3 x 3
    assert np.abs(weights["conv"][1]).max() < 0.02


def test_deterministic_per_seed_and_across_numpy_versions(monkeypatch):
    _, first = weights_of(SMALL, seed=5)
    _, again = weights_of(SMALL, seed=5)
    _, other = weights_of(SMALL, seed=6)
    assert digest(first) == digest(again) != digest(other)
    monkeypatch.setattr(init_weights, "_CHUNK", 7)  # drawing in chunks gives the same stream
    assert digest(weights_of(SMALL, seed=5)[1]) == digest(first)
    # Pinned: numpy's legacy RandomState stream is frozen, so these bytes never change (CI runs
    # the suite on the oldest and newest supported numpy).
    assert digest(first) == PINNED_DIGEST


PINNED_DIGEST = "d023e2b12b87ea981df5757720a91a1424da1fca9d711d80af062cd573237aab"


def test_unknown_blob_shape_names_the_layer():
    text = (
        'layer { name: "data" type: "Input" top: "data" }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }\n'
    )
    parsed = net(text)
    with pytest.raises(NetStructureError, match="InnerProduct layer: the shape of its blob 0") as info:
        random_weights(parsed, infer_shapes(parsed), path="x.prototxt", lines={"fc": 2})
    assert info.value.location.layer == "fc" and info.value.location.line == 2
    assert "input_shapes" in info.value.hint
    assert random_weights(parsed, infer_shapes(parsed, {"data": [1, 6]}))["fc"][0].shape == (2, 6)


def test_layers_with_unknown_blobs_get_none():
    text = SMALL + 'layer { name: "py" type: "Python" bottom: "prob" top: "py" }\n'
    parsed, weights = weights_of(text)
    assert "py" not in weights and unknown_blob_layers(parsed) == ["py"]


def test_logit_layers_are_found_through_layers_without_weights():
    ssd = load_caffe(corpus_file("ssd300_vgg16_voc.prototxt"), weights=None).net
    assert logit_layers(ssd) == {layer.name for layer in ssd.layer if layer.name.endswith("_mbox_conf")}
    assert logit_layers(net(SMALL)) == {"fc"}
    resnet = load_caffe(corpus_file("resnet50.prototxt"), weights=None).net
    assert logit_layers(resnet) == {"fc1000"}


@pytest.mark.parametrize(
    "name, softmax",
    [
        ("resnet50.prototxt", "prob"),  # residual sums: without calibrated BatchNorm the logits grow ~2x per block
        ("squeezenet_v1_1.prototxt", "prob"),
        ("bvlc_googlenet.prototxt", "prob"),
        ("ssd300_vgg16_voc.prototxt", "mbox_conf_softmax"),
    ],
)
def test_softmax_does_not_saturate_in_opencv(name, softmax, tmp_path):
    cv2 = pytest.importorskip("cv2")
    model = load_caffe(corpus_file(name), weights=None)
    (source,) = [layer for layer in model.net.layer if layer.type == "Input"]
    shape = [1, *source.input_param.shape[0].dim[1:]]
    model.weights = random_weights(model.net, infer_shapes(model.net, {source.top[0]: shape}), seed=1)
    save_caffe(model, tmp_path / "n.prototxt", tmp_path / "n.caffemodel")
    opencv = cv2.dnn.readNetFromCaffe(str(tmp_path / "n.prototxt"), str(tmp_path / "n.caffemodel"))
    opencv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    opencv.setInput(np.random.RandomState(0).standard_normal(shape).astype(np.float32))
    probabilities = opencv.forward(softmax)
    assert np.all(np.isfinite(probabilities))
    assert probabilities.max() < 0.9, "softmax saturated"  # saturated: 1.0, and ties between boxes
