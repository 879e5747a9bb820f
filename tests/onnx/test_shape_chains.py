"""The Reshape targets the exporters compute (PyTorch legacy and un-optimised dynamo shape chains)
are recognised as (N, -1) flattens, and an FC after a global pool (ReduceMean / ReduceSum with either
keepdims, axes as attribute or input, computed or not; AveragePool over the whole map) is rewritten:
plan, structure and numbers, in both modes, untouched initializers byte-identical."""

import numpy as np
import onnx
import onnx_zoo as zoo
import pytest
from onnx import TensorProto, helper
from onnx_check import assert_close, convert, feeds_for, initializer_shapes, ops, run

from proto_rewrite.onnx.graph import GraphView
from proto_rewrite.onnx.model import OnnxModel
from proto_rewrite.onnx.patterns import global_pool_of
from proto_rewrite.onnx.shape_expr import Dim, evaluate

MODES = ["exact", "fcn"]


def _gemm(net: zoo.Net, x: str, k: int, m: int = 5) -> str:
    return net.node("Gemm", [x, net.weight("fc_w", (m, k)), net.weight("fc_b", (m,), 0.1)], name="fc", transB=1)


def _squeeze(net: zoo.Net, x: str, axes, name: str) -> str:
    if net.opset >= 13:
        return net.node("Squeeze", [x, net.const(f"{name}_axes", axes)], name=name)
    return net.node("Squeeze", [x], name=name, axes=axes)


# -- Reshape target chains -----------------------------------------------------------------------


def dynamo(opset=18, pick="squeeze"):
    """torch.flatten(x, 1) through the un-optimised dynamo exporter: the batch read from the graph
    input by Shape(start 0, end 1), made a scalar (Squeeze or Gather), back to [1] by Reshape."""
    net = zoo.Net(opset)
    feat = net.conv("x", 3, 4)
    if pick == "squeeze":
        size = _squeeze(net, net.node("Shape", ["x"], name="sym_shape", start=0, end=1), [0], "sym_size")
    else:
        size = net.node(
            "Gather", [net.node("Shape", ["x"], name="sym_shape"), net.const("idx0", 0)], name="sym_size", axis=0
        )
    size = net.node("Reshape", [size, net.const("minus_one", [-1])], name="sym_reshape")
    target = net.node("Concat", [size, net.const("rest", [-1])], name="view_target", axis=0)
    flat = net.node("Reshape", [feat, target], name="view")
    chain = {"sym_shape", "sym_size", "sym_reshape", "view_target", "view"}
    return net.model([("x", zoo.IN_SHAPE)], [_gemm(net, flat, 144)]), chain


def dynamo_reduce_prod(opset=18):
    """The flattened size computed: Shape(start 1) -> ReduceProd -> Concat with the batch slice."""
    net = zoo.Net(opset)
    feat = net.conv("x", 3, 4)
    batch = net.node("Shape", [feat], name="batch_dim", start=0, end=1)
    if opset >= 18:
        rest = net.node(
            "ReduceProd",
            [net.node("Shape", [feat], name="rest_dims", start=1), net.const("rp_axes", [0])],
            name="rest_prod",
            keepdims=1,
        )
    else:
        rest = net.node(
            "ReduceProd", [net.node("Shape", [feat], name="rest_dims", start=1)], name="rest_prod", keepdims=1, axes=[0]
        )
    target = net.node(
        "Concat", [batch, net.node("Cast", [rest], name="rest_cast", to=TensorProto.INT64)], name="view_target", axis=0
    )
    flat = net.node("Reshape", [feat, target], name="view")
    chain = {"batch_dim", "rest_dims", "rest_prod", "rest_cast", "view_target", "view"}
    return net.model([("x", zoo.IN_SHAPE)], [_gemm(net, flat, 144)]), chain


def legacy(opset=13, product=False):
    """x.view(x.size(0), -1) (or x.size(1) * x.size(2) * x.size(3)) through the legacy exporter."""
    net = zoo.Net(opset)
    feat = net.conv("x", 3, 4)
    shape = net.node("Shape", [feat], name="shape")
    n = net.node("Gather", [shape, net.const("i0", 0)], name="gather0", axis=0)
    chain = {"shape", "gather0", "unsqueeze0", "concat", "view"}
    if product:
        c, h, w = (net.node("Gather", [shape, net.const(f"i{i}", i)], name=f"gather{i}", axis=0) for i in (1, 2, 3))
        rest = net.node("Mul", [net.node("Mul", [c, h], name="mul_ch"), w], name="mul_chw")
        rest = net.unsqueeze(rest, [0], name="unsqueeze1")
        chain |= {"gather1", "gather2", "gather3", "mul_ch", "mul_chw", "unsqueeze1"}
    else:
        rest = net.const("minus_one", [-1])
    target = net.node("Concat", [net.unsqueeze(n, [0], name="unsqueeze0"), rest], name="concat", axis=0)
    flat = net.node("Reshape", [feat, target], name="view")
    return net.model([("x", zoo.IN_SHAPE)], [_gemm(net, flat, 144)]), chain


def sliced(opset=13):
    """The batch taken with Slice (negative end) and the rest with ConstantOfShape."""
    net = zoo.Net(opset)
    feat = net.conv("x", 3, 4)
    batch = net.node(
        "Slice",
        [net.node("Shape", [feat], name="shape"), net.const("s0", [0]), net.const("e0", [-3])],
        name="batch_slice",
    )
    rest = net.node(
        "ConstantOfShape",
        [net.const("one", [1])],
        name="rest_fill",
        value=helper.make_tensor("v", TensorProto.INT64, [1], [-1]),
    )
    target = net.node("Concat", [batch, rest], name="concat", axis=0)
    flat = net.node("Reshape", [feat, target], name="view")
    return net.model([("x", zoo.IN_SHAPE)], [_gemm(net, flat, 144)]), {
        "shape",
        "batch_slice",
        "rest_fill",
        "concat",
        "view",
    }


CHAINS = {
    "dynamo-squeeze-18": (dynamo, {}),
    "dynamo-gather-18": (dynamo, {"pick": "gather"}),
    "dynamo-squeeze-15": (dynamo, {"opset": 15}),
    "dynamo-reduce-prod-18": (dynamo_reduce_prod, {}),
    "dynamo-reduce-prod-15": (dynamo_reduce_prod, {"opset": 15}),
    "legacy-11": (legacy, {"opset": 11}),
    "legacy-13": (legacy, {}),
    "legacy-product-13": (legacy, {"product": True}),
    "slice-constant-of-shape": (sliced, {}),
}


def _bytes(proto) -> dict[str, bytes]:
    return {t.name: t.SerializeToString() for t in proto.graph.initializer}


def _check(original, plan, new, removed_nodes: set[str], kernel: tuple, mode: str) -> onnx.ModelProto:
    proto = new.to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert not plan.skips, [s.message for s in plan.skips]
    assert [r.name for r in plan.rewrites] == ["fc"]
    assert "Gemm" not in ops(proto)
    assert initializer_shapes(proto)["fc_w"] == kernel
    removed = {e.name for e in plan.edits if e.action == "remove"}
    assert removed_nodes <= removed, removed_nodes - removed
    assert not removed_nodes & {n.name for n in proto.graph.node}
    before, after = _bytes(original), _bytes(proto)
    changed = {w.name for w in plan.rewrites[0].weights}
    for name, data in after.items():
        if name in before and name not in changed:
            assert data == before[name], f"{name} changed"
    feeds = feeds_for(original)
    for index, (want, got) in enumerate(zip(run(original, feeds), run(proto, feeds))):
        if mode == "exact":
            assert got.shape == want.shape
        assert_close(want, got, f"output {index}")
    return proto


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CHAINS)
def test_shape_chain_is_a_flatten(case, mode):
    builder, options = CHAINS[case]
    original, chain = builder(**options)
    plan, new = convert(original, mode=mode)
    _check(original, plan, new, chain, (5, 4, 6, 6), mode)
    assert plan.rewrites[0].kernel == (6, 6)


def test_dynamo_target_evaluates_to_batch_and_rest():
    original, _ = dynamo()
    view = GraphView(OnnxModel.from_proto(original))
    nodes: set[int] = set()
    value = evaluate(view, "view_target_out", nodes)
    assert value is not None and value.rank == 1
    first, rest = value.items
    assert isinstance(first, Dim) and (first.tensor, first.index, first.symbol) == ("x", 0, "N")
    assert rest == -1
    assert {view.key(i) for i in nodes} >= {"sym_shape", "sym_size", "sym_reshape", "view_target"}


def test_inexact_division_is_not_followed():
    """Integer Div truncates where floor division floors: only exact quotients are evaluated."""
    net = zoo.Net(13)
    feat = net.conv("x", 3, 4)
    rest = net.node("Div", [net.const("seven", [-7]), net.const("two", [2])], name="div")
    target = net.node("Concat", [net.const("zero", [0]), rest], name="concat", axis=0)
    net.node("Identity", [target], name="out")
    view = GraphView(
        OnnxModel.from_proto(
            net.model([("x", zoo.IN_SHAPE)], [feat, "out_out"], output_elems={"out_out": TensorProto.INT64})
        )
    )
    assert evaluate(view, "concat_out") is None


def test_declared_result_shape_is_a_flatten():
    """A target no rule follows (Max), on a Reshape whose result shape is known: a flatten."""
    net = zoo.Net(13)
    feat = net.conv("x", 3, 4)
    batch = net.node("Gather", [net.node("Shape", [feat], name="shape"), net.const("i0", [0])], name="gather", axis=0)
    batch = net.node("Max", [batch, net.const("one", [1])], name="max")
    flat = net.node(
        "Reshape", [feat, net.node("Concat", [batch, net.const("m1", [-1])], name="concat", axis=0)], name="view"
    )
    original = net.model([("x", zoo.IN_SHAPE)], [_gemm(net, flat, 144)])
    original.graph.output.append(helper.make_tensor_value_info(flat, TensorProto.FLOAT, ["N", 144]))
    for mode in MODES:
        plan, new = convert(original, mode=mode)
        _check(original, plan, new, set(), (5, 4, 6, 6), mode)
        assert "view" in {n.name for n in new.to_proto().graph.node}  # a graph output: kept


# -- global pools before the FC ------------------------------------------------------------------


def pooled(
    opset: int,
    keepdims: int,
    op: str = "ReduceMean",
    axes=(2, 3),
    after: str | None = "Flatten",
    computed_axes: bool = False,
):
    net = zoo.Net(opset)
    feat = net.conv("x", 3, 4)
    axes_input = op == "ReduceSum" and opset >= 13 or opset >= 18
    if op == "AveragePool":
        pool = net.node("AveragePool", [feat], name="pool", kernel_shape=[6, 6])
    elif op == "GlobalAveragePool":
        pool = net.node("GlobalAveragePool", [feat], name="pool")
    elif axes_input:
        if computed_axes:  # the un-optimised dynamo way: a Constant of another type, cast
            value = net.node(
                "Constant", [], name="axes_value", value=helper.make_tensor("v", TensorProto.INT32, [2], list(axes))
            )
            axes_name = net.node("Cast", [value], name="axes_cast", to=TensorProto.INT64)
        else:
            axes_name = net.const("pool_axes", list(axes))
        pool = net.node(op, [feat, axes_name], name="pool", keepdims=keepdims)
    else:
        pool = net.node(op, [feat], name="pool", axes=list(axes), keepdims=keepdims)
    x = pool
    if after == "Flatten":
        x = net.node("Flatten", [pool], name="after", axis=1)
    elif after == "Reshape":
        x = net.node("Reshape", [pool, net.const("after_shape", [0, -1])], name="after")
    elif after == "Squeeze":
        x = _squeeze(net, pool, [2, 3], "after")
    return net.model([("x", zoo.IN_SHAPE)], [_gemm(net, x, 4)])


POOLS = {
    "reducemean-13-keepdims0": {"opset": 13, "keepdims": 0, "after": None},
    "reducemean-13-keepdims1": {"opset": 13, "keepdims": 1},
    "reducemean-18-keepdims0": {"opset": 18, "keepdims": 0, "after": None},
    "reducemean-18-keepdims1": {"opset": 18, "keepdims": 1},
    "reducemean-18-keepdims0-flatten": {"opset": 18, "keepdims": 0},
    "reducemean-18-computed-axes-keepdims0": {"opset": 18, "keepdims": 0, "after": None, "computed_axes": True},
    "reducemean-18-computed-axes-keepdims1": {"opset": 18, "keepdims": 1, "computed_axes": True},
    "reducemean-18-computed-axes-squeeze": {"opset": 18, "keepdims": 1, "after": "Squeeze", "computed_axes": True},
    "reducemean-13-negative-axes-reshape": {"opset": 13, "keepdims": 1, "axes": (-1, -2), "after": "Reshape"},
    "reducesum-13-keepdims0": {"opset": 13, "keepdims": 0, "op": "ReduceSum", "after": None},
    "reducesum-11-keepdims1": {"opset": 11, "keepdims": 1, "op": "ReduceSum"},
    "averagepool-whole-map": {"opset": 13, "keepdims": 1, "op": "AveragePool"},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", POOLS)
def test_fc_after_global_pool(case, mode):
    original = pooled(**POOLS[case])
    plan, new = convert(original, mode=mode)
    proto = _check(original, plan, new, set(), (5, 4, 1, 1), mode)
    assert plan.rewrites[0].kernel == (1, 1)
    assert "pool" in {n.name for n in proto.graph.node}  # the pool stays where it was


@pytest.mark.parametrize("case", list(POOLS) + ["global-average-pool"])
def test_global_pool_of(case):
    options = POOLS.get(case, {"opset": 13, "keepdims": 1, "op": "GlobalAveragePool"})
    original = pooled(**options)
    view = GraphView(OnnxModel.from_proto(original))
    pool = next(i for i, n in enumerate(view.nodes) if n.name == "pool")
    method = "sum" if options.get("op") == "ReduceSum" else "avg"
    fc_input = next(n for n in view.nodes if n.name == "fc").input[0]
    assert global_pool_of(view, fc_input) == (pool, "conv_relu_out", method)
    assert global_pool_of(view, "conv_relu_out") is None


@pytest.mark.parametrize(
    "options",
    [
        {"opset": 13, "keepdims": 1, "axes": (1, 2)},  # not over H and W
        {"opset": 13, "keepdims": 1, "axes": (3,)},
        {"opset": 13, "keepdims": 0, "op": "ReduceMax", "after": None},  # not an average
    ],
)
def test_not_a_global_pool(options):
    net = zoo.Net(options["opset"])
    feat = net.conv("x", 3, 4)
    pool = net.node(
        options.get("op", "ReduceMean"),
        [feat],
        name="pool",
        axes=list(options.get("axes", (2, 3))),
        keepdims=options["keepdims"],
    )
    model = net.model([("x", zoo.IN_SHAPE)], [pool])
    view = GraphView(OnnxModel.from_proto(model))
    assert global_pool_of(view, pool) is None


def test_partial_average_pool_is_not_global():
    net = zoo.Net(13)
    feat = net.conv("x", 3, 4)
    pool = net.node("AveragePool", [feat], name="pool", kernel_shape=[3, 3], strides=[3, 3])
    view = GraphView(OnnxModel.from_proto(net.model([("x", zoo.IN_SHAPE)], [pool])))
    assert global_pool_of(view, pool) is None


# -- evaluate() against onnxruntime ----------------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

BOUND = st.integers(-7, 7) | st.sampled_from([2**63 - 1, -(2**63)])


@settings(max_examples=40, deadline=None)
@given(
    start=st.none() | st.integers(-6, 6),
    end=st.none() | st.integers(-6, 6),
    begin=BOUND,
    stop=BOUND,
    step=st.sampled_from([1, 2, -1, -2, 3]),
    index=st.integers(-4, 3),
)
def test_evaluate_matches_onnxruntime(start, end, begin, stop, step, index):
    """Shape(start, end) -> Slice, and a Gather of the shape, concatenated: evaluate() gives what
    onnxruntime computes, clamping and negative indices included."""
    net = zoo.Net(18)
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    shape = net.node("Shape", ["x"], name="shape", **attrs)
    part = net.node(
        "Slice",
        [shape, net.const("b", [begin]), net.const("e", [stop]), net.const("a", [0]), net.const("s", [step])],
        name="slice",
    )
    full = net.node("Shape", ["x"], name="full_shape")
    picked = net.node("Gather", [full, net.const("i", index)], name="gather", axis=0)
    out = net.node("Concat", [part, net.unsqueeze(picked, [0], name="unsq")], name="concat", axis=0)
    model = net.model([("x", [2, 3, 4, 5])], [out], output_elems={out: TensorProto.INT64})
    view = GraphView(OnnxModel.from_proto(model))
    value = evaluate(view, out)
    expected = run(model, {"x": np.zeros((2, 3, 4, 5), np.float32)})[0].tolist()
    assert value is not None or step < 0  # declined only for out-of-range bounds stepping backwards
    if value is not None:
        assert [item.value if isinstance(item, Dim) else item for item in value.items] == expected
