"""Issue 14, silent wrong or empty results: each of these used to exit 0 with a useless output.
Now: exit 2, no traceback, the file (and layer) named, nothing written, inputs byte-identical;
and the in-place InnerProduct gets a plan with its real input shape (structure and numbers)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from bounded_run import ROOT, assert_refused, snapshot
from cli_run import run_cli
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite.caffe.schema import bundled_schema

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite

LENET = ROOT / "samples" / "lenet" / "lenet.prototxt"
LENET_ONNX = ROOT / "samples" / "onnx" / "lenet.onnx"


def _refused_without_output(tmp_path, argv, named, message):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    before = snapshot(tmp_path)
    run = run_cli(argv)
    assert_refused(run, named, message=message)
    assert snapshot(tmp_path) == before  # inputs as they were, nothing in out/


def test_every_layer_excluded_by_phase_is_an_error(tmp_path):
    model = tmp_path / "train_only.prototxt"
    model.write_text(
        'name: "t"\ninput: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8\n'
        'layer { name: "relu" type: "ReLU" bottom: "data" top: "r" include { phase: TRAIN } }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "r" top: "fc" include { phase: TRAIN } '
        "inner_product_param { num_output: 2 } }\n"
    )
    _refused_without_output(
        tmp_path,
        ["convert", model, "--no-weights", "-o", tmp_path / "out" / "c.prototxt"],
        model,
        "excluded in phase TEST",
    )
    assert run_cli(["inspect", model, "--no-weights", "--phase", "TRAIN"]).code == 0


def test_a_caffemodel_of_another_net_is_an_error(tmp_path):
    renamed = LENET.read_text()
    for old, new in (("conv1", "convA"), ("conv2", "convB"), ("ip1", "ipA"), ("ip2", "ipB")):
        renamed = renamed.replace(f'"{old}"', f'"{new}"')
    model = tmp_path / "other.prototxt"
    model.write_text(renamed)
    weights = tmp_path / "lenet.caffemodel"
    shutil.copy(LENET.with_suffix(".caffemodel"), weights)
    _refused_without_output(
        tmp_path,
        ["convert", model, "--weights", weights, "-o", tmp_path / "out" / "c.prototxt"],
        weights,
        "no layer with weights in the caffemodel matches",
    )


def test_a_negative_input_dim_is_an_error(tmp_path):
    model = tmp_path / "negative.prototxt"
    model.write_text(
        'input: "data" input_dim: 1 input_dim: -3 input_dim: 8 input_dim: 8\n'
        'layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }\n'
    )
    _refused_without_output(
        tmp_path, ["convert", model, "--no-weights", "-o", tmp_path / "out" / "c.prototxt"], model, "negative dimension"
    )


def test_doubles_beyond_float32_are_refused_naming_the_blob(tmp_path):
    model = tmp_path / "fc.prototxt"
    model.write_text(
        'input: "data" input_dim: 1 input_dim: 2 input_dim: 1 input_dim: 1\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
        "inner_product_param { num_output: 2 } }\n"
    )
    net = schema.NetParameter()
    layer = net.layer.add(name="fc", type="InnerProduct")
    weight = layer.blobs.add()
    weight.shape.dim.extend([2, 2])
    weight.double_data.extend([1.0, 1e300, -2.0, 0.5])  # finite doubles; 1e300 is Inf as float32
    bias = layer.blobs.add()
    bias.shape.dim.extend([2])
    bias.double_data.extend([0.0, 0.0])
    weights = tmp_path / "fc.caffemodel"
    weights.write_bytes(net.SerializeToString())
    _refused_without_output(
        tmp_path,
        ["export", model, "--weights", weights, "-o", tmp_path / "out" / "e.onnx"],
        weights,
        "blob 0 of layer 'fc' holds 1 double value beyond float32's range",
    )


def _gemm_model(opset: int, ir_version: int | None = None) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((2, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["x"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    if ir_version is not None:
        model.ir_version = ir_version
    return model


@pytest.mark.parametrize(
    "opset, ir_version, message",
    [
        (1, None, "opset 1, outside the range"),
        (99, None, "opset 99, outside the range"),
        (13, 99, "IR version 99 is outside the range"),
    ],
)
def test_opsets_and_ir_versions_outside_the_readme_range_are_refused(tmp_path, opset, ir_version, message):
    model = tmp_path / "m.onnx"
    model.write_bytes(_gemm_model(opset, ir_version).SerializeToString())
    _refused_without_output(tmp_path, ["convert", model, "-o", tmp_path / "out" / "c.onnx"], model, message)


def test_the_readme_states_the_opset_range():
    from proto_rewrite.onnx.model import MIN_OPSET

    assert f"Opsets {MIN_OPSET} to the newest" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("option", ["--atol", "--rtol", "--scale-tol"])
@pytest.mark.parametrize("value", ["nan", "inf"])
def test_nan_tolerances_are_refused(option, value):
    run = run_cli(["validate", LENET_ONNX, LENET_ONNX, option, value])
    assert_refused(run, option, message="must be a finite number")


def test_an_in_place_inner_product_gets_its_input_shape(tmp_path):
    model = tmp_path / "inplace.prototxt"
    model.write_text(
        'name: "inplace"\ninput: "data" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 4\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "data" '
        "inner_product_param { num_output: 5 } }\n"
    )
    assert run_cli(["init-weights", model, "-o", tmp_path / "inplace.caffemodel"]).code == 0
    plan_run = run_cli(["convert", model, "--dry-run", "--format", "json"])
    assert plan_run.code == 0, plan_run.stderr
    plan = json.loads(plan_run.stdout)["plan"]
    assert plan["input_shapes"] == {"data": [1, 3, 4, 4]}
    assert plan["rewrites"][0]["input_shape"] == [1, 3, 4, 4]
    out = tmp_path / "out"
    out.mkdir()
    run = run_cli(["convert", model, "-o", out / "fcn.prototxt", "--validate"])  # numbers: onnxruntime
    assert run.code == 0 and "PASSED" in run.stderr, run.stderr
    from proto_rewrite.caffe.model import load_caffe

    converted = load_caffe(out / "fcn.prototxt")
    assert [layer.type for layer in converted.net.layer] == ["Input", "Convolution"]
    assert converted.weights["fc"][0].shape == (5, 3, 4, 4)
