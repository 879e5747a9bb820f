"""fcn mode on the graphs real exporters write, each idiom rebuilt with onnx.helper at small widths.

For every model: exact mode equals the original at its size; fcn mode equals it at its size and
runs at two larger sizes with the score-map sizes the plan predicts; on padding-free nets every
cell equals the original run on its crop; where fcn cannot hold, the plan says
``fully_convolutional: false`` and names the blocking node, and the input keeps its size.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx_check import assert_close, convert, feeds_for, newest_opset, ops, run
from onnx_zoo import Net

# -- the models -----------------------------------------------------------------------------------


def _trunk(net: Net, x: str = "x", cin: int = 3, width: int = 4, pad: int = 0) -> str:
    """Two valid 3x3 convs and a 2x2 max pool: stride 2 and, on a 12 x 12 input, a 4 x 4 map."""
    for i in (1, 2):
        w = net.weight(f"c{i}_w", (width, cin if i == 1 else width, 3, 3))
        b = net.weight(f"c{i}_b", (width,), 0.1)
        x = net.node(
            "Relu", [net.node("Conv", [x, w, b], name=f"c{i}", pads=[pad] * 4, kernel_shape=[3, 3])], name=f"c{i}_relu"
        )
    return net.node("MaxPool", [x], name="pool", kernel_shape=[2, 2], strides=[2, 2])


def zoo_alexnet(opset: int = 8):
    """The ONNX model zoo's AlexNet: Reshape to (1, -1)... here Flatten, Gemm, Relu, Dropout with its
    mask output named (never read), Gemm, Relu, Dropout, Gemm, Softmax."""
    net = Net(opset, seed=3)
    x = net.node("Flatten", [_trunk(net)], name="flatten", axis=1)
    for i, (k, m) in enumerate([(64, 10), (10, 10)], 6):
        x = net.node(
            "Gemm", [x, net.weight(f"fc{i}_w", (m, k)), net.weight(f"fc{i}_b", (m,), 0.1)], name=f"fc{i}", transB=1
        )
        x = net.node("Relu", [x], name=f"relu{i}")
        x = net.node(
            "Dropout", [x], [f"drop{i}", f"drop{i}_mask"], name=f"drop{i}", **({"ratio": 0.5} if opset < 12 else {})
        )
    x = net.node("Gemm", [x, net.weight("fc8_w", (5, 10)), net.weight("fc8_b", (5,), 0.1)], name="fc8", transB=1)
    prob = net.node("Softmax", [x], name="prob")
    return net.model([("x", [1, 3, 12, 12])], [prob])


def torch_legacy(optimised: bool):
    """PyTorch's TorchScript exporter, opset 11: optimised, Flatten -> Gemm; not, the
    Shape -> Gather -> Unsqueeze -> Concat -> Reshape chain; Linear -> Gemm(transB=1)."""
    net = Net(11, seed=4)
    feat = _trunk(net)
    if optimised:
        flat = net.node("Flatten", [feat], name="flatten", axis=1)
    else:
        shape = net.node("Shape", [feat], name="shape")
        batch = net.node("Gather", [shape, net.const("zero", 0)], name="gather", axis=0)
        first = net.node("Unsqueeze", [batch], name="unsq0", axes=[0])
        target = net.node("Concat", [first, net.const("minus_one", [-1])], name="concat", axis=0)
        flat = net.node("Reshape", [feat, target], name="reshape")
    x = net.node("Gemm", [flat, net.weight("fc1_w", (12, 64)), net.weight("fc1_b", (12,), 0.1)], name="fc1", transB=1)
    x = net.node("Relu", [x], name="relu")
    x = net.node("Gemm", [x, net.weight("fc2_w", (6, 12)), net.weight("fc2_b", (6,), 0.1)], name="fc2", transB=1)
    return net.model([("x", ["N", 3, 12, 12])], [x])


def torch_dynamo():
    """PyTorch's dynamo exporter (opset 18): Reshape to (1, 64), Linear as Gemm, GELU as its Erf
    decomposition between the FCs (x * 0.5 * (1 + erf(x / sqrt 2)))."""
    net = Net(18, seed=5)
    flat = net.node("Reshape", [_trunk(net), net.const("view_shape", [1, 64])], name="view")
    x = net.node(
        "Gemm", [flat, net.weight("linear_w", (12, 64)), net.weight("linear_b", (12,), 0.1)], name="linear", transB=1
    )
    half = net.node("Mul", [x, net.const("half", 0.5, np.float32)], name="mul_half")
    scaled = net.node("Div", [x, net.const("sqrt2", 1.4142135, np.float32)], name="div")
    erf = net.node("Erf", [scaled], name="erf")
    one_plus = net.node("Add", [erf, net.const("one", 1.0, np.float32)], name="add_one")
    gelu = net.node("Mul", [half, one_plus], name="gelu")
    x = net.node(
        "Gemm",
        [gelu, net.weight("linear_1_w", (5, 12)), net.weight("linear_1_b", (5,), 0.1)],
        name="linear_1",
        transB=1,
    )
    return net.model([("x", [1, 3, 12, 12])], [x])


def torch_dynamo_unoptimised(opset: int = 18):
    """The dynamo exporter without optimisation: torch.flatten(x, 1) as the batch read from the
    graph input (Shape start 0 end 1, Squeeze, Reshape to [-1]), a Concat with -1 and a Reshape;
    Linear as MatMul with a transposed weight + Add; ReLU; Linear."""
    net = Net(opset, seed=13)
    feat = _trunk(net)
    size = net.node("Shape", ["x"], name="sym_size_shape", start=0, end=1)
    size = net.node("Squeeze", [size, net.const("sq0", [0])], name="sym_size")
    size = net.node("Reshape", [size, net.const("minus_one", [-1])], name="sym_size_1d")
    target = net.node("Concat", [size, net.const("rest", [-1])], name="view_target", axis=0)
    flat = net.node("Reshape", [feat, target], name="view")
    x = net.node("MatMul", [flat, net.weight("linear_wt", (64, 12), 0.1)], name="linear")
    x = net.node("Add", [x, net.weight("linear_b", (12,), 0.1)], name="linear_add")
    x = net.node("Relu", [x], name="relu")
    x = net.node("MatMul", [x, net.weight("linear_1_wt", (12, 5), 0.3)], name="linear_1")
    x = net.node("Add", [x, net.weight("linear_1_b", (5,), 0.1)], name="linear_1_add")
    return net.model([("x", ["s0", 3, 12, 12])], [x])


def keras_mtcnn_onet(opset: int = 12):
    """keras2onnx MTCNN O-Net / R-Net: NHWC input and a Transpose to NCHW, PRelu with per-channel
    (C, 1, 1) slopes in the trunk and a per-feature (K,) slope after the first FC, the Keras
    Flatten as a Transpose back to NHWC and a Reshape, MatMul + Add, two heads (Softmax, box)."""
    net = Net(opset, seed=6)
    nchw = net.node("Transpose", ["x"], name="to_nchw", perm=[0, 3, 1, 2])
    w = net.weight("c1_w", (4, 3, 3, 3))
    x = net.node("Conv", [nchw, w, net.weight("c1_b", (4,), 0.1)], name="c1", kernel_shape=[3, 3])
    x = net.node("PRelu", [x, net.weight("c1_alpha", (4, 1, 1), 0.2)], name="c1_prelu")
    x = net.node("MaxPool", [x], name="pool", kernel_shape=[2, 2], strides=[2, 2])
    nhwc = net.node("Transpose", [x], name="to_nhwc", perm=[0, 2, 3, 1])
    flat = net.node("Reshape", [nhwc, net.const("flat_shape", [-1, 100])], name="flatten")
    x = net.node("MatMul", [flat, net.weight("dense_w", (100, 16), 0.1)], name="dense")
    x = net.node("Add", [x, net.weight("dense_b", (16,), 0.1)], name="dense_add")
    x = net.node("PRelu", [x, net.weight("dense_alpha", (16,), 0.2)], name="dense_prelu")
    cls = net.node("MatMul", [x, net.weight("cls_w", (16, 2), 0.3)], name="cls")
    cls = net.node("Add", [cls, net.weight("cls_b", (2,), 0.1)], name="cls_add")
    prob = net.node("Softmax", [cls], name="prob", **({"axis": -1} if opset >= 13 else {}))
    box = net.node("MatMul", [x, net.weight("box_w", (16, 4), 0.3)], name="box")
    box = net.node("Add", [box, net.weight("box_b", (4,), 0.1)], name="box_add")
    return net.model([("x", ["N", 12, 12, 3])], [prob, box])


def batchnorm_between(opset: int = 13):
    """A BatchNorm1d between two FCs (per-feature scale, bias, mean, variance on (N, K))."""
    net = Net(opset, seed=7)
    x = net.node(
        "Gemm",
        [
            net.node("Flatten", [_trunk(net)], name="flatten"),
            net.weight("fc1_w", (12, 64)),
            net.weight("fc1_b", (12,), 0.1),
        ],
        name="fc1",
        transB=1,
    )
    stats = [net.weight("bn_scale", (12,), 1.0), net.weight("bn_bias", (12,), 0.1), net.weight("bn_mean", (12,), 0.1)]
    var = net.const("bn_var", np.abs(np.random.RandomState(1).randn(12)) + 0.5, np.float32)
    x = net.node("BatchNormalization", [x] + stats + [var], name="bn")
    x = net.node("Relu", [x], name="relu")
    x = net.node("Gemm", [x, net.weight("fc2_w", (5, 12)), net.weight("fc2_b", (5,), 0.1)], name="fc2", transB=1)
    return net.model([("x", [1, 3, 12, 12])], [x])


def two_heads(join: str, opset: int = 13):
    """Two FC heads on one flatten, summed (Add), concatenated (Concat axis 1) or scaled by a
    per-class constant (Mul by a (1, K) vector)."""
    net = Net(opset, seed=8)
    flat = net.node("Flatten", [_trunk(net)], name="flatten")
    a = net.node("Gemm", [flat, net.weight("a_w", (5, 64)), net.weight("a_b", (5,), 0.1)], name="head_a", transB=1)
    b = net.node("Gemm", [flat, net.weight("b_w", (5, 64)), net.weight("b_b", (5,), 0.1)], name="head_b", transB=1)
    if join == "add":
        out = net.node("Add", [a, b], name="join")
    elif join == "concat":
        out = net.node("Concat", [a, b], name="join", axis=1)
    else:
        out = net.node(
            "Mul", [net.node("Add", [a, b], name="sum"), net.weight("class_scale", (1, 5), 1.0)], name="join"
        )
    return net.model([("x", [1, 3, 12, 12])], [out])


def softmax_head(opset: int):
    net = Net(opset, seed=9)
    x = net.node(
        "Gemm",
        [
            net.node("Flatten", [_trunk(net)], name="flatten"),
            net.weight("fc_w", (5, 64)),
            net.weight("fc_b", (5,), 0.1),
        ],
        name="fc",
        transB=1,
    )
    log = net.node("LogSoftmax", [x], name="logsoftmax", **({"axis": 1} if opset < 13 else {}))
    top = net.node("ArgMax", [log], name="argmax", axis=1, keepdims=1)
    return net.model([("x", [1, 3, 12, 12])], [log, top], output_elems={top: onnx.TensorProto.INT64})


def layernorm_head():
    """ConvNeXt's head: GlobalAveragePool, LayerNorm2d as Transpose (0, 2, 3, 1) -> LayerNorm ->
    Transpose (0, 3, 1, 2), Flatten, Linear. The flatten reads an NCHW map again."""
    net = Net(17, seed=10)
    pooled = net.node("GlobalAveragePool", [_trunk(net, pad=1)], name="gap")
    nhwc = net.node("Transpose", [pooled], name="ln_in", perm=[0, 2, 3, 1])
    normed = net.node(
        "LayerNormalization", [nhwc, net.weight("ln_g", (4,), 1.0), net.weight("ln_b", (4,), 0.1)], name="ln", axis=-1
    )
    nchw = net.node("Transpose", [normed], name="ln_out", perm=[0, 3, 1, 2])
    x = net.node(
        "Gemm",
        [net.node("Flatten", [nchw], name="flatten"), net.weight("fc_w", (5, 4)), net.weight("fc_b", (5,), 0.1)],
        name="fc",
        transB=1,
    )
    return net.model([("x", [1, 3, 12, 12])], [x])


def token_model():
    """A token model (ViT / Swin style): patches as tokens by a Reshape that bakes the token
    count, a position embedding of that many tokens, a mean over tokens and a Linear head."""
    net = Net(13, seed=11)
    patches = net.node(
        "Conv",
        ["x", net.weight("patch_w", (8, 3, 4, 4)), net.weight("patch_b", (8,), 0.1)],
        name="patch",
        kernel_shape=[4, 4],
        strides=[4, 4],
    )
    tokens = net.node("Reshape", [patches, net.const("tok_shape", [1, 8, 9])], name="to_tokens")
    tokens = net.node("Transpose", [tokens], name="tokens_last", perm=[0, 2, 1])
    tokens = net.node("Add", [tokens, net.weight("pos_embed", (1, 9, 8), 0.1)], name="pos")
    mean = net.node("ReduceMean", [tokens], name="token_mean", axes=[1], keepdims=0)
    head = net.node(
        "Gemm", [mean, net.weight("head_w", (5, 8)), net.weight("head_b", (5,), 0.1)], name="head", transB=1
    )
    return net.model([("x", [1, 3, 12, 12])], [head])


PADDING_FREE = {
    "zoo_alexnet",
    "legacy_opt",
    "legacy_chain",
    "dynamo",
    "keras_onet_12",
    "keras_onet_13",
    "bn_between",
    "heads_add",
    "heads_concat",
    "heads_scaled",
    "softmax_11",
    "softmax_12",
    "softmax_13",
    "softmax_newest",
}
MODELS = {
    "zoo_alexnet": lambda: zoo_alexnet(8),
    "zoo_alexnet_12": lambda: zoo_alexnet(12),
    "legacy_opt": lambda: torch_legacy(True),
    "legacy_chain": lambda: torch_legacy(False),
    "dynamo": torch_dynamo,
    "dynamo_unoptimised": torch_dynamo_unoptimised,
    "keras_onet_12": lambda: keras_mtcnn_onet(12),
    "keras_onet_13": lambda: keras_mtcnn_onet(13),
    "bn_between": batchnorm_between,
    "heads_add": lambda: two_heads("add"),
    "heads_concat": lambda: two_heads("concat"),
    "heads_scaled": lambda: two_heads("scaled"),
    "softmax_11": lambda: softmax_head(11),
    "softmax_12": lambda: softmax_head(12),
    "softmax_13": lambda: softmax_head(13),
    "softmax_newest": lambda: softmax_head(newest_opset()),
}
PADDING_FREE.update({"zoo_alexnet_12", "dynamo_unoptimised"})


# -- the checks -------------------------------------------------------------------------------------


def _input_layout(proto):
    value = proto.graph.input[0]
    dims = [d.dim_value if d.HasField("dim_value") else 1 for d in value.type.tensor_type.shape.dim]
    nhwc = dims[3] == 3 and dims[1] != 3
    return value.name, dims, ((1, 2) if nhwc else (2, 3))


def _at(dims, positions, h, w):
    dims = list(dims)
    dims[positions[0]], dims[positions[1]] = h, w
    return dims


def _crop(x, positions, top, left, h, w):
    index = [slice(None)] * 4
    index[positions[0]] = slice(top, top + h)
    index[positions[1]] = slice(left, left + w)
    return x[tuple(index)]


@pytest.mark.parametrize("name", MODELS)
def test_exact_mode_equals_the_original(name):
    original = MODELS[name]()
    plan, new = convert(original, mode="exact")
    assert plan.rewrites and not plan.skips, [s.message for s in plan.skips]
    assert not {"Gemm", "MatMul"} & set(ops(new))
    feeds = feeds_for(original)
    for want, got in zip(run(original, feeds), run(new, feeds)):
        assert got.shape == want.shape
        assert_close(want, got)


@pytest.mark.parametrize("name", MODELS)
def test_fcn_mode_runs_at_larger_sizes(name):
    original = MODELS[name]()
    plan, new = convert(original, mode="fcn")
    assert plan.rewrites and not plan.skips, [s.message for s in plan.skips]
    report = plan.fcn
    assert report.fully_convolutional, report
    assert report.proof == "onnxruntime" and report.blockers == []
    proto = new.to_proto()
    assert not {"Gemm", "MatMul", "Flatten", "Unsqueeze"} & set(ops(proto)), ops(proto)
    input_name, dims, positions = _input_layout(original)
    declared = proto.graph.input[0].type.tensor_type.shape.dim
    assert all(declared[p].dim_param for p in positions)  # H and W symbolic where the image has them
    feeds = feeds_for(original)
    for want, got in zip(run(original, feeds), run(proto, feeds)):
        assert_close(want, got.reshape(want.shape))  # one cell at the planning size
    base_h, base_w = dims[positions[0]], dims[positions[1]]
    maps = {score.output: score for score in report.score_maps}
    assert set(maps) == {o.name for o in proto.graph.output}
    for extra in (1, 3):
        h, w = base_h + extra * maps[proto.graph.output[0].name].height.stride, base_w + 2 * extra
        big = {input_name: np.random.RandomState(extra).randn(*_at(dims, positions, h, w)).astype(np.float32)}
        outputs = run(proto, big)
        for value, result in zip(proto.graph.output, outputs):
            assert result.shape[2:] == maps[value.name].size_at(h, w), (value.name, result.shape)
        if name in PADDING_FREE:
            _cells_equal_crops(original, outputs, proto, big[input_name], positions, maps, (base_h, base_w))


def _cells_equal_crops(original, outputs, proto, image, positions, maps, base):
    for value, result in zip(proto.graph.output, outputs):
        score = maps[value.name]
        for i in range(result.shape[2]):
            for j in range(result.shape[3]):
                crop = _crop(image, positions, i * score.height.stride, j * score.width.stride, *base)
                index = [o.name for o in original.graph.output].index(value.name)
                want = run(original, {original.graph.input[0].name: np.ascontiguousarray(crop)})[index]
                assert_close(want, result[:, :, i, j].reshape(want.shape), f"{value.name} cell {i},{j}")


def test_alexnet_dropout_keeps_the_chain_4d():
    """The zoo AlexNet's Dropouts stay on the maps: no Flatten before them, no Unsqueeze after."""
    plan, new = convert(zoo_alexnet(8), mode="fcn")
    assert ops(new).count("Dropout") == 2 and "Flatten" not in ops(new) and "Unsqueeze" not in ops(new)
    kernels = {r.name: r.kernel for r in plan.rewrites}
    assert kernels == {"fc6": (4, 4), "fc7": (1, 1), "fc8": (1, 1)}
    score = plan.fcn.score_maps[0]
    assert (score.height.stride, score.height.min_size) == (2, 12)


def test_keras_per_feature_slope_is_reshaped():
    plan, new = convert(keras_mtcnn_onet(12), mode="fcn")
    shapes = {t.name: tuple(t.dims) for t in new.to_proto().graph.initializer}
    assert shapes["dense_alpha_4d"] == (16, 1, 1) and "dense_alpha" not in shapes
    resize = [e for e in plan.edits if e.action == "resize-input"]
    assert len(resize) == 1 and "NHWC" in resize[0].why
    dims = new.to_proto().graph.input[0].type.tensor_type.shape.dim
    assert dims[3].dim_value == 3 and dims[1].dim_param and dims[2].dim_param


def test_layernorm_head_is_a_plain_flatten():
    """ConvNeXt's Transpose pair returns to NCHW before the flatten: rewritten, not unsupported-layout;
    the FC reads a pooled vector, so the output keeps (N, K) and the input is free."""
    original = layernorm_head()
    for mode in ("exact", "fcn"):
        plan, new = convert(original, mode=mode)
        assert [r.name for r in plan.rewrites] == ["fc"] and not plan.skips
        feeds = feeds_for(original)
        for want, got in zip(run(original, feeds), run(new, feeds)):
            assert got.shape == want.shape
            assert_close(want, got)
    assert plan.fcn.fully_convolutional and plan.fcn.score_maps == []
    big = run(new, {"x": np.random.RandomState(0).randn(1, 3, 20, 18).astype(np.float32)})[0]
    assert big.shape == (1, 5)


def test_token_model_stays_fixed_and_says_why():
    original = token_model()
    plan, new = convert(original, mode="fcn")
    report = plan.fcn
    assert not report.fully_convolutional and report.proof is None
    assert any(b.name in ("to_tokens", "pos") for b in report.blockers), report.blockers
    assert not any(e.action == "resize-input" for e in plan.edits)
    proto = new.to_proto()
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 12, 12]
    assert [d.dim_value for d in proto.graph.output[0].type.tensor_type.shape.dim] == [1, 5]  # (N, K) kept
    feeds = feeds_for(original)
    assert_close(run(original, feeds)[0], run(proto, feeds)[0])
    assert "fully convolutional: no" in plan.render_text()
    assert plan.to_dict()["fcn"]["fully_convolutional"] is False


def test_report_text_and_json_say_what_was_proven():
    plan, _ = convert(torch_legacy(True), mode="fcn")
    text = plan.render_text()
    assert "fully convolutional: yes (proof: onnxruntime" in text
    assert "stride 2x2" in text and "h = (H - 12) // 2 + 1" in text
    data = plan.to_dict()["fcn"]
    assert data["fully_convolutional"] is True and data["score_maps"][0]["height"]["stride"] == 2


# -- --classifier-before-pool on the global-pool heads exporters write ------------------------------


def pooled_head(pool: str, hidden: str | None = None, opset: int = 13):
    """A trunk, a global average pool as the exporters write it, then the classifier: one FC, or
    FC -> (Dropout | HardSwish) -> FC (MobileNet v3's head has the HardSwish)."""
    net = Net(opset, seed=12)
    feat = _trunk(net, pad=1)  # (1, 4, 6, 6) on 12 x 12
    if pool == "gap":
        x = net.node("Flatten", [net.node("GlobalAveragePool", [feat], name="gpool")], name="flatten")
    elif pool == "reducemean_keep":
        kwargs = {"axes": [2, 3]} if opset < 18 else {}
        inputs = [feat] + ([net.const("pool_axes", [2, 3])] if opset >= 18 else [])
        x = net.node("Flatten", [net.node("ReduceMean", inputs, name="gpool", keepdims=1, **kwargs)], name="flatten")
    elif pool == "reducemean_drop":
        kwargs = {"axes": [-2, -1]} if opset < 18 else {}
        inputs = [feat] + ([net.const("pool_axes", [-2, -1])] if opset >= 18 else [])
        x = net.node("ReduceMean", inputs, name="gpool", keepdims=0, **kwargs)
    else:  # an AveragePool whose kernel covers the map, then a Squeeze
        pooled = net.node("AveragePool", [feat], name="gpool", kernel_shape=[6, 6])
        x = net.node("Squeeze", [pooled, net.const("sq_axes", [2, 3])], name="squeeze")
    x = net.node("Gemm", [x, net.weight("fc1_w", (6, 4)), net.weight("fc1_b", (6,), 0.1)], name="fc1", transB=1)
    if hidden is None:
        return net.model([("x", [1, 3, 12, 12])], [x])
    x = net.node("HardSwish" if hidden == "hardswish" else "Dropout", [x], name="hidden")
    x = net.node("Gemm", [x, net.weight("fc2_w", (5, 6)), net.weight("fc2_b", (5,), 0.1)], name="fc2", transB=1)
    return net.model([("x", [1, 3, 12, 12])], [x])


@pytest.mark.parametrize("pool", ["gap", "reducemean_keep", "reducemean_drop", "avgpool_squeeze"])
@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("hidden", [None, "dropout"])
def test_classifier_before_pool_linear_heads(pool, opset, hidden):
    """Linear up to the output: every FC moves, the pool goes, the output is the class score map
    whose spatial mean is the original output."""
    original = pooled_head(pool, hidden, opset)
    feeds = feeds_for(original)
    expected = run(original, feeds)[0]
    plan, new = convert(original, mode="fcn", classifier_before_pool=True)
    assert {r.name for r in plan.rewrites} == ({"fc1"} if hidden is None else {"fc1", "fc2"})
    assert all(r.kernel == (1, 1) for r in plan.rewrites)
    assert not {"GlobalAveragePool", "ReduceMean", "AveragePool", "Flatten", "Squeeze"} & set(ops(new)), ops(new)
    scores = run(new, feeds)[0]
    assert scores.shape == (1, 5 if hidden else 6, 6, 6)
    assert_close(expected, scores.mean(axis=(2, 3)))
    assert plan.fcn.fully_convolutional and plan.fcn.score_maps[0].height.stride == 2
    assert any("moved before" in note and "removed" in note for note in plan.notes)
    plan, exact = convert(original, mode="exact", classifier_before_pool=True)
    assert ops(exact).index("Conv", 2) < ops(exact).index("GlobalAveragePool")
    got = run(exact, feeds)[0]
    assert got.shape == expected.shape
    assert_close(expected, got)


def test_classifier_before_pool_stops_at_a_nonlinearity():
    """MobileNet v3: FC -> HardSwish -> FC. Only the first FC moves; the pool follows it and the
    HardSwish and the last FC stay behind the pool (moving them would change the function)."""
    original = pooled_head("gap", "hardswish", opset=14)
    feeds = feeds_for(original)
    expected = run(original, feeds)[0]
    for mode in ("fcn", "exact"):
        plan, new = convert(original, mode=mode, classifier_before_pool=True)
        order = ops(new)
        assert order.index("GlobalAveragePool") < order.index("HardSwish")
        got = run(new, feeds)[0]
        assert got.shape == expected.shape  # (N, K): the scores are pooled before the HardSwish
        assert_close(expected, got)
        assert any("fc1 moved" in note and "HardSwish 'hidden' is not linear" in note for note in plan.notes)
    plan, _ = convert(original, mode="fcn", classifier_before_pool=True)
    assert plan.fcn.fully_convolutional and plan.fcn.score_maps == []


def test_classifier_before_pool_that_changes_nothing_says_so():
    original = torch_legacy(True)  # no global pool
    plan, new = convert(original, mode="fcn", classifier_before_pool=True)
    assert any("changed nothing" in note for note in plan.notes)
    assert "changed nothing" in plan.render_text()


def test_a_spatial_branch_beside_the_classifier_follows_the_input():
    """An output whose size follows the input (a segmentation-like branch beside the FC head)
    is predicted from its own geometry, so it does not block the proof."""
    net = Net(13, seed=14)
    feat = _trunk(net)
    seg = net.node("Conv", [feat, net.weight("seg_w", (2, 4, 1, 1)), net.weight("seg_b", (2,), 0.1)], name="seg")
    head = net.node(
        "Gemm",
        [net.node("Flatten", [feat], name="flatten"), net.weight("fc_w", (5, 64)), net.weight("fc_b", (5,), 0.1)],
        name="fc",
        transB=1,
    )
    original = net.model([("x", [1, 3, 12, 12])], [head, seg])
    plan, new = convert(original, mode="fcn")
    assert plan.fcn.fully_convolutional, plan.fcn
    head_map, seg_map = run(new, {"x": np.random.RandomState(0).randn(1, 3, 16, 14).astype(np.float32)})
    assert head_map.shape == (1, 5, 3, 2) and seg_map.shape == (1, 2, 6, 5)
