"""Caffe diffs through the library (``pr.diff``): CaffeNet against its fcn conversion (structure,
weight relations, costs), the samples with weights, renames with and without the plan, exact
mode, the text diff of the prototxts, refusals. The command line's own part is test_diff_cli.py."""

from __future__ import annotations

import re

import pytest
from corpus import CAFFE_DATA, ROOT

import proto_rewrite as pr
from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions, apply_caffe_plan, plan_caffe_rewrite
from proto_rewrite.caffe.init_weights import random_weights
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.caffe.prototxt import parse_net_text
from proto_rewrite.caffe.shapes import infer_shapes
from proto_rewrite.caffe.view import caffe_graph
from proto_rewrite.errors import EXIT_BAD_INPUT, ProtoRewriteError, UsageError
from proto_rewrite.graphdiff.compare import diff_graphs
from proto_rewrite.graphdiff.text import render_text

CAFFENET = CAFFE_DATA / "bvlc_reference_caffenet.prototxt"
MINI = ROOT / "samples" / "caffenet_mini" / "caffenet_mini.prototxt"
VGG = ROOT / "samples" / "onnx" / "vgg_mini.onnx"
FCS = {"fc6": [6, 6], "fc7": [1, 1], "fc8": [1, 1]}
NO_WEIGHTS = {"weights_a": None, "weights_b": None, "compare_values": False}  # what --no-weights asks for


def by_name(report: dict) -> dict:
    return {node["name"]: node for node in report["nodes"]}


def weight(node: dict, role: str) -> dict:
    return next(w for w in node["weights"] if w["role"] == role)


@pytest.fixture(scope="module")
def caffenet_fcn(tmp_path_factory, convert_caffe):
    folder = tmp_path_factory.mktemp("caffenet")
    prototxt, _, _ = convert_caffe(CAFFENET, folder, "caffenet_fcn")
    return prototxt


def test_caffenet_structure_against_its_fcn_conversion(caffenet_fcn, check_schema):
    changes = pr.diff(CAFFENET, caffenet_fcn, **NO_WEIGHTS)
    assert not changes.equal
    report = check_schema(changes.to_dict())
    nodes = by_name(report)
    changed = {name for name, node in nodes.items() if node["status"] == "changed"}
    assert changed == set(FCS)
    assert report["counts"] == {"changed": 3, "removed": 0, "added": 0, "unchanged": len(nodes) - 3}
    assert report["compared_values"] is False
    for name, kernel in FCS.items():
        node = nodes[name]
        assert (node["a"]["op"], node["b"]["op"]) == ("InnerProduct", "Convolution")
        assert node["b"]["attributes"]["kernel"] == kernel
        assert {"field": "kernel", "a": None, "b": kernel, "status": "added"} in node["attributes"]
        assert node["changes"] == [{"field": "op", "a": "InnerProduct", "b": "Convolution", "status": "changed"}]
        before, after = weight(node, "weight")["a"]["shape"], weight(node, "weight")["b"]["shape"]
        assert after[:2] == [before[0], before[1] // (kernel[0] * kernel[1])] and after[2:] == kernel
        assert weight(node, "weight")["relation"]["kind"] == "unknown"
        assert node["a"]["parameters"] == node["b"]["parameters"] and node["a"]["macs"] == node["b"]["macs"]
    assert weight(nodes["fc6"], "weight")["a"]["shape"] == [4096, 9216]
    assert weight(nodes["fc6"], "weight")["b"]["shape"] == [4096, 256, 6, 6]
    assert nodes["fc6"]["a"]["macs"] == 10 * 4096 * 9216  # batch 10 as declared
    totals = report["totals"]
    assert totals["parameters"]["a"] == totals["parameters"]["b"] == 60_965_224
    assert totals["macs"]["a"] == totals["macs"]["b"] > 7_000_000_000
    assert report["io"] == [{"field": "output prob", "a": [10, 1000], "b": [10, 1000, 1, 1], "status": "changed"}]


def test_caffenet_text_report(caffenet_fcn):
    changes = pr.diff(CAFFENET, caffenet_fcn, **NO_WEIGHTS)
    out = changes.render_text()
    assert not changes.equal
    headers = [line for line in out.splitlines() if re.match(r"[-+~] \S", line)]
    assert headers == [
        "~ output prob: 10x1000 -> 10x1000x1x1",
        "~ fc6 (InnerProduct -> Convolution)",
        "~ fc7 (InnerProduct -> Convolution)",
        "~ fc8 (InnerProduct -> Convolution)",
    ]
    assert "+     kernel: 6x6, stride: 1x1, pad: 0x0, dilation: 1x1, group: 1" in out
    assert "~     weight 4096x9216 -> 4096x256x6x6: values not compared (no weights read)" in out
    assert "  21 unchanged: data, conv1, relu1" in out
    assert "\x1b[" not in out  # no colour unless asked for
    assert "different: 3 changed, 0 removed, 0 added, 21 unchanged (matched 24 by name)" in out


@pytest.fixture(scope="module")
def caffenet_random():
    """CaffeNet with random weights (60M parameters, once per module), and its fcn conversion, in memory."""
    model = load_caffe(CAFFENET, weights=None)
    model.weights = random_weights(model.net, model.shapes, seed=3)
    converted = apply_caffe_plan(model, plan_caffe_rewrite(model))
    converted.shapes = infer_shapes(converted.net)
    return model, converted


def test_caffenet_weights_keep_their_bytes(caffenet_random):
    model, converted = caffenet_random
    diff = diff_graphs(caffe_graph(model), caffe_graph(converted))
    report = diff.to_dict()
    nodes = by_name(report)
    for name in FCS:
        assert weight(nodes[name], "weight")["relation"]["kind"] == "reshaped"
        assert weight(nodes[name], "bias")["relation"]["kind"] == "identical"
    for name, node in nodes.items():
        if name not in FCS:
            assert node["status"] == "unchanged", name
            assert all(w["relation"]["kind"] == "identical" for w in node["weights"]), name
    text = render_text(diff)
    assert "~     weight 4096x9216 -> 4096x256x6x6: same bytes, new shape" in text
    assert "      bias 4096: identical" in text


def test_a_different_weight_is_reported_with_its_difference(caffenet_random):
    model, converted = caffenet_random
    changed = dict(converted.weights)
    bias = changed["fc7"][1].copy()
    bias[5] += 0.5
    changed["fc7"] = [changed["fc7"][0], bias]
    converted_changed = type(converted)(converted.net, changed, shapes=converted.shapes)
    nodes = by_name(diff_graphs(caffe_graph(model), caffe_graph(converted_changed)).to_dict())
    relation = weight(nodes["fc7"], "bias")["relation"]
    assert relation["kind"] == "different" and relation["max_abs_diff"] == pytest.approx(0.5)


def test_sample_with_weights(mini_fcn, check_schema):
    prototxt, caffemodel = mini_fcn
    changes = pr.diff(MINI, prototxt)  # the weights beside each prototxt
    report = check_schema(changes.to_dict())
    assert not changes.equal and report["counts"] == {"changed": 3, "removed": 0, "added": 0, "unchanged": 21}
    nodes = by_name(report)
    assert weight(nodes["fc6"], "weight")["relation"]["text"] == "same bytes, new shape"
    assert nodes["fc6"]["b"]["attributes"]["kernel"] == [3, 3]
    assert nodes["fc6"]["a"]["weights"][0]["dtype"] == "float32"
    # explicit weights
    explicit = pr.diff(MINI, prototxt, weights_a=MINI.with_suffix(".caffemodel"), weights_b=caffemodel)
    assert not explicit.equal
    assert "~     weight 256x576 -> 256x64x3x3: same bytes, new shape" in explicit.render_text()


def test_a_model_against_itself_is_equal(check_schema):
    for model, options in ((MINI, {}), (CAFFENET, NO_WEIGHTS)):
        changes = pr.diff(model, model, **options)
        report = check_schema(changes.to_dict())
        assert changes.equal and report["equal"] and report["counts"]["changed"] == 0
        assert report["counts"]["unchanged"] == report["a"]["nodes"] and not report["io"]
    assert pr.diff(MINI, MINI).render_text().splitlines()[-3].startswith("equal: 0 changed")


def test_renamed_layers_matched_by_plan_or_by_derived_name(mini_renamed):
    prototxt, plan_path = mini_renamed
    for plan, how in ((None, "derived-name"), (plan_path, "plan")):
        changes = pr.diff(MINI, prototxt, plan=plan)
        report = changes.to_dict()
        nodes = by_name(report)
        assert not changes.equal and report["matched_by"][how] == 3
        node = nodes["fc6-conv"]
        assert node["matched_by"] == how and node["a"]["name"] == "fc6"
        assert {"field": "name", "a": "fc6", "b": "fc6-conv", "status": "changed"} in node["changes"]
        assert weight(node, "bias")["relation"]["kind"] == "identical" and not weight(node, "bias")["changed"]
        assert [n["name"] for n in report["nodes"] if n["status"] == "added"] == ["fc8-conv_flatten"]
        assert not [n for n in report["nodes"] if n["status"] == "removed"]
        assert nodes["relu6"]["status"] == "changed"  # it now reads and writes fc6-conv
    assert "+ fc8-conv_flatten (Flatten): fc8-conv -> fc8" in pr.diff(MINI, prototxt, plan=plan_path).render_text()


TRANSPOSED_FC = """
name: "t"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "ip" type: "InnerProduct" bottom: "conv" top: "ip"
        inner_product_param { num_output: 5 transpose: true } }
"""


def test_transposed_inner_product(tmp_path):
    net = parse_net_text(TRANSPOSED_FC, "t.prototxt")
    path = tmp_path / "t.prototxt"
    path.write_text(TRANSPOSED_FC)
    model = load_caffe(path, weights=None)
    model.weights = random_weights(net, infer_shapes(net), seed=1)
    converted = apply_caffe_plan(model, plan_caffe_rewrite(model, CaffeRewriteOptions()))
    converted.shapes = infer_shapes(converted.net)
    node = by_name(diff_graphs(caffe_graph(model), caffe_graph(converted)).to_dict())["ip"]
    assert weight(node, "weight")["a"]["shape"] == [64, 5] and weight(node, "weight")["b"]["shape"] == [5, 4, 4, 4]
    assert weight(node, "weight")["relation"]["kind"] == "transposed"
    assert {"field": "transpose", "a": True, "b": None, "status": "removed"} in node["attributes"]
    assert node["b"]["attributes"]["pad"] == [0, 0]
    assert node["a"]["macs"] == node["b"]["macs"] == 2 * 5 * 64


def test_text_diff_of_the_prototxts(caffenet_fcn, with_text_diff):
    changes = with_text_diff(pr.diff(CAFFENET, caffenet_fcn, **NO_WEIGHTS))
    out = changes.render_text()
    assert not changes.equal
    unified = out[out.rindex("\n--- ") :]  # after the report, which starts with its own ---/+++ lines
    unified = unified[unified.index("\n@@") + 1 :]
    assert '-  type: "InnerProduct"' in unified and '+  type: "Convolution"' in unified
    assert "+    kernel_size: 6" in unified
    assert "+    kernel_size: 6" in changes.to_dict()["text_diff"]


def test_all_lists_unchanged_layers_and_colour_on_request(caffenet_fcn):
    changes = pr.diff(CAFFENET, caffenet_fcn, **NO_WEIGHTS)
    out = changes.render_text(show_all=True, colour=True)
    assert not changes.equal
    assert "  conv1 (Convolution)" in out and "unchanged:" not in out
    assert "\x1b[33m~ fc6 (InnerProduct -> Convolution)\x1b[0m" in out


def test_legacy_prototxt_is_compared_after_its_upgrade():
    # caffenet_v0 is CaffeNet in the V0 format: upgraded in memory, only its input layer's name differs
    changes = pr.diff(CAFFE_DATA / "caffenet_v0.prototxt", CAFFENET)
    report = changes.to_dict()
    assert not changes.equal and report["counts"]["changed"] == 1 and report["counts"]["unchanged"] == 23
    (node,) = [n for n in report["nodes"] if n["status"] == "changed"]
    assert node["matched_by"] == "position" and node["changes"] == [
        {"field": "name", "a": "input", "b": "data", "status": "changed"}
    ]


def test_costs_follow_the_declared_input():
    changes = pr.diff(MINI, MINI, input_shapes={"data": [2, 3, 115, 115]})
    report = changes.to_dict()
    single = pr.diff(MINI, MINI).to_dict()
    assert changes.equal and report["totals"]["macs"]["a"] == 2 * single["totals"]["macs"]["a"]
    assert report["totals"]["parameters"] == single["totals"]["parameters"]
    conv1 = next(n for n in report["nodes"] if n["name"] == "conv1")
    assert conv1["a"]["macs"] == 2 * 32 * 27 * 27 * 3 * 11 * 11


def test_a_caffe_model_and_an_onnx_model_are_refused():
    with pytest.raises(UsageError, match="cannot diff a caffe model") as refused:
        pr.diff(MINI, VGG)
    assert refused.value.hint


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "not a proto-rewrite plan"),
        ('{"plan_version": 1}', "not a proto-rewrite plan"),
        ('{"plan_version": 99}', "unsupported plan version"),
    ],
)
def test_bad_plan_files_are_refused(tmp_path, content, message):
    plan = tmp_path / "plan.json"
    plan.write_text(content)
    with pytest.raises(ProtoRewriteError, match=message) as refused:
        pr.diff(MINI, MINI, plan=plan)
    assert refused.value.exit_code == EXIT_BAD_INPUT
