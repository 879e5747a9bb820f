"""OpenCV dnn (an independent Caffe runtime) gives the same outputs on the files we save as on
the original files, including an old V1 prototxt with a legacy-shaped caffemodel."""

import numpy as np
import pytest
from corpus import SAMPLES, sample_script
from google.protobuf import text_format

from proto_rewrite.caffe.model import load_caffe, save_caffe
from proto_rewrite.caffe.schema import bundled_schema

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite

cv2 = pytest.importorskip("cv2")

LENET_V1 = """
name: "LeNet"
input: "data"
input_dim: 2 input_dim: 1 input_dim: 28 input_dim: 28
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" blobs_lr: 1 blobs_lr: 2
         convolution_param { num_output: 20 kernel_size: 5 stride: 1 } }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "conv2" type: CONVOLUTION bottom: "pool1" top: "conv2" convolution_param { num_output: 50 kernel_size: 5 } }
layers { name: "pool2" type: POOLING bottom: "conv2" top: "pool2" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "ip1" type: INNER_PRODUCT bottom: "pool2" top: "ip1" inner_product_param { num_output: 500 } }
layers { name: "relu1" type: RELU bottom: "ip1" top: "ip1" }
layers { name: "ip2" type: INNER_PRODUCT bottom: "ip1" top: "ip2" inner_product_param { num_output: 10 } }
layers { name: "prob" type: SOFTMAX bottom: "ip2" top: "prob" }
"""


def protobuf_caffemodel(net_text: str, weights: dict, legacy: bool) -> bytes:
    """The caffemodel protobuf itself writes: blobs inside the layers; legacy 4-D dims if asked."""
    net = text_format.Parse(net_text, schema.NetParameter())
    for layer in list(net.layer) + list(net.layers):
        for array in weights.get(layer.name, []):
            blob = layer.blobs.add()
            blob.data.extend(array.ravel().tolist())
            if legacy:
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - array.ndim) + array.shape
            else:
                blob.shape.dim.extend(array.shape)
    return net.SerializeToString()


def opencv_forward(prototxt, caffemodel, x):
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setInput(x)
    return net.forward()


CASES = {
    "lenet (V2, shape)": ("lenet", None, False, (4, 1, 28, 28)),
    "caffenet_mini (V2, shape)": ("caffenet_mini", None, False, (1, 3, 115, 115)),
    "lenet (V1 prototxt, legacy blobs)": ("lenet", LENET_V1, True, (2, 1, 28, 28)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_opencv_outputs_equal_on_saved_files(case, tmp_path):
    sample, text, legacy, input_shape = CASES[case]
    seed, shapes = sample_script().SAMPLES[sample]
    weights = sample_script().random_weights(seed, shapes)
    text = text or (SAMPLES / sample / f"{sample}.prototxt").read_text()
    original = tmp_path / "original.prototxt"
    original.write_text(text)
    original_weights = tmp_path / "original.caffemodel"
    original_weights.write_bytes(protobuf_caffemodel(text, weights, legacy))

    model = load_caffe(original, original_weights)
    for name, arrays in weights.items():  # legacy 4-D shapes resolved to the real ones
        assert [a.shape for a in model.weights[name]] == [a.shape for a in arrays]
        for got, want in zip(model.weights[name], arrays):
            np.testing.assert_array_equal(got, want)
    saved, saved_weights = tmp_path / "saved.prototxt", tmp_path / "saved.caffemodel"
    save_caffe(model, saved, saved_weights)

    x = np.random.RandomState(7).standard_normal(input_shape).astype(np.float32)
    expected = opencv_forward(original, original_weights, x)
    actual = opencv_forward(saved, saved_weights, x)
    assert expected.shape == actual.shape == (input_shape[0], 10)
    np.testing.assert_array_equal(actual, expected)
    assert 0.0 < float(expected.max()) < 1.0  # softmax outputs, not saturated: a real comparison


def test_bundled_samples_run_in_opencv():
    for sample, shape in (("lenet", (64, 1, 28, 28)), ("caffenet_mini", (1, 3, 115, 115))):
        folder = SAMPLES / sample
        x = np.random.RandomState(0).standard_normal(shape).astype(np.float32)
        out = opencv_forward(folder / f"{sample}.prototxt", folder / f"{sample}.caffemodel", x)
        assert out.shape == (shape[0], 10) and np.all(np.isfinite(out))
