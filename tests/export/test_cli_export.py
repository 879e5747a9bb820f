"""``proto-rewrite export`` in-process through main() (registered here if main does not list it yet)."""

from __future__ import annotations

import importlib
import io
import json

import numpy as np
import onnx
import pytest
from caffe_helpers import save
from export_helpers import assert_rel, caffe_net, input_layer, rng_input, session

from proto_rewrite.cli import export_cmd

cli_main = importlib.import_module("proto_rewrite.cli.main")

NET = (
    input_layer(1, 3, 8, 8) + 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
    "convolution_param { num_output: 4 kernel_size: 3 } }\n"
    + 'layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }\n'
    + 'layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 5 } }\n'
    + 'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n'
)


@pytest.fixture
def cli(monkeypatch):
    if export_cmd not in cli_main.COMMANDS:
        monkeypatch.setattr(cli_main, "COMMANDS", (*cli_main.COMMANDS, export_cmd))

    def invoke(*argv):
        out, err = io.StringIO(), io.StringIO()
        code = cli_main.main([str(a) for a in argv], stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    return invoke


@pytest.fixture
def trained(tmp_path):
    """A prototxt and its caffemodel."""
    model = caffe_net(tmp_path, NET, name="src")
    prototxt, caffemodel = save(model, tmp_path, "net")
    return model, prototxt, caffemodel


def test_export_with_weights(cli, trained, tmp_path):
    model, prototxt, caffemodel = trained
    out = tmp_path / "net.onnx"
    code, stdout, stderr = cli("export", prototxt, "--weights", caffemodel, "-o", out)
    assert code == 0, stderr
    assert f"wrote {out}" in stdout and "output prob: 1x5" in stdout
    assert "RANDOM" not in stderr
    proto = onnx.load(str(out))
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


def test_export_options_and_json(cli, trained, tmp_path):
    _, prototxt, _ = trained  # net.caffemodel beside net.prototxt: found by the same-stem rule
    out = tmp_path / "dynamic.onnx"
    code, stdout, stderr = cli("export", prototxt, "-o", out, "--opset", 11, "--dynamic-batch", "--format", "json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert report["opset"] == 11 and report["inputs"] == [{"name": "data", "shape": ["N", 3, 8, 8]}]
    assert report["outputs"] == [{"name": "prob", "shape": ["N", 5]}]
    assert report["weights"].endswith("net.caffemodel") and report["external_data"] is None
    assert onnx.load(str(out)).opset_import[0].version == 11


def test_export_without_weights_says_so_loudly(cli, tmp_path):
    prototxt = tmp_path / "bare.prototxt"
    prototxt.write_text(NET)
    out = tmp_path / "bare.onnx"
    code, stdout, stderr = cli("export", prototxt, "-o", out, "-q")
    assert code == 0, stderr
    assert "RANDOM weights" in stderr and "seed 0" in stderr  # even with -q
    assert "random" in stdout
    props = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert "NOT a trained model" in props["weights"]


def test_export_refuses_a_python_layer_with_its_line(cli, tmp_path):
    prototxt = tmp_path / "py.prototxt"
    prototxt.write_text(
        input_layer(1, 3) + 'layer { name: "mine" type: "Python" bottom: "data" top: "y" '
        'python_param { module: "my_layers" layer: "Mine" } }\n'
    )
    out = tmp_path / "py.onnx"
    code, _, stderr = cli("export", prototxt, "-o", out, "--no-weights")
    assert code == 2
    assert f"{prototxt}:2: layer 'mine'" in stderr and "Python layer" in stderr and "Traceback" not in stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--opset", "5"], "opset 5"),
        (["--dynamic-size"], "InnerProduct"),
        (["--input-shape", "nope:1,2"], "no input named 'nope'"),
    ],
)
def test_export_bad_requests(cli, trained, tmp_path, args, message):
    _, prototxt, _ = trained
    code, _, stderr = cli("export", prototxt, "-o", tmp_path / "x.onnx", *args)
    assert code == 2 and message in stderr, stderr
    assert not (tmp_path / "x.onnx").exists()


def test_export_json_error(cli, tmp_path):
    code, stdout, _ = cli("export", tmp_path / "missing.prototxt", "-o", tmp_path / "x.onnx", "--format", "json")
    assert code == 2 and json.loads(stdout)["error"] == "InputFileError"


def test_export_input_shape(cli, trained, tmp_path):
    _, prototxt, _ = trained
    out = tmp_path / "batch4.onnx"
    code, stdout, stderr = cli("export", prototxt, "-o", out, "--input-shape", "data:4,3,8,8")
    assert code == 0, stderr
    assert "input  data: 4x3x8x8" in stdout
