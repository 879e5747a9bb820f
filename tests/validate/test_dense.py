"""validate --dense: the fcn model's score map against the original on every crop."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite.cli import main
from proto_rewrite.validation.compare_models import ValidateOptions
from proto_rewrite.validation.dense import dense_check

RNG = np.random.RandomState(0)
CONV = RNG.standard_normal((4, 1, 3, 3)).astype(np.float32)
FC = RNG.standard_normal((3, 100)).astype(np.float32)


def pair(pad: int):
    """A: 12x12 image -> conv 3x3 -> maxpool 2 -> flatten -> Gemm; B: the same with the Gemm as a
    5x5 convolution, any input size."""
    size = 12 + 2 * pad - 2  # conv output: 10 (no pad) or 12
    pooled = size // 2
    fc = RNG.standard_normal((3, 4 * pooled * pooled)).astype(np.float32)
    common = [
        helper.make_node("Conv", ["x", "k"], ["c"], pads=[pad] * 4),
        helper.make_node("MaxPool", ["c"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    inits = [numpy_helper.from_array(CONV, "k")]
    a = helper.make_graph(
        common + [helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)],
        "a",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 12, 12])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        inits + [numpy_helper.from_array(fc, "w")],
    )
    b = helper.make_graph(
        common + [helper.make_node("Conv", ["p", "w4"], ["y"])],
        "b",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "h", "w"])],
        inits + [numpy_helper.from_array(fc.reshape(3, 4, pooled, pooled), "w4")],
    )
    opset = [helper.make_opsetid("", 13)]
    return helper.make_model(a, opset_imports=opset), helper.make_model(b, opset_imports=opset)


def test_padding_free_net_is_exact_in_every_cell():
    a, b = pair(pad=0)
    result = dense_check(a, b, (16, 18), ValidateOptions())
    assert result.stride == (2, 2) and result.cells == 3 * 4 and not result.padded
    (output,) = result.outputs
    assert output.score_map_shape == (1, 3, 3, 4)
    assert output.comparison.passed and output.comparison.absolute.max < 1e-5
    assert output.top1_agreement == 1.0 and result.passed


def test_padded_net_reports_statistics_without_failing():
    a, b = pair(pad=1)
    result = dense_check(a, b, (16, 16), ValidateOptions())
    assert result.padded and result.passed
    assert result.outputs[0].comparison.absolute.max > 1e-3  # border cells differ, as they must
    assert "pads its inputs" in result.render_text()


def test_cli_dense(tmp_path):
    a, b = pair(pad=0)
    onnx.save(a, str(tmp_path / "a.onnx"))
    onnx.save(b, str(tmp_path / "b.onnx"))
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["validate", str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx"), "--dense", "16", "16", "--format", "json"],
        stdout=out,
        stderr=err,
    )
    assert code == 0 and err.getvalue().startswith("PASSED: dense check, 9 cells")
    assert json.loads(out.getvalue())["exact_expected"] is True
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["validate", str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx"), "--dense", "17", "16"], stdout=out, stderr=err
    )
    assert code == 2 and "does not align" in err.getvalue() and "16 or 18" in err.getvalue()


def test_pooled_model_is_compared_with_the_mean_of_the_crops():
    """B pools its score map (convert --pool-scores avg): its output is the crops' mean output."""
    a, b = pair(pad=0)
    graph = b.graph
    graph.output[0].name = "y"
    for node in graph.node:
        node.output[:] = ["map" if o == "y" else o for o in node.output]
    graph.node.extend(
        [
            helper.make_node("GlobalAveragePool", ["map"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["y"], axis=1),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]))
    result = dense_check(a, b, (16, 16), ValidateOptions())
    (output,) = result.outputs
    assert output.pooled and result.cells == 9 and result.stride == (2, 2)
    assert output.comparison.absolute.max < 1e-5 and output.top1_agreement == 1.0
    assert "against the mean" in result.render_text()
