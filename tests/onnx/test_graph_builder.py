"""proto_rewrite.onnx.graph_builder and proto_writer (the Caffe exporter's builder and writer)."""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from proto_rewrite.onnx.graph_builder import (
    DEFERRED_BYTES,
    Graph,
    little_endian,
    little_endian_bytes,
)
from proto_rewrite.onnx.proto_writer import write_export


def test_little_endian_keeps_a_little_endian_array_and_swaps_a_big_endian_one():
    native = np.arange(12, dtype="<f4").reshape(3, 4)
    assert little_endian(native) is native
    big = native.astype(">f4")
    assert little_endian_bytes(big) == native.tobytes()
    assert little_endian(big).dtype.byteorder in ("<", "=") and np.array_equal(little_endian(big), native)


def test_deferred_weights_stream_to_the_same_model_as_materialized(tmp_path):
    weight = np.linspace(-1, 1, 64 * 8, dtype=np.float32).reshape(8, 64)
    assert weight.nbytes >= DEFERRED_BYTES
    model = onnx.ModelProto()
    graph = Graph(17, reserved=["x", "y"], proto=model.graph)
    w = graph.weight(weight.astype(">f4"), "w")  # a big-endian source: written little-endian
    b = graph.floats(np.ones(8), "b")
    graph.claim("y")
    graph.op("Gemm", ["x", w, b], name="fc", out="y", transB=1)
    assert list(graph.deferred) == [w]  # the large weight has no bytes in the proto yet
    assert not next(t for t in model.graph.initializer if t.name == w).raw_data
    model.graph.input.append(helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 64]))
    model.graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8]))
    model.opset_import.append(helper.make_opsetid("", 17))
    model.ir_version = 8
    path = tmp_path / "m.onnx"
    assert write_export(model, graph.deferred, path) == [path]
    written = onnx.load(str(path))
    by_name = {t.name: t for t in written.graph.initializer}
    assert by_name[w].raw_data == weight.astype("<f4").tobytes()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    x = np.random.default_rng(0).standard_normal((2, 64)).astype(np.float32)
    (y,) = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    expected = x @ weight.T + 1
    assert np.max(np.abs(y - expected)) <= 1e-5 * np.max(np.abs(expected))
