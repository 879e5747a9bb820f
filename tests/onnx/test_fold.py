"""Constant subgraphs that compute an FC's weight or bias are folded into one initializer: the FC
is rewritten (not skipped as weight-not-constant), the folding nodes and the initializers only they
read are removed, untouched initializers stay byte-identical, and the numbers hold. A subgraph
whose weight data something else also reads is not folded (shared-weights)."""

import numpy as np
import onnx
import onnx_zoo as zoo
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_check import assert_close, convert, feeds_for, initializer_shapes, ops, run

from proto_rewrite.onnx.fold import fold_constant
from proto_rewrite.onnx.graph import GraphView
from proto_rewrite.onnx.model import OnnxModel
from proto_rewrite.rewrite_plan import Reason

MODES = ["exact", "fcn"]


def _head(net: zoo.Net):
    return net.node("Flatten", [net.conv("x", 3, 4)], name="flat", axis=1)


def inception_v1(opset=13):
    """The model-zoo Inception v1 idiom: the FC weight is an initializer reshaped by a node."""
    net = zoo.Net(opset)
    flat = _head(net)
    weight = net.node(
        "Reshape", [net.weight("fc_w_0", (5, 4, 6, 6)), net.const("fc_w_shape", [5, 144])], name="fc_w_reshape"
    )
    out = net.node("Gemm", [flat, weight, net.weight("fc_b", (5,), 0.1)], name="fc", transB=1)
    return net.model([("x", zoo.IN_SHAPE)], [out]), {"fc_w_reshape"}


def constant_node_target(opset=13):
    """As Inception v1, the target shape a Constant node and the weight squeezed from 3-D."""
    net = zoo.Net(opset)
    flat = _head(net)
    target = net.node(
        "Constant", [], name="fc_w_target", value=helper.make_tensor("t", TensorProto.INT64, [3], [5, 144, 1])
    )
    weight = net.node("Reshape", [net.weight("fc_w_0", (5, 4, 36)), target], name="fc_w_reshape")
    weight = (
        net.node("Squeeze", [weight, net.const("sq_axes", [2])], name="fc_w_squeeze")
        if opset >= 13
        else net.node("Squeeze", [weight], name="fc_w_squeeze", axes=[2])
    )
    out = net.node("Gemm", [flat, weight, net.weight("fc_b", (5,), 0.1)], name="fc", transB=1)
    return net.model([("x", zoo.IN_SHAPE)], [out]), {"fc_w_target", "fc_w_reshape", "fc_w_squeeze"}


def transposed(opset=13):
    """MatMul + Add with the weight transposed and scaled, the bias a float16 constant cast up and
    unsqueezed, the scale a Constant node."""
    net = zoo.Net(opset)
    flat = _head(net)
    weight = net.node("Transpose", [net.weight("fc_w_0", (5, 144))], name="fc_w_t", perm=[1, 0])
    scale = net.node("Constant", [], name="fc_scale", value=numpy_helper.from_array(np.float32(0.5), "s"))
    weight = net.node("Mul", [weight, scale], name="fc_w_scale")
    bias = net.node(
        "Cast", [net.const("fc_b16", np.linspace(-1, 1, 5), np.float16)], name="fc_b_cast", to=TensorProto.FLOAT
    )
    bias = net.unsqueeze(bias, [0], name="fc_b_unsqueeze")
    out = net.node("Add", [net.node("MatMul", [flat, weight], name="fc"), bias], name="fc_add")
    nodes = {"fc_w_t", "fc_scale", "fc_w_scale", "fc_b_cast", "fc_b_unsqueeze"}
    return net.model([("x", zoo.IN_SHAPE)], [out]), nodes


def shared_leaf(opset=13):
    """The reshaped initializer is also read directly by another node: not folded."""
    net = zoo.Net(opset)
    flat = _head(net)
    weight = net.node(
        "Reshape", [net.weight("fc_w_0", (5, 4, 6, 6)), net.const("fc_w_shape", [5, 144])], name="fc_w_reshape"
    )
    out = net.node("Gemm", [flat, weight, net.weight("fc_b", (5,), 0.1)], name="fc", transB=1)
    norm = net.node("ReduceSum", [net.node("Abs", ["fc_w_0"], name="w_abs")], name="w_norm", keepdims=0)
    return net.model([("x", zoo.IN_SHAPE)], [out, norm]), {"fc_w_reshape"}


def shared_step(opset=13):
    """An intermediate value of the subgraph is also a graph output: not folded."""
    net = zoo.Net(opset)
    flat = _head(net)
    weight = net.node("Transpose", [net.weight("fc_w_0", (144, 5))], name="fc_w_t", perm=[1, 0])
    scaled = net.node("Div", [weight, net.weight("fc_div", (1, 1), 1.0)], name="fc_w_div")
    out = net.node("Gemm", [flat, scaled, net.weight("fc_b", (5,), 0.1)], name="fc", transB=1)
    return net.model([("x", zoo.IN_SHAPE)], [out, weight]), {"fc_w_div"}


def shared_scalar(opset=13):
    """The weight's scale, a scalar, is also read elsewhere: folded, and the scalar stays."""
    net = zoo.Net(opset)
    flat = _head(net)
    weight = net.node("Transpose", [net.weight("fc_w_0", (144, 5))], name="fc_w_t", perm=[1, 0])
    weight = net.node("Mul", [weight, net.weight("scale", (), 1.0)], name="fc_w_scale")
    out = net.node("Gemm", [flat, weight, net.weight("fc_b", (5,), 0.1)], name="fc", transB=1)
    out = net.node("Mul", [out, "scale"], name="out_scale")
    return net.model([("x", zoo.IN_SHAPE)], [out]), {"fc_w_t", "fc_w_scale"}


def half_weight(opset=13):
    """A float16 weight cast to float32 before the FC (weights stored at half size)."""
    net = zoo.Net(opset)
    flat = _head(net)
    weight = net.node(
        "Cast", [net.const("fc_w16", net.rng.randn(5, 144) / 12, np.float16)], name="fc_w_cast", to=TensorProto.FLOAT
    )
    out = net.node("Gemm", [flat, weight, net.weight("fc_b", (5,), 0.1)], name="fc", transB=1)
    return net.model([("x", zoo.IN_SHAPE)], [out]), {"fc_w_cast"}


CASES = {
    "inception-v1-reshape": inception_v1,
    "constant-target-squeeze": constant_node_target,
    "transpose-mul-cast-bias": transposed,
    "shared-scalar": shared_scalar,
    "float16-cast": half_weight,
}


def _bytes(proto) -> dict[str, bytes]:
    return {t.name: t.SerializeToString() for t in proto.graph.initializer}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("case", CASES)
def test_folded_operand(case, opset, mode):
    original, folding = CASES[case](opset)
    plan, new = convert(original, mode=mode)
    proto = new.to_proto()
    onnx.checker.check_model(proto, full_check=True)

    assert not plan.skips, [s.message for s in plan.skips]
    assert [r.name for r in plan.rewrites] == ["fc"]
    removed = {e.name for e in plan.edits if e.action == "remove"}
    assert folding <= removed, (folding, removed)
    names = {n.name for n in proto.graph.node}
    assert not folding & names, names
    assert "Gemm" not in ops(proto) and "MatMul" not in ops(proto)
    weight = plan.rewrites[0].weights[0].name
    assert initializer_shapes(proto)[weight] == (5, 4, 6, 6)

    before, after = _bytes(original), _bytes(proto)
    changed = {w.name for w in plan.rewrites[0].weights}
    for name, data in after.items():
        if name in before and name not in changed:
            assert data == before[name], f"{name} changed"
    readers = {i for n in proto.graph.node for i in n.input}
    for name in before:
        if name not in after:
            assert name in removed, f"{name} vanished without a plan entry"
        else:
            assert name in readers or name in changed or name in {o.name for o in proto.graph.output}

    feeds = feeds_for(original)
    for index, (want, got) in enumerate(zip(run(original, feeds), run(proto, feeds))):
        assert_close(want, got, f"output {index}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "builder, shared",
    [
        (shared_leaf, "'fc_w_0' is also read by Abs 'w_abs'"),
        (shared_step, "'fc_w_t_out' is also read by a graph output"),
    ],
)
def test_shared_weight_data_is_not_folded(builder, shared, mode):
    """Folding would keep the shared tensor and store a second copy: a shared-weights skip, the
    model left as it was."""
    original, _ = builder()
    plan, new = convert(original, mode=mode)
    assert [(s.name, s.reason) for s in plan.skips] == [("fc", Reason.SHARED_WEIGHTS)]
    assert shared in plan.skips[0].detail
    assert not plan.rewrites
    proto = new.to_proto()
    assert _bytes(proto) == _bytes(original)
    assert [n.name for n in proto.graph.node] == [n.name for n in original.graph.node]
    feeds = feeds_for(original)
    for want, got in zip(run(original, feeds), run(proto, feeds)):
        assert_close(want, got)


def test_shared_scalar_stays():
    original, _ = shared_scalar()
    _, new = convert(original, mode="fcn")
    proto = new.to_proto()
    assert _bytes(proto)["scale"] == _bytes(original)["scale"]
    assert "out_scale" in {n.name for n in proto.graph.node}


def test_reshape_only_chain_keeps_the_bytes():
    """A chain that only reshapes hands the Conv the leaf's bytes as they are."""
    original, _ = inception_v1()
    plan, new = convert(original, mode="fcn")
    leaf = numpy_helper.to_array(next(t for t in original.graph.initializer if t.name == "fc_w_0"))
    kernel = numpy_helper.to_array(
        next(t for t in new.to_proto().graph.initializer if t.name == plan.rewrites[0].weights[0].name)
    )
    assert kernel.tobytes() == leaf.tobytes()


def test_fold_constant_is_lazy_and_exact():
    original, _ = transposed()
    view = GraphView(OnnxModel.from_proto(original))
    folded = fold_constant(view, "fc_w_scale_out")
    assert folded is not None and folded.tensor.dims == (144, 5)
    assert {view.key(i) for i in folded.nodes} == {"fc_w_t", "fc_scale", "fc_w_scale"}
    assert folded.leaves == ("fc_scale_out", "fc_w_0")
    leaf = numpy_helper.to_array(next(t for t in original.graph.initializer if t.name == "fc_w_0"))
    np.testing.assert_array_equal(folded.tensor.array(), leaf.T * np.float32(0.5))
    assert fold_constant(view, "flat_out") is None  # computed from the input


def _weight_from(op: str):
    net = zoo.Net(13)
    flat = _head(net)
    if op == "input":
        weight = net.node("Transpose", ["w_in"], name="fc_w_t", perm=[1, 0])
    else:
        weight = net.node(op, [net.weight("fc_w_0", (5, 144))], name="fc_w_op")
    out = net.node("Gemm", [flat, weight, net.weight("fc_b", (5,), 0.1)], name="fc", transB=1)
    inputs = [("x", zoo.IN_SHAPE)] + ([("w_in", [144, 5])] if op == "input" else [])
    return net.model(inputs, [out])


@pytest.mark.parametrize(
    "op, why", [("input", "Transpose 'fc_w_t', from graph input 'w_in'"), ("Relu", "Relu 'fc_w_op'")]
)
def test_not_foldable_is_still_a_skip(op, why):
    """A weight computed from a graph input, or by an op the folder does not know: still a skip,
    naming where folding stopped."""
    original = _weight_from(op)
    plan, new = convert(original, mode="exact")
    assert [s.reason for s in plan.skips] == [Reason.WEIGHT_NOT_CONSTANT]
    assert plan.skips[0].detail.endswith(f"is computed by {why}")
    assert not plan.rewrites
    assert _bytes(new.to_proto()) == _bytes(original)


@pytest.mark.parametrize("case", ["inception-v1-reshape", "transpose-mul-cast-bias"])
def test_folded_from_external_data(case, tmp_path):
    """Leaves in an external data file: the folded tensor is written from them, and runs."""
    from onnx_check import run_path

    from proto_rewrite.onnx.model import load_onnx, save_onnx

    original, folding = CASES[case]()
    folder = tmp_path / "src"
    folder.mkdir()
    copy = onnx.ModelProto()
    copy.CopyFrom(original)
    onnx.save(
        copy,
        folder / "m.onnx",
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="m.onnx.weights",
        size_threshold=0,
    )
    plan, new = convert(load_onnx(folder / "m.onnx"), mode="fcn")
    assert not plan.skips and [r.name for r in plan.rewrites] == ["fc"]
    out = tmp_path / "out" / "converted.onnx"
    out.parent.mkdir()
    save_onnx(new, out)
    onnx.checker.check_model(str(out), full_check=True)
    assert not folding & {n.name for n in onnx.load(out, load_external_data=False).graph.node}
    feeds = feeds_for(original)
    for want, got in zip(run(original, feeds), run_path(out, feeds)):
        assert_close(want, got)


def test_outer_product_broadcast_is_not_folded():
    """(5, 1) * (1, 144) would make a tensor larger than any stored one: not folded, a skip."""
    net = zoo.Net(13)
    flat = _head(net)
    weight = net.node("Mul", [net.weight("fc_rows", (5, 1)), net.weight("fc_cols", (1, 144))], name="fc_w_outer")
    out = net.node("Gemm", [flat, weight, net.weight("fc_b", (5,), 0.1)], name="fc", transB=1)
    plan, _ = convert(net.model([("x", zoo.IN_SHAPE)], [out]), mode="exact")
    assert [s.reason for s in plan.skips] == [Reason.WEIGHT_NOT_CONSTANT]


# -- fold_constant against onnxruntime -------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

STEPS = st.lists(
    st.sampled_from(
        ["transpose", "reshape", "unsqueeze", "squeeze", "flatten", "cast", "mul", "div", "add", "sub", "identity"]
    ),
    min_size=1,
    max_size=5,
)


@settings(max_examples=30, deadline=None)
@given(steps=STEPS, opset=st.sampled_from([11, 13]), seed=st.integers(0, 2**16))
def test_fold_matches_onnxruntime(steps, opset, seed):
    """A random chain of the folded ops on a float32 initializer: the folded tensor is exactly what
    onnxruntime computes, shape and bits."""
    rng = np.random.RandomState(seed)
    net = zoo.Net(opset, seed=seed)
    x, shape = net.weight("leaf", (2, 3, 4)), [2, 3, 4]
    for i, step in enumerate(steps):
        if step == "transpose":
            perm = [int(p) for p in rng.permutation(len(shape))]
            x, shape = net.node("Transpose", [x], name=f"s{i}", perm=perm), [shape[p] for p in perm]
        elif step == "reshape":
            x, shape = (
                net.node("Reshape", [x, net.const(f"t{i}", [0, -1])], name=f"s{i}"),
                [shape[0], int(np.prod(shape[1:]))],
            )
        elif step == "unsqueeze":
            x, shape = net.unsqueeze(x, [0], name=f"s{i}"), [1] + shape
        elif step == "squeeze" and 1 in shape:
            axis = shape.index(1)
            x = (
                net.node("Squeeze", [x, net.const(f"a{i}", [axis])], name=f"s{i}")
                if opset >= 13
                else net.node("Squeeze", [x], name=f"s{i}", axes=[axis])
            )
            shape = shape[:axis] + shape[axis + 1 :]
        elif step == "flatten":
            x, shape = net.node("Flatten", [x], name=f"s{i}", axis=1), [shape[0], int(np.prod(shape[1:]))]
        elif step == "cast":
            x = net.node(
                "Cast", [net.node("Cast", [x], name=f"d{i}", to=TensorProto.DOUBLE)], name=f"s{i}", to=TensorProto.FLOAT
            )
        elif step in ("mul", "div", "add", "sub"):
            other = net.weight(f"c{i}", (shape[-1],) if rng.rand() < 0.5 else ())
            x = net.node(step.capitalize(), [x, other] if rng.rand() < 0.5 else [other, x], name=f"s{i}")
        else:
            x = net.node("Identity", [x], name=f"s{i}")
    if x == "leaf":
        return
    model = net.model([], [x])
    view = GraphView(OnnxModel.from_proto(model))
    folded = fold_constant(view, x)
    assert folded is not None
    expected = run(model, {})[0]
    got = folded.tensor.array()
    assert got.shape == expected.shape and got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("case", ["inception-v1-reshape", "transpose-mul-cast-bias"])
def test_plan_through_json_and_deterministic(case, tmp_path):
    """A plan with folded operands survives JSON; the output is the same bytes every time."""
    import json

    from proto_rewrite.onnx.model import save_onnx
    from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite
    from proto_rewrite.rewrite_plan import RewritePlan

    model = OnnxModel.from_proto(CASES[case]()[0])
    plan = plan_onnx_rewrite(model, mode="fcn")
    again = RewritePlan.from_dict(json.loads(plan.to_json()))
    outputs = []
    for index, which in enumerate((plan, again, plan)):
        path = tmp_path / f"{index}.onnx"
        save_onnx(apply_onnx_plan(model, which), path)
        outputs.append(path.read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
