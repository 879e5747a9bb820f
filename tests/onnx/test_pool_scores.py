"""convert --pool-scores (ONNX): the pooled fcn model equals the original at its input size, and at a
larger size gives the average (or max) over the cells of the unpooled fcn model's score map
(probs-avg: the mean of the per-cell probabilities), always as (N, K)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnx_zoo as zoo
import pytest
from onnx import helper
from onnx_check import assert_close, convert, newest_opset, ops, run

from proto_rewrite.errors import UsageError
from proto_rewrite.onnx.model import OnnxModel, load_onnx, save_onnx
from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite
from proto_rewrite.rewrite_plan import POOL_SCORES, RewritePlan, Selection

VGG = Path(__file__).resolve().parents[2] / "samples" / "onnx" / "vgg_mini.onnx"
METHODS = list(POOL_SCORES)


def softmax(x: np.ndarray, axis: int = 1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def pooled_reference(scores: np.ndarray, method: str) -> np.ndarray:
    """What the pooled model with a final Softmax gives, from the unpooled (N, K, h, w) score map."""
    scores = scores.astype(np.float64)
    if method == "avg":
        return softmax(scores.mean(axis=(2, 3)))
    if method == "max":
        return softmax(scores.max(axis=(2, 3)))
    return softmax(scores, axis=1).mean(axis=(2, 3))


def vgg_proto(with_softmax: bool = True) -> onnx.ModelProto:
    """vgg_mini with a symbolic batch, and a Softmax 'prob' after fc3."""
    proto = load_onnx(VGG).to_proto()
    for value in (proto.graph.input[0], proto.graph.output[0]):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    if with_softmax:
        proto.graph.node.append(helper.make_node("Softmax", ["fc3"], ["prob"], name="prob", axis=1))
        proto.graph.output[0].name = "prob"
    return proto


def with_output(model, name: str) -> onnx.ModelProto:
    """The model giving out the tensor ``name`` (of unknown shape) instead of its outputs."""
    proto = model.to_proto() if isinstance(model, OnnxModel) else model
    elem = proto.graph.output[0].type.tensor_type.elem_type
    del proto.graph.output[:]
    proto.graph.output.append(helper.make_tensor_value_info(name, elem, None))
    return proto


def image(shape, seed: int, dtype=np.float32) -> np.ndarray:
    return np.random.RandomState(seed).standard_normal(shape).astype(dtype)


def saved(model, path: Path) -> bytes:
    save_onnx(model, path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def vgg():
    original = OnnxModel.from_proto(vgg_proto())
    built = {"original": original, "scores": with_output(convert(vgg_proto(False), mode="fcn")[1], "fc3")}
    for method in METHODS:
        built[method] = convert(original, mode="fcn", pool_scores=method)
    return built


@pytest.mark.parametrize("method", METHODS)
def test_pooled_model_equals_original_at_its_size(vgg, method):
    x = {"data": image((2, 3, 64, 64), 0)}
    want = run(vgg["original"], x)[0]
    got = run(vgg[method][1], x)[0]
    assert got.shape == want.shape == (2, 10)
    assert_close(want, got, method)


@pytest.mark.parametrize("method", METHODS)
def test_pooled_model_at_a_larger_size_pools_the_cells(vgg, method):
    x = {"data": image((2, 3, 96, 80), 1)}
    scores = run(vgg["scores"], x)[0]
    assert scores.shape == (2, 10, 3, 2)  # one cell per 64 x 64 window, 32 pixels apart
    got = run(vgg[method][1], x)[0]
    assert got.shape == (2, 10)
    assert_close(pooled_reference(scores, method).astype(np.float32), got, method)


@pytest.mark.parametrize("method", METHODS)
def test_outputs_keep_their_name_and_shape(vgg, method):
    original = vgg["original"].to_proto()
    plan, pooled = vgg[method]
    proto = pooled.to_proto()
    assert list(proto.graph.output) == list(original.graph.output)  # prob: (N, 10)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "data_height", "data_width"]
    assert [(r.name, r.kernel) for r in plan.rewrites] == [("fc1", (4, 4)), ("fc2", (1, 1)), ("fc3", (1, 1))]
    assert pooled.diagnostics == []


def test_plan_lists_the_inserted_nodes(vgg):
    inserted = {
        method: [
            (e.action, e.name, e.op, e.method) for e in vgg[method][0].edits if e.name.startswith(("fc3_", "prob"))
        ]
        for method in METHODS
    }
    assert inserted["avg"] == [
        ("insert", "fc3_pool", "GlobalAveragePool", "avg"),
        ("insert", "fc3_pool_flatten", "Flatten", None),
    ]
    assert inserted["max"] == [
        ("insert", "fc3_pool", "GlobalMaxPool", "max"),
        ("insert", "fc3_pool_flatten", "Flatten", None),
    ]
    assert inserted["probs-avg"] == [
        ("remove", "prob", "Softmax", None),
        ("insert", "prob", "Softmax", None),
        ("insert", "fc3_pool", "GlobalAveragePool", "avg"),
        ("insert", "fc3_pool_flatten", "Flatten", None),
    ]
    text = vgg["max"][0].render_text()
    assert "insert fc3_pool (GlobalMaxPool): global max pooling of the score map of Conv 'fc3'" in text
    assert "insert fc3_pool_flatten (Flatten): gives 'fc3' its original (N, 10) shape" in text


@pytest.mark.parametrize("method", METHODS)
def test_graph_after_the_last_conv(vgg, method):
    nodes = vgg[method][1].to_proto().graph.node
    tail = [(n.op_type, n.name, list(n.input)[:1], list(n.output)) for n in nodes[-4:]]
    pool = "GlobalMaxPool" if method == "max" else "GlobalAveragePool"
    if method == "probs-avg":
        assert tail == [
            ("Conv", "fc3", ["dropout2"], ["fc3_map"]),
            ("Softmax", "prob", ["fc3_map"], ["prob_map"]),
            (pool, "fc3_pool", ["prob_map"], ["prob_pooled"]),
            ("Flatten", "fc3_pool_flatten", ["prob_pooled"], ["prob"]),
        ]
        assert helper.get_attribute_value(nodes[-3].attribute[0]) == 1
    else:
        assert tail == [
            ("Conv", "fc3", ["dropout2"], ["fc3_map"]),
            (pool, "fc3_pool", ["fc3_map"], ["fc3_pooled"]),
            ("Flatten", "fc3_pool_flatten", ["fc3_pooled"], ["fc3"]),
            ("Softmax", "prob", ["fc3"], ["prob"]),
        ]


@pytest.mark.parametrize("method", METHODS)
def test_converting_again_changes_nothing(vgg, method, tmp_path):
    first = saved(vgg[method][1], tmp_path / "once.onnx")
    plan, twice = convert(load_onnx(tmp_path / "once.onnx"), mode="fcn", pool_scores=method)
    assert not plan.changes_anything, plan.render_text()
    assert saved(twice, tmp_path / "twice.onnx") == first


@pytest.mark.parametrize("method", METHODS)
def test_deterministic_and_through_json(vgg, method, tmp_path):
    model = vgg["original"]
    plan = plan_onnx_rewrite(model, mode="fcn", pool_scores=method)
    again = RewritePlan.from_dict(json.loads(plan.to_json()))
    outputs = [saved(apply_onnx_plan(model, p), tmp_path / f"{i}.onnx") for i, p in enumerate([plan, plan, again])]
    assert outputs[0] == outputs[1] == outputs[2] == saved(vgg[method][1], tmp_path / "fixture.onnx")


def test_hand_edited_pooling_is_refused(vgg):
    plan = RewritePlan.from_dict(vgg["avg"][0].to_dict())
    plan.edits = [e if e.method is None else type(e)(**{**e.__dict__, "method": "max"}) for e in plan.edits]
    with pytest.raises(UsageError, match="does not fit"):
        apply_onnx_plan(vgg["original"], plan)
    unpooled = plan_onnx_rewrite(vgg["original"], mode="fcn")
    assert not any(e.op.startswith("Global") for e in unpooled.edits)


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_exact_mode_is_refused(vgg, method):
    with pytest.raises(UsageError, match="needs mode fcn") as err:
        plan_onnx_rewrite(vgg["original"], mode="exact", pool_scores=method)
    assert "fcn" in err.value.hint


def test_unknown_method_is_refused(vgg):
    with pytest.raises(UsageError, match="unknown pool_scores 'mean'") as err:
        plan_onnx_rewrite(vgg["original"], pool_scores="mean")
    assert "probs-avg" in err.value.hint


def test_probs_avg_needs_a_softmax():
    bare = OnnxModel.from_proto(vgg_proto(with_softmax=False))
    with pytest.raises(UsageError, match="probs-avg needs a Softmax") as err:
        plan_onnx_rewrite(bare, pool_scores="probs-avg")
    assert err.value.location.layer == "fc3" and "a graph output" in err.value.message
    assert "pool_scores avg" in err.value.hint and "--pool-scores avg" in err.value.with_flags().hint
    _, pooled = convert(bare, pool_scores="max")  # the scores themselves are pooled
    x = {"data": image((1, 3, 96, 96), 2)}
    assert run(pooled, x)[0].shape == (1, 10)


def test_probs_avg_needs_the_softmax_over_the_classes():
    proto = vgg_proto()
    proto.graph.node[-1].attribute[0].i = 0  # a Softmax over the batch
    with pytest.raises(UsageError, match="read by Softmax 'prob'"):
        plan_onnx_rewrite(OnnxModel.from_proto(proto), pool_scores="probs-avg")


def test_pooled_scores_mixed_with_a_map_are_refused():
    """fc7's scores are added to fc6's activation, which fc7 reads and so stays a map."""
    net = zoo.Net(13)
    flat = net.node("Flatten", [zoo._features(net)], name="flatten", axis=1)
    h = net.node("Relu", [zoo._gemm(net, flat, 144, 8, "fc6")], name="relu6")
    out = net.node("Add", [h, zoo._gemm(net, h, 8, 8, "fc7")], name="residual")
    model = OnnxModel.from_proto(net.model([("x", zoo.IN_SHAPE)], [out]))
    with pytest.raises(UsageError, match="Add 'residual'") as err:
        plan_onnx_rewrite(model, pool_scores="avg")
    assert err.value.location.layer == "residual"
    assert plan_onnx_rewrite(model).rewrites  # without pooling it converts


# -- other graphs -----------------------------------------------------------------------------

OPSETS = [11, 13, newest_opset()]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("opset", OPSETS)
def test_softmax_at_every_opset(opset, method):
    """Before opset 13 Softmax flattens the trailing axes: probs-avg goes channels-last for it."""
    original = zoo.activations(opset, np.float32)
    plan, pooled = convert(original, pool_scores=method)
    x = {"x": image((2, 3, 8, 8), 3)}
    assert_close(run(original, x)[0], run(pooled, x)[0], "original size")
    scores = run(with_output(convert(original)[1], "fc7_out"), {"x": image((2, 3, 11, 12), 4)})[0]
    assert scores.shape == (2, 5, 4, 5)
    got = run(pooled, {"x": image((2, 3, 11, 12), 4)})[0]
    assert_close(pooled_reference(scores, method).astype(np.float32), got, "larger size")
    transposes = [e.name for e in plan.edits if e.op == "Transpose"]
    assert transposes == (["fc7_to_nhwc", "fc7_to_nchw"] if method == "probs-avg" and opset < 13 else [])
    assert ops(pooled).count("Softmax") == 1 and "Flatten" in ops(pooled)


@pytest.mark.parametrize("method", METHODS)
def test_float16(method):
    original = zoo.activations(13, np.float16)
    _, pooled = convert(original, pool_scores=method)
    x = {"x": image((2, 3, 8, 8), 5, np.float16)}
    assert_close(run(original, x)[0], run(pooled, x)[0], "original size")
    larger = {"x": image((2, 3, 11, 12), 6, np.float16)}
    scores = run(with_output(convert(original)[1], "fc7_out"), larger)[0]
    got = run(pooled, larger)[0]
    assert got.dtype == np.float16 and got.shape == (2, 5)
    assert_close(pooled_reference(scores, method).astype(np.float16), got, "larger size")


def test_only_the_chain_end_is_pooled():
    """fc6's activation is a graph output (it stays a map); fc7's scores are pooled, so the
    ArgMax reads (N, 5) as it did, with no Flatten in front of it."""
    original = zoo.two_outputs(13, np.float32)
    plan, pooled = convert(original, pool_scores="max")
    assert [e.name for e in plan.edits if e.action == "insert"] == ["fc7_pool", "fc7_pool_flatten"]
    x = {"x": image((2, 3, 11, 12), 7)}
    embedding, scores, label = run(pooled, x)
    assert embedding.shape == (2, 8, 4, 5) and scores.shape == (2, 5)
    maps = run(with_output(convert(original)[1], "fc7_out"), x)[0]
    assert_close(maps.max(axis=(2, 3)), scores)
    np.testing.assert_array_equal(label, scores.argmax(axis=1))


def test_an_fc_left_out_reads_the_pooled_vector():
    """With fc7 excluded, fc6 ends the chain: the Gemm fc7 gets (N, 8) at any input size."""
    original = zoo.flatten_gemm(13, np.float32)
    plan, pooled = convert(original, selection=Selection(exclude=frozenset({"fc7"})), pool_scores="avg")
    assert [r.name for r in plan.rewrites] == ["fc6"] and "Gemm" in ops(pooled)
    x = {"x": image((2, 3, 8, 8), 8)}
    assert_close(run(original, x)[0], run(pooled, x)[0])
    assert run(pooled, {"x": image((2, 3, 12, 10), 9)})[0].shape == (2, 5)
    assert pooled.diagnostics == []


def test_classifier_before_pool_then_avg_is_the_original_at_every_size():
    """GlobalAveragePool -> FC, with the FC moved before the pool and avg pooling after it."""
    original = zoo.gap_gemm(13, np.float32)
    _, pooled = convert(original, classifier_before_pool=True, pool_scores="avg")
    assert ops(pooled)[-3:] == ["Conv", "GlobalAveragePool", "Flatten"]
    resizable = onnx.ModelProto()
    resizable.CopyFrom(original)
    for dim, name in zip(resizable.graph.input[0].type.tensor_type.shape.dim[2:], ("H", "W")):
        dim.dim_param = name
    x = {"x": image((2, 3, 13, 9), 10)}
    assert_close(run(resizable, x)[0], run(pooled, x)[0])
