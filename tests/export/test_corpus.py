"""Every corpus net exports, passes the ONNX checker (full_check) and shape inference, and
onnxruntime (optimisations off) matches OpenCV dnn on random weights: each output and each
softmax's logits within 1e-4 of the output's scale, with N(0, 1) inputs and with pixel-scale
inputs (0..255)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from caffe_helpers import batch_one, producer_of, save, with_random_weights
from corpus import corpus_file, corpus_names
from export_helpers import canonical_rows, rel_error, rng_input, session_from_file

from proto_rewrite.caffe.onnx_export import build_onnx, export_onnx
from proto_rewrite.caffe.shapes import infer_shapes

cv2 = pytest.importorskip("cv2")

RTOL = 1e-4
# Fully convolutional nets run at a smaller input than declared, to keep the suite fast.
SMALLER_INPUT = {"fcn8s_voc.prototxt": (1, 3, 64, 64)}
HEAVY = {
    "vgg16.prototxt",
    "fcn8s_voc.prototxt",
    "bvlc_alexnet.prototxt",
    "bvlc_reference_caffenet.prototxt",
    "caffenet_v0.prototxt",
    "bvlc_caffenet_full_conv.prototxt",
    "ssd300_vgg16_voc.prototxt",
}


def _assert_onnx_shapes_are_caffes(skeleton, caffe_shapes) -> None:
    """ONNX's own shape inference gives every value of a blob (``BLOB`` or ``BLOB@LAYER``: in-place
    layers keep the shape) Caffe's shape for that blob."""
    inferred = onnx.shape_inference.infer_shapes(skeleton, strict_mode=True)
    checked = set()
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        blob = value.name if value.name in caffe_shapes else value.name.split("@")[0]
        if blob not in caffe_shapes:
            continue
        dims = value.type.tensor_type.shape.dim
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        expected = caffe_shapes[blob]
        assert len(shape) == len(expected), (value.name, shape, expected)
        assert all(a == b for a, b in zip(shape, expected) if a is not None), (value.name, shape, expected)
        checked.add(blob)
    inputs = {value.name for value in skeleton.graph.input}
    assert checked == set(caffe_shapes) - inputs


def _softmax_logits(net) -> list[str]:
    return [layer.bottom[0] for layer in net.layer if layer.type == "Softmax"]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in corpus_names()])
def test_corpus_net_matches_opencv(name, tmp_path, error_table):
    model = with_random_weights(corpus_file(name))
    shapes = batch_one(model)
    if name in SMALLER_INPUT:
        shapes = {key: SMALLER_INPUT[name] for key in shapes}
    exported = build_onnx(model, input_shapes=shapes)
    path = tmp_path / "net.onnx"
    exported.write(path, size_limit=0)  # weights as external data, streamed: quick to write and to load
    onnx.checker.check_model(str(path), full_check=True)  # and strict shape inference
    caffe_shapes = infer_shapes(model.net, shapes).blobs
    _assert_onnx_shapes_are_caffes(onnx.load(str(path), load_external_data=False), caffe_shapes)
    outputs = [value.name for value in exported.proto.graph.output]
    values = {value for node in exported.proto.graph.node for value in node.output}
    logits = _softmax_logits(model.net)
    assert set(logits) <= values, "each softmax's logits are a value named after their blob"
    detection = [layer for layer in model.net.layer if layer.type == "DetectionOutput"]
    detection_inputs = list(detection[0].bottom) if detection else []
    extra = [blob for blob in logits + detection_inputs if blob not in outputs]
    sess = session_from_file(path, {blob: len(caffe_shapes[blob]) for blob in extra})
    prototxt, caffemodel = save(model, tmp_path, "net")
    opencv = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    opencv.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    for scale in ("normal", "pixel"):
        feeds = {key: rng_input(shape, seed=1, scale=scale) for key, shape in shapes.items()}
        got = dict(zip(outputs + extra, sess.run(None, feeds)))
        compared = outputs + extra
        if detection and scale == "pixel":
            # random weights at pixel scale: exp() of the box offsets overflows and the softmax
            # saturates (ties at 1.0): compare what feeds DetectionOutput instead of its rows, and
            # the confidences' logits rather than the saturated probabilities (REFERENCE_NOTES)
            compared = [blob for blob in compared if blob not in outputs and blob != detection_inputs[1]]
        for key, value in feeds.items():
            opencv.setInput(value, key)
        layers = [producer_of(model.net, blob) for blob in compared]
        want = dict(zip(compared, opencv.forward(layers)))
        for blob in compared:
            actual, expected = got[blob], want[blob]
            if detection and blob == detection[0].top[0]:
                actual, expected = canonical_rows(actual), canonical_rows(expected)
                assert len(actual) == len(expected), f"{blob}: {len(actual)} detections, OpenCV {len(expected)}"
            error = rel_error(actual, expected)
            error_table.append((name, scale, blob, error))
            assert error <= RTOL, f"{name} {scale} {blob}: relative error {error:.3g}"


def test_corpus_outputs_are_named_after_the_blobs():
    model = with_random_weights(corpus_file("bvlc_reference_caffenet.prototxt"))
    proto = export_onnx(model, input_shapes=batch_one(model))
    assert [i.name for i in proto.graph.input] == ["data"]
    assert [o.name for o in proto.graph.output] == ["prob"]
    produced = [value for node in proto.graph.node for value in node.output]
    # fc7 is written by fc7 and rewritten in place by relu7 (drop7 computes nothing at inference)
    assert "fc7@fc7" in produced and "fc7" in produced and "fc7@drop7" not in produced
    assert "conv1@conv1" in produced and "conv1" in produced
    assert len(produced) == len(set(produced))
    names = [tensor.name for tensor in proto.graph.initializer]
    assert len(names) == len(set(names))
    sizes = sum(np.prod(t.dims, dtype=np.int64) for t in proto.graph.initializer)
    weights = sum(a.size for arrays in model.weights.values() for a in arrays)
    assert sizes == weights, "every weight stored once, nothing else of size"
