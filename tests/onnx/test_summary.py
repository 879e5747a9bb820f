"""inspect for ONNX: inputs, one layer per node with its weights and parameter count, totals."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import onnx
import onnx_zoo as zoo

from proto_rewrite.onnx.model import OnnxModel, load_onnx
from proto_rewrite.onnx.summary import summarize_onnx
from proto_rewrite.summary import render_text

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "inspect.schema.json"


def test_summary_of_a_small_net():
    proto = zoo.dynamic_chain(13, np.float32)
    summary = summarize_onnx(OnnxModel.from_proto(proto, path="net.onnx"))
    assert summary.model_format == "onnx" and summary.path == "net.onnx" and summary.weights_path is None
    assert summary.source_format.startswith("ONNX IR 7, opset 13")
    assert [(t.name, t.shape) for t in summary.inputs] == [("x", [None, 3, 8, 8])]
    assert [layer.name for layer in summary.layers] == [n.name for n in proto.graph.node]
    fc6 = next(layer for layer in summary.layers if layer.name == "fc6")
    assert fc6.type == "Gemm" and fc6.inputs == ["flatten_out"] and fc6.outputs == ["fc6_out"]
    assert [(w.shape, w.dtype) for w in fc6.weights] == [([8, 144], "float32"), ([8], "float32")]
    assert fc6.parameters == 8 * 144 + 8
    conv = next(layer for layer in summary.layers if layer.name == "conv")
    assert conv.output_shapes == [[None, 4, 6, 6]]
    floats = sum(int(np.prod(t.dims)) for t in proto.graph.initializer if t.data_type == onnx.TensorProto.FLOAT)
    assert summary.total_parameters == floats  # the int64 shape constants are not parameters
    gather = next(layer for layer in summary.layers if layer.type == "Gather")
    assert gather.parameters == 0 and gather.weights[0].dtype == "int64"
    jsonschema.validate(summary.to_dict(), json.loads(SCHEMA.read_text()))
    assert "fc6" in render_text(summary)


def test_summary_with_input_shapes_and_external_data(tmp_path):
    proto = zoo.symbolic_size(13, np.float16)
    onnx.save(proto, tmp_path / "m.onnx", save_as_external_data=True, location="m.bin", size_threshold=0)
    model = load_onnx(tmp_path / "m.onnx")
    summary = summarize_onnx(model, input_shapes={"x": (1, 3, 8, 8)})
    assert summary.weights_path == str(tmp_path / "m.bin")
    assert summary.inputs[0].shape == [1, 3, 8, 8]
    assert summary.layers[-1].output_shapes == [[1, 5]]
    assert all(w.dtype == "float16" for layer in summary.layers for w in layer.weights)
