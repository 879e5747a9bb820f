"""validate --dense takes the output stride from the converted model's graph, confirmed by onnxruntime
at two sizes, and refuses a crop grid that does not align (never PASSED for misaligned crops)."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite.cli import main
from proto_rewrite.errors import UsageError
from proto_rewrite.rewrite_plan import AxisGeometry
from proto_rewrite.validation.compare_models import ValidateOptions
from proto_rewrite.validation.dense import dense_check

RNG = np.random.RandomState(11)
CONV = (RNG.standard_normal((4, 1, 3, 3)) * 0.5).astype(np.float32)
FC = (RNG.standard_normal((6, 4 * 3 * 3)) * 0.3).astype(np.float32)


def pair():
    """A: 16 x 16 -> conv 3 -> pool 2/2 -> pool 2/2 (3 x 3, the last row and column of the crop unused,
    like AlexNet's 224 against its 223) -> Flatten -> Gemm. B: the Gemm as a 3 x 3 convolution.
    B's geometry: stride 4, min size 14, so 16 + 4k gives k + 1 cells; the old two-size estimate
    (size - crop) / (cells - 1) said stride 5 at 21."""
    trunk = [
        helper.make_node("Conv", ["x", "k"], ["c"]),
        helper.make_node("MaxPool", ["c"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("MaxPool", ["p1"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
    ]
    inits = [numpy_helper.from_array(CONV, "k")]
    a = helper.make_graph(
        trunk + [helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)],
        "a",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        inits + [numpy_helper.from_array(FC, "w")],
    )
    b = helper.make_graph(
        trunk + [helper.make_node("Conv", ["p", "w4"], ["y"])],
        "b",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, "h", "w"])],
        inits + [numpy_helper.from_array(FC.reshape(6, 4, 3, 3), "w4")],
    )
    opset = [helper.make_opsetid("", 13)]
    return helper.make_model(a, opset_imports=opset), helper.make_model(b, opset_imports=opset)


def test_stride_comes_from_the_graph_and_is_confirmed():
    a, b = pair()
    result = dense_check(a, b, (28, 24), ValidateOptions())
    assert result.stride == (4, 4) and result.cells == 4 * 3
    assert result.receptive_field == (3 + 1 + 2 + 2 * 4, 3 + 1 + 2 + 2 * 4)  # 3, 4, 6, then the 3 x 3 FC: 14
    assert result.confirmed_at == [(16, 16), (28, 24)]
    (output,) = result.outputs
    assert output.score_map_shape == (1, 6, 4, 3) and not result.padded
    assert output.comparison.passed and output.comparison.scale_error < 1e-6 and result.passed


def test_misaligned_crops_are_refused_with_the_aligned_sizes():
    a, b = pair()
    with pytest.raises(UsageError, match="21-pixel height does not align") as err:
        dense_check(a, b, (21, 24), ValidateOptions())  # the old estimate: stride 5 here
    crop_grid = AxisGeometry(4, 16, 14)
    assert f"{20} or {', '.join(map(str, crop_grid.aligned_sizes(21)))}" in err.value.hint  # 20 or 24, 28, 32
    with pytest.raises(UsageError, match="width does not align"):
        dense_check(a, b, (24, 18), ValidateOptions())


def test_a_geometry_onnxruntime_does_not_confirm_stops_the_check(monkeypatch):
    from proto_rewrite.onnx import geometry

    a, b = pair()
    wrong = AxisGeometry(stride=2, min_size=16, receptive_field=14)  # what a bad stride estimate would say
    monkeypatch.setattr(geometry, "output_geometry", lambda *args: (wrong, wrong))
    with pytest.raises(UsageError, match="graph predicts 3x3") as err:
        dense_check(a, b, (20, 20), ValidateOptions())
    assert "cannot be trusted" in str(err.value)


def test_unknown_geometry_is_refused_naming_the_node():
    a, b = pair()
    b.graph.node.append(helper.make_node("Resize", ["y", "", "scales"], ["z"], name="upsample"))
    b.graph.initializer.append(numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"))
    b.graph.output[0].name = "z"
    a.graph.node[-1].output[0] = "z"
    a.graph.output[0].name = "z"
    with pytest.raises(UsageError, match="upsample: Resize is not spatial"):
        dense_check(a, b, (24, 24), ValidateOptions())


def test_cli_refuses_misaligned_and_reports_the_confirmation(tmp_path):
    a, b = pair()
    pa, pb = str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx")
    onnx.save(a, pa)
    onnx.save(b, pb)
    out, err = io.StringIO(), io.StringIO()
    assert main(["validate", pa, pb, "--dense", "21", "21"], stdout=out, stderr=err) == 2
    assert "does not align" in err.getvalue() and "PASSED" not in err.getvalue() + out.getvalue()
    assert "Traceback" not in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert main(["validate", pa, pb, "--dense", "24", "24", "--format", "json"], stdout=out, stderr=err) == 0
    report = json.loads(out.getvalue())
    assert report["stride"] == [4, 4] and report["stride_confirmed_at"] == [[16, 16], [24, 24]]
    assert report["cells"] == 9 and report["receptive_field"] == [14, 14]
    out = io.StringIO()
    assert main(["validate", pa, pb, "--dense", "24", "24"], stdout=out, stderr=io.StringIO()) == 0
    assert "confirmed by onnxruntime at 16x16 and 24x24" in out.getvalue()


def alexnet_pair():
    """torchvision-style AlexNet at 224 (conv1 11/4 pad 2, three 3/2 pools, fc6 over 6 x 6), two channels
    wide: stride 32, min size 223. B: fc6 as a 6 x 6 convolution, any size."""
    rng = np.random.RandomState(2)

    def conv(name, out, inp, k):
        return numpy_helper.from_array((rng.standard_normal((out, inp, k, k)) * 0.2).astype(np.float32), name)

    trunk = [
        helper.make_node("Conv", ["x", "c1"], ["a1"], strides=[4, 4], pads=[2] * 4),
        helper.make_node("MaxPool", ["a1"], ["p1"], kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "c2"], ["a2"], pads=[2] * 4),
        helper.make_node("MaxPool", ["a2"], ["p2"], kernel_shape=[3, 3], strides=[2, 2]),
        helper.make_node("Conv", ["p2", "c3"], ["a3"], pads=[1] * 4),
        helper.make_node("MaxPool", ["a3"], ["p3"], kernel_shape=[3, 3], strides=[2, 2]),
    ]
    inits = [conv("c1", 2, 3, 11), conv("c2", 2, 2, 5), conv("c3", 2, 2, 3)]
    fc = (rng.standard_normal((4, 2 * 6 * 6)) * 0.2).astype(np.float32)
    a = helper.make_graph(
        trunk + [helper.make_node("Flatten", ["p3"], ["f"]), helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)],
        "a",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        inits + [numpy_helper.from_array(fc, "w")],
    )
    b = helper.make_graph(
        trunk + [helper.make_node("Conv", ["p3", "w6"], ["y"])],
        "b",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, "h", "w"])],
        inits + [numpy_helper.from_array(fc.reshape(4, 2, 6, 6), "w6")],
    )
    opset = [helper.make_opsetid("", 13)]
    return helper.make_model(a, opset_imports=opset), helper.make_model(b, opset_imports=opset)


def test_alexnet_at_335_is_refused_not_compared_at_stride_37():
    a, b = alexnet_pair()
    with pytest.raises(UsageError, match="335-pixel height does not align") as err:
        dense_check(a, b, (335, 335), ValidateOptions())
    assert "every 32 pixels" in str(err.value) and "320 or 352, 384, 416" in err.value.hint
    result = dense_check(a, b, (288, 256), ValidateOptions())
    assert result.stride == (32, 32) and result.cells == 3 * 2 and result.confirmed_at == [(224, 224), (288, 256)]
    assert result.outputs[0].score_map_shape == (1, 4, 3, 2)
