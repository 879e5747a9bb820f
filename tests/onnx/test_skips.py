"""Every reason an FC is not rewritten: a planned skip with its reason code, the node left as it
was (and the model still computing the same numbers), and an error when the FC was asked for."""

import numpy as np
import onnx
import onnx_zoo as zoo
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_check import assert_close, convert, feeds_for, ops, run

from proto_rewrite.errors import RewriteRefused
from proto_rewrite.fc_math import fc_weight_to_kernel
from proto_rewrite.onnx.model import OnnxModel
from proto_rewrite.onnx.patterns import UNSUPPORTED_DTYPE
from proto_rewrite.onnx.rewrite import plan_onnx_rewrite
from proto_rewrite.rewrite_plan import Reason, Selection

# name: (builder, plan options, FC node, reason)
SKIPS = {
    "trans-a": (zoo.trans_a, {}, "fc", Reason.TRANS_A),
    "weight-is-an-input": (zoo.weight_input, {}, "fc", Reason.WEIGHT_NOT_CONSTANT),
    "shared-weight": (zoo.shared_weight, {}, "fc_a", Reason.SHARED_WEIGHTS),
    "batched-bias": (zoo.batched_bias, {}, "fc", Reason.BATCHED_BIAS),
    "matmul-nd": (zoo.matmul_nd, {}, "fc", Reason.MATMUL_ND),
    "reshape-to-3d": (zoo.reshape_to_3d_matmul, {}, "fc", Reason.MATMUL_ND),
    "qdq": (zoo.quantized, {}, "fc", Reason.QUANTIZED),
    "matmul-integer": (zoo.qgemm_op, {}, "fc_int", Reason.QUANTIZED),
    "wrong-flatten-same-count": (zoo.wrong_flatten, {}, "fc", Reason.UNSUPPORTED_FLATTEN),
    "flatten-axis-2": (zoo.flatten_axis2, {}, "fc", Reason.UNSUPPORTED_AXIS),
    "swapped-hw": (zoo.swapped_hw, {}, "fc", Reason.UNSUPPORTED_LAYOUT),
    "rank-3-input": (zoo.rank3_flatten, {}, "fc", Reason.UNSUPPORTED_INPUT_RANK),
    "symbolic-size": (zoo.symbolic_size, {}, "fc6", Reason.INPUT_SHAPE_UNKNOWN),
    "count-mismatch": (
        zoo.symbolic_size,
        {"input_shapes": {"x": (2, 3, 10, 10)}},
        "fc6",
        Reason.ELEMENT_COUNT_MISMATCH,
    ),
    "not-selected": (
        zoo.flatten_gemm,
        {"selection": Selection(exclude=frozenset({"fc6"}))},
        "fc6",
        Reason.NOT_SELECTED,
    ),
}


@pytest.mark.parametrize("mode", ["fcn", "exact"])
@pytest.mark.parametrize("case", SKIPS)
def test_skip(case, mode):
    builder, options, node, reason = SKIPS[case]
    original = builder(13, np.float32)
    plan, new = convert(original, mode=mode, **options)
    skips = {s.name: s for s in plan.skips}
    assert node in skips, plan.render_text()
    assert skips[node].reason == reason
    assert reason.value in plan.render_text()
    assert node not in {r.name for r in plan.rewrites}
    proto = new.to_proto()
    assert node in {n.name for n in proto.graph.node}
    onnx.checker.check_model(proto, full_check=True)
    if case in ("symbolic-size", "count-mismatch"):
        return  # the rest of the model is rewritten around it; its numbers are checked below
    feeds = feeds_for(original)
    for want, got in zip(run(original, feeds), run(proto, feeds)):
        assert_close(want, got)


@pytest.mark.parametrize("case", [c for c in SKIPS if c != "not-selected"])
def test_explicit_request_is_an_error(case):
    builder, options, node, reason = SKIPS[case]
    model = OnnxModel.from_proto(builder(13, np.float32))
    with pytest.raises(RewriteRefused) as caught:
        plan_onnx_rewrite(
            model, selection=Selection(only=frozenset({node})), **{k: v for k, v in options.items() if k != "selection"}
        )
    assert caught.value.reason == reason.value
    assert caught.value.location.layer == node
    assert caught.value.hint
    assert caught.value.to_dict()["reason"] == reason.value


def test_not_selected_but_named_is_an_error():
    model = OnnxModel.from_proto(zoo.flatten_gemm(13, np.float32))
    selection = Selection(only=frozenset({"fc6"}), exclude=frozenset({"fc6"}))
    with pytest.raises(RewriteRefused) as caught:
        plan_onnx_rewrite(model, selection=selection)
    assert caught.value.reason == "not-selected"


def test_symbolic_size_is_rewritten_with_input_shapes():
    original = zoo.symbolic_size(13, np.float32)
    plan, new = convert(original, mode="exact", input_shapes={"x": (-1, 3, 8, 8)})
    assert not plan.skips and len(plan.rewrites) == 2
    assert plan.input_shapes == {"x": (-1, 3, 8, 8)}
    feeds = feeds_for(original, {"x": (2, 3, 8, 8)})
    assert_close(run(original, feeds)[0], run(new, feeds)[0])


def test_nhwc_with_the_right_count_is_permuted_not_reshaped():
    """Transpose to NHWC + Reshape (N, H*W*C): the weight count fits a plain reshape, which would be
    wrong; the kernel is permuted, and the numbers show it."""
    original = zoo.nhwc(13, np.float32)
    plan, new = convert(original, mode="exact")
    assert plan.rewrites[0].weights[0].transform == "permute" and "Transpose" not in ops(new)
    feeds = feeds_for(original)
    expected = run(original, feeds)[0]
    assert_close(expected, run(new, feeds)[0])
    weight = numpy_helper.to_array(next(t for t in original.graph.initializer if t.name == "fc6_w"))
    naive = fc_weight_to_kernel(weight, 8, 4, 6, 6, transposed=True).weight
    wrong = new.to_proto()
    for tensor in wrong.graph.initializer:
        if tensor.name == "fc6_w":
            tensor.CopyFrom(numpy_helper.from_array(naive, "fc6_w"))
    assert np.abs(run(wrong, feeds)[0] - expected).max() > 1e-2


def test_skipped_fc_after_a_rewritten_one_gets_a_flatten():
    """fc7's weight is shared: fc6 becomes a Conv, fc7 reads fc6's map through a Flatten."""
    net = zoo.Net(13)
    flat = net.node("Flatten", [zoo._features(net)], name="flatten", axis=1)
    h = zoo._gemm(net, flat, 144, 8, "fc6")
    shared = net.weight("shared_w", (8, 8))
    h = net.node("MatMul", [h, shared], name="fc7")
    h = net.node("MatMul", [h, shared], name="fc8")
    original = net.model([("x", zoo.IN_SHAPE)], [h])
    for mode in ("fcn", "exact"):
        plan, new = convert(original, mode=mode)
        assert [r.name for r in plan.rewrites] == ["fc6"]
        assert {s.name: s.reason for s in plan.skips} == {"fc7": Reason.SHARED_WEIGHTS, "fc8": Reason.SHARED_WEIGHTS}
        assert ops(new).count("Flatten") == 1
        feeds = feeds_for(original)
        assert_close(run(original, feeds)[0], run(new, feeds)[0])


def test_shared_bias_kept_when_unchanged_refused_when_changed():
    net = zoo.Net(13)
    flat = net.node("Flatten", [zoo._features(net)], name="flatten", axis=1)
    bias = net.weight("bias", (8,))
    a = net.node("Gemm", [flat, net.weight("wa", (8, 144)), bias], name="fc_a", transB=1)
    b = net.node("Gemm", [flat, net.weight("wb", (8, 144)), bias], name="fc_b", transB=1, beta=2.0)
    original = net.model([("x", zoo.IN_SHAPE)], [a, b])
    plan, new = convert(original, mode="exact")
    assert [r.name for r in plan.rewrites] == ["fc_a"]
    assert plan.skips[0].name == "fc_b" and plan.skips[0].reason == Reason.SHARED_WEIGHTS
    assert "Flatten" in ops(new)  # fc_b still reads it
    feeds = feeds_for(original)
    for want, got in zip(run(original, feeds), run(new, feeds)):
        assert_close(want, got)


def test_overridable_initializer_is_not_a_constant():
    """An initializer that is also a graph input (IR >= 4) may be replaced at run time."""
    original = zoo.flatten_gemm(13, np.float32)
    weight = next(t for t in original.graph.initializer if t.name == "fc6_w")
    original.graph.input.append(helper.make_tensor_value_info("fc6_w", TensorProto.FLOAT, list(weight.dims)))
    plan, _ = convert(original)
    assert {s.name: s.reason for s in plan.skips} == {"fc6": Reason.WEIGHT_NOT_CONSTANT}


def test_matmul_with_a_computed_weight():
    net = zoo.Net(13)
    w = net.node("Relu", ["w"], name="w_relu")
    original = net.model([("x", ["N", 16]), ("w", [16, 4])], [net.node("MatMul", ["x", w], name="fc")])
    plan, _ = convert(original)
    assert plan.skips[0].reason == Reason.WEIGHT_NOT_CONSTANT and "Relu 'w_relu'" in plan.skips[0].detail


def test_constant_node_weight_is_rewritten():
    net = zoo.Net(13)
    flat = net.node("Flatten", [zoo._features(net)], name="flatten", axis=1)
    value = numpy_helper.from_array(net.rng.randn(144, 5).astype(np.float32), "v")
    net.nodes.append(helper.make_node("Constant", [], ["w_const"], name="const_w", value=value))
    h = net.node("MatMul", [flat, "w_const"], name="fc")
    original = net.model([("x", zoo.IN_SHAPE)], [h])
    plan, new = convert(original, mode="exact")
    assert plan.rewrites and "Constant" not in ops(new)
    assert any(e.name == "const_w" and e.action == "remove" for e in plan.edits)
    feeds = feeds_for(original)
    assert_close(run(original, feeds)[0], run(new, feeds)[0])


def test_integer_gemm_is_not_rewritten():
    net = zoo.Net(13)
    w = net.const("w", np.ones((4, 3)), np.int32)
    h = net.node("Gemm", ["x", w], name="fc")
    original = net.model([("x", ["N", 4])], [h], input_elem=TensorProto.INT32, output_elems={h: TensorProto.INT32})
    plan, _ = convert(original)
    assert plan.skips[0].reason == UNSUPPORTED_DTYPE
