"""fcn mode: the rewritten model runs at any input size, its outputs are score maps, each cell the
original model on the matching crop; constants that still bake the old size are reported."""

import numpy as np
import onnx_zoo as zoo
import pytest
from onnx_check import assert_close, convert, feeds_for, run

from proto_rewrite.onnx.model import OnnxModel
from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite


@pytest.mark.parametrize("case", ["flatten", "dynamic-chain", "reshape-1,CHW", "matmul-add"])
def test_score_map_cells_are_the_crops(case):
    builders = {
        "flatten": zoo.flatten_gemm,
        "dynamic-chain": zoo.dynamic_chain,
        "matmul-add": zoo.matmul_add,
        "reshape-1,CHW": lambda o, d: zoo.reshape_gemm(o, d, target=(1, 144), batch=1),
    }
    original = builders[case](13, np.float32)
    _, new = convert(original, mode="fcn")
    batch = 1 if case == "reshape-1,CHW" else 2
    image = np.random.RandomState(5).randn(batch, 3, 11, 12).astype(np.float32)
    scores = run(new, {"x": image})[0]
    assert scores.shape == (batch, 5, 4, 5)  # a 3x3 conv, then a 6x6 kernel: 11-2-5 = 4, 12-2-5 = 5
    for row in range(4):
        for col in range(5):
            crop = np.ascontiguousarray(image[:, :, row : row + 8, col : col + 8])
            assert_close(run(original, {"x": crop})[0], scores[:, :, row, col], f"cell {row},{col}")


def test_inputs_become_symbolic_and_outputs_maps():
    _, new = convert(zoo.flatten_gemm(13, np.float32), mode="fcn")
    proto = new.to_proto()
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "x_height", "x_width"]
    out = proto.graph.output[0].type.tensor_type.shape.dim
    assert len(out) == 4 and out[0].dim_param == "N" and out[1].dim_value == 5
    assert not out[2].HasField("dim_value") and not out[2].dim_param.startswith("unk__")


def test_exact_mode_keeps_the_input_size():
    original = zoo.flatten_gemm(13, np.float32)
    _, new = convert(original, mode="exact")
    assert new.to_proto().graph.input[0] == original.graph.input[0]


def test_baked_reshape_is_reported():
    """A second head whose FC cannot be rewritten keeps its Reshape to (1, 144): reported."""
    net = zoo.Net(13)
    feat = zoo._features(net)
    good = zoo._gemm(net, net.node("Flatten", [feat], name="flatten", axis=1), 144, 5, "fc")
    baked = net.node("Reshape", [feat, net.const("baked_shape", [1, 144])], name="baked")
    bad = net.node("Gemm", [baked, "w"], name="fc_dynamic", transB=1)
    original = net.model([("x", [1, 3, 8, 8]), ("w", [5, 144])], [good, bad])
    model = OnnxModel.from_proto(original)
    plan = plan_onnx_rewrite(model, mode="fcn")
    assert [r.name for r in plan.rewrites] == ["fc"]
    assert not plan.fcn.fully_convolutional
    assert any(b.name == "baked" and "[1, 144]" in b.why for b in plan.fcn.blockers), plan.fcn
    assert not any(e.action == "resize-input" for e in plan.edits)  # the input keeps its size
    new = apply_onnx_plan(model, plan)
    feeds = feeds_for(original)
    for want, got in zip(run(original, feeds), run(new, feeds)):
        assert_close(want, got)


def test_no_warnings_when_nothing_bakes_the_size():
    _, new = convert(zoo.dynamic_chain(13, np.float32), mode="fcn")
    assert new.diagnostics == []
