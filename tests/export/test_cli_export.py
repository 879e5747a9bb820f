"""Export: what it writes, through the library call ``proto-rewrite export`` makes
(``pr.export``: load, then ``build_onnx(...).write``, random weights for a net without any), then
the command line's own part: its options, its summary on stdout, its warnings and errors on
stderr, its exit codes. The exporter's API in full: test_export_api.py."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from caffe_helpers import save
from export_helpers import assert_rel, caffe_net, input_layer, rng_input, session

import proto_rewrite as pr
from proto_rewrite.caffe.onnx_export import ExportError, UnsupportedLayerError, build_onnx
from proto_rewrite.cli.main import main
from proto_rewrite.errors import EXIT_BAD_INPUT, ProtoRewriteError

NET = (
    input_layer(1, 3, 8, 8) + 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
    "convolution_param { num_output: 4 kernel_size: 3 } }\n"
    + 'layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }\n'
    + 'layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 5 } }\n'
    + 'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n'
)
PYTHON_NET = input_layer(1, 3) + (
    'layer { name: "mine" type: "Python" bottom: "data" top: "y" python_param { module: "my_layers" layer: "Mine" } }\n'
)
BATCH_4 = {"data": [4, 3, 8, 8]}


def export(model, out, **options) -> list:
    """Write ``model`` (from ``pr.load``) as ``proto-rewrite export`` does; the files written."""
    return pr.export(model, out, **options).written


def dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def shapes(values) -> list[tuple[str, list]]:
    return [(value.name, dims(value)) for value in values]


@pytest.fixture
def cli():
    """``cli(*args) -> (exit code, stdout, stderr)``, in-process through ``main``."""

    def invoke(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = main([str(a) for a in argv], stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    return invoke


@pytest.fixture
def trained(tmp_path):
    """A prototxt and its caffemodel."""
    model = caffe_net(tmp_path, NET, name="src")
    prototxt, caffemodel = save(model, tmp_path, "net")
    return model, prototxt, caffemodel


# -- what an export writes (the library) -------------------------------------------------------------


def test_export_with_weights(trained, tmp_path):
    model, prototxt, caffemodel = trained
    weights = caffemodel.rename(tmp_path / "trained.caffemodel")  # not beside the prototxt: read only when named
    out = tmp_path / "net.onnx"
    loaded = pr.load(prototxt, weights=weights)
    assert str(loaded.weights_path) == str(weights)
    assert export(loaded, out) == [out]
    proto = onnx.load(str(out))
    assert shapes(proto.graph.output) == [("prob", [1, 5])]
    x = rng_input((1, 3, 8, 8))
    got = session(proto).run(None, {"data": x})[0]
    w, b = model.weights["conv"]
    conv = np.maximum(
        np.stack(
            [(x[0, :, i : i + 3, j : j + 3] * w).sum(axis=(1, 2, 3)) + b for i in range(6) for j in range(6)], axis=1
        ),
        0,
    ).reshape(1, -1)
    logits = conv @ model.weights["fc"][0].T + model.weights["fc"][1]
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert_rel(got, expected, 1e-5)


def test_export_opset_and_dynamic_batch(trained, tmp_path):
    _, prototxt, _ = trained
    model = pr.load(prototxt)  # net.caffemodel beside net.prototxt: found by the same-stem rule
    assert str(model.weights_path).endswith("net.caffemodel")
    out = tmp_path / "dynamic.onnx"
    assert export(model, out, opset=11, dynamic_batch=True) == [out]  # no external data
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == 11
    assert shapes(proto.graph.input) == [("data", ["N", 3, 8, 8])]
    assert shapes(proto.graph.output) == [("prob", ["N", 5])]


def test_export_input_shape(trained, tmp_path):
    _, prototxt, _ = trained
    out = tmp_path / "batch4.onnx"
    export(pr.load(prototxt, input_shapes=BATCH_4), out, input_shapes=BATCH_4)
    proto = onnx.load(str(out))
    assert shapes(proto.graph.input) == [("data", [4, 3, 8, 8])]
    assert shapes(proto.graph.output) == [("prob", [4, 5])]


def test_export_refuses_a_python_layer_with_its_line(tmp_path):
    prototxt = tmp_path / "py.prototxt"
    prototxt.write_text(PYTHON_NET)
    out = tmp_path / "py.onnx"
    with pytest.raises(UnsupportedLayerError) as refused:
        export(pr.load(prototxt, weights=None), out)
    assert f"{prototxt}:2: layer 'mine'" in str(refused.value) and "Python layer" in str(refused.value)
    assert not out.exists()


@pytest.mark.parametrize(
    "load_options, options, message",
    [
        ({}, {"opset": 5}, "opset 5"),
        ({}, {"dynamic_size": True}, "InnerProduct"),
        ({"input_shapes": {"nope": [1, 2]}}, {"input_shapes": {"nope": [1, 2]}}, "no input named 'nope'"),
    ],
)
def test_export_bad_requests(trained, tmp_path, load_options, options, message):
    _, prototxt, _ = trained
    with pytest.raises(ProtoRewriteError, match=message) as refused:
        export(pr.load(prototxt, **load_options), tmp_path / "x.onnx", **options)
    assert refused.value.exit_code == EXIT_BAD_INPUT
    assert not (tmp_path / "x.onnx").exists()


def test_a_net_without_weights(tmp_path):
    prototxt = tmp_path / "bare.prototxt"
    prototxt.write_text(NET)
    bare = pr.load(prototxt, weights=None)
    with pytest.raises(ExportError, match="weight blobs"):
        build_onnx(bare)  # the exporter itself needs weights
    result = pr.export(bare, tmp_path / "bare.onnx", seed=5)  # the call fills in random ones, and says so
    assert result.random_weights == "random (init-weights, seed 5): NOT a trained model"
    stored = {p.key: p.value for p in onnx.load(str(tmp_path / "bare.onnx")).metadata_props}
    assert stored["weights"] == result.random_weights and bare.weights == {}


# -- the command line --------------------------------------------------------------------------------


def test_cli_writes_what_the_library_builds(cli, trained, tmp_path):
    _, prototxt, caffemodel = trained
    weights = caffemodel.rename(tmp_path / "trained.caffemodel")  # not beside the prototxt: read only when named
    out = tmp_path / "net.onnx"
    code, stdout, stderr = cli("export", prototxt, "--weights", weights, "-o", out)
    assert code == 0, stderr
    assert f"wrote {out}" in stdout and "output prob: 1x5" in stdout
    assert "RANDOM" not in stderr
    library = tmp_path / "library.onnx"
    export(pr.load(prototxt, weights=weights), library)
    assert out.read_bytes() == library.read_bytes()


def test_cli_options_and_json_summary(cli, trained, tmp_path):
    _, prototxt, _ = trained  # net.caffemodel beside net.prototxt: found by the same-stem rule
    out = tmp_path / "dynamic.onnx"
    code, stdout, stderr = cli("export", prototxt, "-o", out, "--opset", 11, "--dynamic-batch", "--format", "json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["opset"] == 11 and report["inputs"] == [{"name": "data", "shape": ["N", 3, 8, 8]}]
    assert report["outputs"] == [{"name": "prob", "shape": ["N", 5]}]
    assert report["weights"].endswith("net.caffemodel") and report["external_data"] is None
    assert onnx.load(str(out)).opset_import[0].version == 11
    library = tmp_path / "library.onnx"
    export(pr.load(prototxt), library, opset=11, dynamic_batch=True)
    assert out.read_bytes() == library.read_bytes()
    proto = onnx.load(str(library))
    assert report["output"] == str(out) and report["ir_version"] == proto.ir_version
    assert report["nodes"] == len(proto.graph.node) and report["initializers"] == len(proto.graph.initializer)
    assert report["parameters"] == sum(int(np.prod(tensor.dims)) for tensor in proto.graph.initializer) > 0


def test_cli_input_shape(cli, trained, tmp_path):
    _, prototxt, _ = trained
    out = tmp_path / "batch4.onnx"
    code, stdout, stderr = cli("export", prototxt, "-o", out, "--input-shape", "data:4,3,8,8")
    assert code == 0, stderr
    assert "input  data: 4x3x8x8" in stdout
    library = tmp_path / "library.onnx"
    export(pr.load(prototxt, input_shapes=BATCH_4), library, input_shapes=BATCH_4)
    assert out.read_bytes() == library.read_bytes()


def test_cli_without_weights_says_so_loudly(cli, tmp_path):
    prototxt = tmp_path / "bare.prototxt"
    prototxt.write_text(NET)
    out = tmp_path / "bare.onnx"
    code, stdout, stderr = cli("export", prototxt, "-o", out, "-q")
    assert code == 0, stderr
    assert "RANDOM weights" in stderr and "seed 0" in stderr  # even with -q
    assert "random" in stdout
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert "NOT a trained model" in props["weights"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--opset", "5"], "opset 5"),
        (["--dynamic-size"], "InnerProduct"),
        (["--input-shape", "nope:1,2"], "no input named 'nope'"),
    ],
)
def test_cli_bad_requests(cli, trained, tmp_path, args, message):
    _, prototxt, _ = trained
    code, stdout, stderr = cli("export", prototxt, "-o", tmp_path / "x.onnx", *args)
    assert code == 2 and message in stderr, stderr
    assert stdout == "" and "Traceback" not in stderr
    assert not (tmp_path / "x.onnx").exists()


def test_cli_json_error(cli, tmp_path):
    code, stdout, _ = cli("export", tmp_path / "missing.prototxt", "-o", tmp_path / "x.onnx", "--format", "json")
    assert code == 2 and json.loads(stdout)["error"] == "InputFileError"
