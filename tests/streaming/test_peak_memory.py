"""A streaming conversion never brings the untouched weights into the process: its peak RSS
(VmHWM, in a fresh process) grows by far less than the weights' size."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite.caffe.caffemodel import write_caffemodel
from proto_rewrite.caffe.prototxt import parse_net_text

ROOT = Path(__file__).resolve().parents[2]
WEIGHT_MB = 64  # the FC weight: 16384 x 1024 float32
pytestmark = pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc (Linux)")

RUNNER = """
import json, sys
MODEL, OUT, PROTOTXT = sys.argv[1:4]
{imports}
def status(key):
    return int([line for line in open("/proc/self/status") if line.startswith(key)][0].split()[1]) / 1024
before = status("VmRSS")
{body}
print(json.dumps({{"before": before, "peak": status("VmHWM"), "streaming": report.streaming}}))
"""


def _growth(imports: str, body: str, *args) -> dict:
    code = RUNNER.format(imports=textwrap.dedent(imports), body=textwrap.dedent(body))
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


NET = """
name: "wide"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 256 dim: 8 dim: 8 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 1024 } }
"""


def test_caffe(tmp_path):
    prototxt = tmp_path / "wide.prototxt"
    prototxt.write_text(NET)
    rng = np.random.default_rng(0)
    weights = {"fc": [rng.standard_normal((1024, 16384), dtype=np.float32), np.zeros(1024, np.float32)]}
    write_caffemodel(tmp_path / "wide.caffemodel", parse_net_text(NET, "wide"), weights)
    del weights
    result = _growth(
        """
        from proto_rewrite.caffe.fc_to_conv import apply_caffe_plan, plan_caffe_rewrite
        from proto_rewrite.caffe.model import load_caffe, save_caffe
    """,
        """
        model = load_caffe(PROTOTXT, MODEL)
        report = save_caffe(apply_caffe_plan(model, plan_caffe_rewrite(model)), OUT + ".prototxt", OUT)
    """,
        tmp_path / "wide.caffemodel",
        tmp_path / "out.caffemodel",
        prototxt,
    )
    assert result["streaming"]
    assert result["peak"] - result["before"] < WEIGHT_MB / 4, result


def test_onnx(tmp_path):
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((1024, 16384), dtype=np.float32), "fc_w")
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1024])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.save(model, tmp_path / "wide.onnx")
    del model, weight, graph
    result = _growth(
        """
        from proto_rewrite.onnx.model import load_onnx, save_onnx
        from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite
    """,
        """
        model = load_onnx(MODEL)
        plan = plan_onnx_rewrite(model, proof_run_limit=0)  # the fcn proof by shape inference: no run
        report = save_onnx(apply_onnx_plan(model, plan), OUT)
        assert plan.fcn.proof == "shape-inference", plan.fcn
    """,
        tmp_path / "wide.onnx",
        tmp_path / "out.onnx",
        "",
    )
    assert result["streaming"]
    assert result["peak"] - result["before"] < WEIGHT_MB / 4, result
