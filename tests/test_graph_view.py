"""One graph view for inspect and diff, one rule for counting parameters, one definition of the
small helpers (shapes as text, the format from a file name, the repeated-field shim)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite import graph_view
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.caffe.summary import summarize
from proto_rewrite.caffe.view import caffe_graph
from proto_rewrite.formats import is_onnx_path, model_format
from proto_rewrite.graphdiff.compare import diff_graphs
from proto_rewrite.onnx.model import OnnxModel, load_onnx
from proto_rewrite.onnx.summary import summarize_onnx
from proto_rewrite.onnx.view import onnx_graph
from proto_rewrite.shape_text import shape_text, tuple_text
from proto_rewrite.summary import render_text
from proto_rewrite.wire import is_repeated

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"


def _shared_weights_model() -> OnnxModel:
    """Two Gemms reading one weight and one bias (20 parameters), an int64 shape (not parameters)
    and a Constant (4 parameters)."""
    weight = numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(4, 4), "W")
    bias = numpy_helper.from_array(np.zeros(4, np.float32), "b")
    shape = numpy_helper.from_array(np.array([-1, 4], np.int64), "shape")
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["x2"], name="r"),
        helper.make_node("Gemm", ["x2", "W", "b"], ["y1"], name="g1", transB=1),
        helper.make_node("Gemm", ["y1", "W", "b"], ["y2"], name="g2", transB=1),
        helper.make_node("Constant", [], ["c"], name="k", value=numpy_helper.from_array(np.ones((1, 4), np.float32))),
        helper.make_node("Add", ["y2", "c"], ["y"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "shared",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [weight, bias, shape],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    return OnnxModel.from_proto(proto, path="shared.onnx")


def test_one_parameter_rule_for_a_shared_initializer():
    model = _shared_weights_model()
    graph = onnx_graph(model)
    by_name = {node.name: graph_view.parameters(node) for node in graph.nodes}
    assert by_name == {"r": 0, "g1": 20, "g2": 20, "k": 4, "add": 0}  # each reader has the weights it reads
    assert graph_view.total_parameters(graph) == 24  # the model has them once
    summary = summarize_onnx(model)
    assert {layer.name: layer.parameters for layer in summary.layers} == by_name
    assert summary.total_parameters == 24 == summary.to_dict()["totals"]["parameters"]
    assert "5 layers, 24 parameters" in render_text(summary)
    diff = diff_graphs(graph, onnx_graph(model))
    assert diff.equal and diff.to_dict()["totals"]["parameters"] == {"a": 24, "b": 24}
    assert [node.to_dict()["a"]["parameters"] for node in diff.nodes] == [0, 20, 20, 4, 0]


def _same_view(summary, graph):
    assert [layer.name for layer in summary.layers] == [node.name for node in graph.nodes]
    assert [layer.type for layer in summary.layers] == [node.op for node in graph.nodes]
    assert [layer.parameters for layer in summary.layers] == [graph_view.parameters(n) for n in graph.nodes]
    assert [[w.shape for w in layer.weights] for layer in summary.layers] == [
        [None if w.shape is None else list(w.shape) for w in node.weights] for node in graph.nodes
    ]
    assert summary.total_parameters == graph_view.total_parameters(graph)


@pytest.mark.parametrize("name", ["lenet.onnx", "vgg_mini.onnx"])
def test_inspect_and_diff_read_the_same_onnx_view(name):
    model = load_onnx(SAMPLES / "onnx" / name)
    _same_view(summarize_onnx(model), onnx_graph(model))


@pytest.mark.parametrize("path", ["lenet/lenet.prototxt", "caffenet_mini/caffenet_mini.prototxt"])
def test_inspect_and_diff_read_the_same_caffe_view(path):
    model = load_caffe(str(SAMPLES / path))  # with the caffemodel beside it
    summary, graph = summarize(model), caffe_graph(model)
    _same_view(summary, graph)
    assert [layer.line for layer in summary.layers] == [node.line for node in graph.nodes]
    assert summary.source_format == graph.source_format == model.source_format


def test_inspect_onnx_inputs_at_the_given_size_diff_inputs_as_declared():
    model = _shared_weights_model()
    graph = onnx_graph(model, {"x": (3, 2, 2)})
    assert graph.inputs[0].shape == ("N", 2, 2)
    assert graph.inputs_at_size()[0].shape == (3, 2, 2)
    assert summarize_onnx(model, {"x": (3, 2, 2)}).inputs[0].shape == [3, 2, 2]
    assert summarize_onnx(model).inputs[0].shape == [None, 2, 2]


def test_shape_text():
    assert shape_text((1, 3, 224, 224)) == "1x3x224x224"
    assert shape_text([None, 4]) == "?x4"
    assert shape_text(()) == "scalar" and shape_text((), scalar="") == ""
    assert shape_text(None) == "?"
    assert shape_text(("N", 3, None)) == "(N, 3, ?)"  # 1x3xheight would not read
    assert tuple_text((500, 800)) == "(500, 800)"
    assert tuple_text((None, "", 3)) == "(?, ?, 3)"
    assert tuple_text(None) == "(unknown)" and tuple_text(None, unknown="(any)") == "(any)"


def test_format_from_the_file_name():
    assert is_onnx_path("net.onnx") and is_onnx_path(Path("dir/NET.ONNX")) and is_onnx_path(".onnx")
    assert not is_onnx_path("deploy.prototxt") and not is_onnx_path("net.onnx.prototxt")
    assert model_format("a.onnx") == "onnx" and model_format("a.prototxt") == "caffe"


def test_repeated_field_shim():
    fields = TensorProto.DESCRIPTOR.fields_by_name
    assert is_repeated(fields["dims"]) and is_repeated(fields["float_data"])
    assert not is_repeated(fields["data_type"]) and not is_repeated(fields["name"])
