"""Every FC pattern, at opsets 11, 13 and the newest, in float32 and float16, in both modes:
the structure (no convertible Gemm/MatMul left, the kernels expected) and the numbers
(onnxruntime, graph optimisations off)."""

import numpy as np
import onnx
import onnx_zoo as zoo
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx_check import assert_close, convert, feeds_for, initializer_shapes, newest_opset, ops, run

HEAD = {"fc6_w": (8, 4, 6, 6), "fc7_w": (5, 8, 1, 1)}

# name: (builder, options, {weight: kernel shape}, ops that must be gone in fcn mode)
CASES = {
    "flatten-gemm": (zoo.flatten_gemm, {}, HEAD, {"Flatten"}),
    "gemm-transB0": (zoo.flatten_gemm, {"trans_b": 0}, HEAD, {"Flatten"}),
    "gemm-alpha-beta": (zoo.flatten_gemm, {"alpha": 0.5, "beta": 2.0}, HEAD, {"Flatten"}),
    "gemm-transB0-alpha": (zoo.flatten_gemm, {"trans_b": 0, "alpha": 1.5}, HEAD, {"Flatten"}),
    "gemm-bias-1xM": (zoo.flatten_gemm, {"bias": "2d"}, HEAD, {"Flatten"}),
    "gemm-bias-scalar": (zoo.flatten_gemm, {"bias": "scalar", "beta": 0.5}, HEAD, {"Flatten"}),
    "gemm-no-bias": (zoo.flatten_gemm, {"bias": None}, HEAD, {"Flatten"}),
    "reshape-0,-1": (zoo.reshape_gemm, {"target": (0, -1)}, HEAD, {"Reshape"}),
    "reshape-N,-1": (zoo.reshape_gemm, {"target": (2, -1), "batch": 2}, HEAD, {"Reshape"}),
    "reshape--1,CHW": (zoo.reshape_gemm, {"target": (-1, 144)}, HEAD, {"Reshape"}),
    "reshape-1,CHW": (zoo.reshape_gemm, {"target": (1, 144), "batch": 1}, HEAD, {"Reshape"}),
    "dynamic-chain": (zoo.dynamic_chain, {}, HEAD, {"Reshape", "Shape", "Gather", "Concat", "Unsqueeze"}),
    "matmul-add": (zoo.matmul_add, {}, HEAD, {"Flatten", "Add"}),
    "add-bias-first": (zoo.matmul_add, {"bias_first": True}, HEAD, {"Flatten", "Add"}),
    "matmul": (zoo.matmul_add, {"bias": False}, HEAD, {"Flatten"}),
    "gap-gemm": (zoo.gap_gemm, {}, {"fc_w": (5, 4, 1, 1)}, set()),  # fcn: the output keeps (N, K)
    "mlp": (zoo.mlp, {}, {"fc1_w": (12, 16, 1, 1), "fc2_w": (7, 12, 1, 1)}, {"Add"}),
    "nhwc-reshape": (zoo.nhwc, {}, {"fc6_w": (8, 4, 6, 6)}, {"Transpose", "Reshape"}),
    "nhwc-flatten": (zoo.nhwc, {"reshape": False}, {"fc6_w": (8, 4, 6, 6)}, {"Transpose", "Flatten"}),
    "activations": (zoo.activations, {}, HEAD, set()),
    "two-outputs": (zoo.two_outputs, {}, HEAD, set()),
}
OPSETS = [11, 13, newest_opset()]
DTYPES = {"fp32": np.float32, "fp16": np.float16}


@pytest.mark.parametrize("mode", ["fcn", "exact"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opset", OPSETS)
@pytest.mark.parametrize("case", CASES)
def test_pattern(case, opset, dtype, mode):
    builder, options, kernels, gone = CASES[case]
    original = builder(opset, DTYPES[dtype], **options)
    plan, new = convert(original, mode=mode)
    proto = new.to_proto()
    onnx.checker.check_model(proto, full_check=True)

    assert not plan.skips, [s.message for s in plan.skips]
    assert {r.name for r in plan.rewrites} == {n.name for n in original.graph.node if n.op_type in ("Gemm", "MatMul")}
    assert "Gemm" not in ops(proto) and "MatMul" not in ops(proto)
    shapes = initializer_shapes(proto)
    for name, kernel in kernels.items():
        assert shapes[name] == kernel
    convs = {n.name: n for n in proto.graph.node if n.op_type == "Conv" and n.name in {r.name for r in plan.rewrites}}
    assert set(convs) == {r.new_name for r in plan.rewrites}
    if mode == "fcn":
        assert not gone & set(ops(proto)), ops(proto)
    assert proto.opset_import == original.opset_import and proto.ir_version == original.ir_version

    feeds = feeds_for(original)
    expected = run(original, feeds)
    actual = run(proto, feeds)
    for index, (want, got) in enumerate(zip(expected, actual)):
        if mode == "exact":
            assert got.shape == want.shape
        assert_close(want, got, f"output {index}")
    for output, before in zip(proto.graph.output, original.graph.output):
        assert output.name == before.name
        if mode == "exact":
            assert output.type == before.type


@pytest.mark.parametrize("opset", [7, 9])
@pytest.mark.parametrize("case", ["flatten-gemm", "reshape-0,-1", "matmul-add", "mlp", "gap-gemm"])
def test_old_opsets(case, opset):
    """Opsets 7 and 9 (IR 3: initializers listed as graph inputs) are kept as they were."""
    builder, options, kernels, _ = CASES[case]
    original = builder(opset, np.float32, **options)
    plan, new = convert(original, mode="exact")
    proto = new.to_proto()
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == opset and proto.ir_version == original.ir_version
    listed = {vi.name: vi for vi in proto.graph.input}
    for name, kernel in kernels.items():
        assert initializer_shapes(proto)[name] == kernel
        if original.ir_version < 4:
            dims = tuple(d.dim_value for d in listed[name].type.tensor_type.shape.dim)
            assert dims == kernel
    feeds = feeds_for(original)
    for want, got in zip(run(original, feeds), run(proto, feeds)):
        assert_close(want, got)


@pytest.mark.parametrize("case", ["flatten-gemm", "gemm-alpha-beta", "gemm-transB0", "matmul-add", "nhwc-reshape"])
def test_float64(case):
    """float64 weights stay float64 (onnx's reference evaluator runs them: onnxruntime has no CPU Conv)."""
    builder, options, kernels, _ = CASES[case]
    original = builder(13, np.float64, **options)
    _, new = convert(original, mode="exact")
    proto = new.to_proto()
    assert all(t.data_type == onnx.TensorProto.DOUBLE for t in proto.graph.initializer if t.name in kernels)
    feeds = feeds_for(original)
    for want, got in zip(run(original, feeds), run(proto, feeds)):
        assert_close(want, got)


def test_gemm_transb1_keeps_the_bytes():
    """transB=1: only the dims change; the raw bytes are the same."""
    original = zoo.flatten_gemm(13, np.float32)
    _, new = convert(original)
    before = {t.name: t for t in original.graph.initializer}
    after = {t.name: t for t in new.to_proto().graph.initializer}
    assert after["fc6_w"].raw_data == before["fc6_w"].raw_data
    assert list(after["fc6_w"].dims) == [8, 4, 6, 6]


def test_plan_records_weights_and_edits():
    plan, _ = convert(zoo.dynamic_chain(13, np.float32), mode="fcn")
    fc6 = next(r for r in plan.rewrites if r.name == "fc6")
    assert (fc6.op_before, fc6.op_after, fc6.kernel) == ("Gemm", "Conv", (6, 6))
    assert (fc6.in_channels, fc6.out_channels) == (4, 8)
    assert fc6.input == "conv_relu_out" and fc6.input_shape == (-1, 4, 6, 6)
    assert [(w.name, w.shape_before, w.shape_after, w.transform) for w in fc6.weights] == [
        ("fc6_w", (8, 144), (8, 4, 6, 6), "reshape"),
        ("fc6_b", (8,), (8,), "unchanged"),
    ]
    removed = {e.name for e in plan.edits if e.action == "remove"}
    assert {"flatten", "shape", "gather", "unsqueeze", "concat"} <= removed
    assert any(e.action == "resize-input" and e.name == "x" for e in plan.edits)


def test_transforms_named_in_the_plan():
    plan, _ = convert(zoo.flatten_gemm(13, np.float32, trans_b=0, alpha=2.0, beta=0.5, bias="2d"))
    fc6 = next(r for r in plan.rewrites if r.name == "fc6")
    assert [w.transform for w in fc6.weights] == ["transpose+scale", "reshape+scale"]
    plan, _ = convert(zoo.nhwc(13, np.float32))
    assert plan.rewrites[0].weights[0].transform == "permute"
    plan, _ = convert(zoo.flatten_gemm(13, np.float32, bias="scalar"))
    assert next(r for r in plan.rewrites if r.name == "fc6").weights[1].transform == "broadcast"


def test_exact_mode_inserts_flatten_before_2d_readers_and_outputs():
    original = zoo.two_outputs(13, np.float32)
    plan, new = convert(original, mode="exact")
    proto = new.to_proto()
    inserted = [e for e in plan.edits if e.action == "insert"]
    assert [e.op for e in inserted] == ["Flatten", "Flatten"]
    assert plan.renames == {"embedding": "embedding_map", "fc7_out": "fc7_out_map"}
    assert [o.name for o in proto.graph.output] == ["embedding", "fc7_out", "label"]


def test_fcn_mode_flattens_only_for_2d_readers():
    original = zoo.two_outputs(13, np.float32)
    plan, new = convert(original, mode="fcn")
    proto = new.to_proto()
    flattens = [n for n in proto.graph.node if n.op_type == "Flatten"]
    assert len(flattens) == 1 and flattens[0].output[0] == "fc7_out_flat"
    argmax = next(n for n in proto.graph.node if n.op_type == "ArgMax")
    assert argmax.input[0] == "fc7_out_flat"
    shapes = {o.name: o.type.tensor_type.shape for o in proto.graph.output}
    assert len(shapes["embedding"].dim) == 4 and len(shapes["fc7_out"].dim) == 4


def test_softmax_before_opset_13_goes_channels_last():
    """Softmax before opset 13 flattens from its axis on: on the map it runs on axis 3 of NHWC."""
    original = zoo.activations(11, np.float32)
    plan, new = convert(original, mode="fcn")
    proto = new.to_proto()
    softmax = next(n for n in proto.graph.node if n.op_type == "Softmax")
    producer = next(n for n in proto.graph.node if softmax.input[0] in n.output)
    reader = next(n for n in proto.graph.node if softmax.output[0] in n.input)
    assert producer.op_type == reader.op_type == "Transpose" and "Flatten" not in ops(new)
    assert next(a.i for a in softmax.attribute if a.name == "axis") == 3
    assert plan.fcn.fully_convolutional, plan.fcn
    feeds = feeds_for(original)
    for want, got in zip(run(original, feeds), run(proto, feeds)):
        assert_close(want, got.reshape(want.shape))
    plan, new = convert(zoo.activations(13, np.float32), mode="fcn")
    assert "Flatten" not in ops(new) and "Transpose" not in ops(new)


def test_classifier_before_pool():
    original = zoo.gap_gemm(13, np.float32)
    feeds = feeds_for(original)
    expected = run(original, feeds)[0]
    plan, new = convert(original, mode="exact", classifier_before_pool=True)
    assert ops(new) == ["Conv", "Relu", "Conv", "GlobalAveragePool", "Flatten"]
    assert plan.rewrites[0].input == "conv_relu_out" and plan.rewrites[0].input_shape == (-1, 4, 6, 6)
    assert_close(expected, run(new, feeds)[0])
    plan, new = convert(original, mode="fcn", classifier_before_pool=True)
    assert ops(new) == ["Conv", "Relu", "Conv"]
    scores = run(new, feeds)[0]
    assert scores.shape == (2, 5, 6, 6)
    assert_close(expected, scores.mean(axis=(2, 3)))
    plan, new = convert(original, mode="fcn")
    assert ops(new) == ["Conv", "Relu", "GlobalAveragePool", "Conv", "Flatten"]  # (N, K) at any size
    assert plan.fcn.fully_convolutional and plan.fcn.score_maps == []


@settings(max_examples=25, deadline=None)
@given(
    channels=st.integers(1, 5),
    height=st.integers(1, 5),
    width=st.integers(1, 5),
    outputs=st.integers(1, 7),
    trans_b=st.booleans(),
    nhwc=st.booleans(),
    alpha=st.sampled_from([1.0, 0.5, -2.0]),
    mode=st.sampled_from(["fcn", "exact"]),
)
def test_any_map_size(channels, height, width, outputs, trans_b, nhwc, alpha, mode):
    """An FC over any C x H x W map, weight stored either way, NCHW or NHWC: same numbers."""
    net = zoo.Net(13, seed=channels * 100 + height * 10 + width)
    x = "x"
    if nhwc:
        x = net.node("Transpose", [x], name="to_nhwc", perm=[0, 2, 3, 1])
    flat = net.node("Flatten", [x], name="flatten", axis=1)
    k = channels * height * width
    weight = net.weight("w", (outputs, k) if trans_b else (k, outputs))
    y = net.node("Gemm", [flat, weight, net.weight("b", (outputs,))], name="fc", transB=int(trans_b), alpha=alpha)
    original = net.model([("x", ["N", channels, height, width])], [y])
    plan, new = convert(original, mode=mode)
    assert plan.rewrites[0].kernel == (height, width) and "Gemm" not in ops(new)
    feeds = feeds_for(original)
    assert_close(run(original, feeds)[0], run(new, feeds)[0])
