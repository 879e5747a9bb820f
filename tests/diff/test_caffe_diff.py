"""Caffe diffs: CaffeNet against its fcn conversion (structure, weight relations, costs), the
samples with weights through the CLI, renames with and without the plan, exact mode, --text."""

from __future__ import annotations

import json
import re

import pytest
from corpus import CAFFE_DATA, ROOT

from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions, apply_caffe_plan, plan_caffe_rewrite
from proto_rewrite.caffe.init_weights import random_weights
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.caffe.prototxt import parse_net_text
from proto_rewrite.caffe.shapes import infer_shapes
from proto_rewrite.caffe.view import caffe_graph
from proto_rewrite.graphdiff.compare import diff_graphs
from proto_rewrite.graphdiff.text import render_text

CAFFENET = CAFFE_DATA / "bvlc_reference_caffenet.prototxt"
MINI = ROOT / "samples" / "caffenet_mini" / "caffenet_mini.prototxt"
FCS = {"fc6": [6, 6], "fc7": [1, 1], "fc8": [1, 1]}


def by_name(report: dict) -> dict:
    return {node["name"]: node for node in report["nodes"]}


def weight(node: dict, role: str) -> dict:
    return next(w for w in node["weights"] if w["role"] == role)


@pytest.fixture(scope="module")
def caffenet_fcn(tmp_path_factory, convert_caffe):
    folder = tmp_path_factory.mktemp("caffenet")
    prototxt, _, _ = convert_caffe(CAFFENET, folder, "caffenet_fcn")
    return prototxt


def test_caffenet_structure_against_its_fcn_conversion(cli, caffenet_fcn, check_schema):
    code, out, err = cli("diff", CAFFENET, caffenet_fcn, "--no-weights", "--format", "json")
    assert code == 1, err
    report = check_schema(json.loads(out))
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


def test_caffenet_text_report(cli, caffenet_fcn):
    code, out, _ = cli("diff", CAFFENET, caffenet_fcn, "--no-weights")
    assert code == 1
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
    assert "\x1b[" not in out  # no colour off a terminal
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


def test_sample_with_weights_through_the_cli(cli, tmp_path, check_schema, convert_caffe):
    prototxt, caffemodel, _ = convert_caffe(MINI, tmp_path, "mini_fcn", weights=MINI.with_suffix(".caffemodel"))
    code, out, err = cli("diff", MINI, prototxt, "--format", "json")
    assert code == 1 and "DIFFERENT: 3 changed, 0 removed, 0 added, 21 unchanged" in err
    nodes = by_name(check_schema(json.loads(out)))
    assert weight(nodes["fc6"], "weight")["relation"]["text"] == "same bytes, new shape"
    assert nodes["fc6"]["b"]["attributes"]["kernel"] == [3, 3]
    assert nodes["fc6"]["a"]["weights"][0]["dtype"] == "float32"
    # explicit weights and -o
    report = tmp_path / "diff.txt"
    code, out, _ = cli(
        "diff", MINI, prototxt, "--weights-a", MINI.with_suffix(".caffemodel"), "--weights-b", caffemodel, "-o", report
    )
    assert code == 1 and out == ""
    assert "~     weight 256x576 -> 256x64x3x3: same bytes, new shape" in report.read_text()


def test_a_model_against_itself_is_equal(cli, check_schema):
    for args in ([MINI, MINI], [CAFFENET, CAFFENET, "--no-weights"]):
        code, out, err = cli("diff", *args, "--format", "json")
        report = check_schema(json.loads(out))
        assert code == 0 and report["equal"] and report["counts"]["changed"] == 0 and "EQUAL" in err
        assert report["counts"]["unchanged"] == report["a"]["nodes"] and not report["io"]
    code, out, _ = cli("diff", MINI, MINI)
    assert code == 0 and out.splitlines()[-3].startswith("equal: 0 changed")


def test_renamed_layers_matched_by_plan_or_by_derived_name(cli, tmp_path, convert_caffe):
    prototxt, _, plan = convert_caffe(
        MINI, tmp_path, "mini_exact", weights=MINI.with_suffix(".caffemodel"), mode="exact", rename="-conv"
    )
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(plan.to_json())
    for extra, how in (([], "derived-name"), (["--plan", plan_path], "plan")):
        code, out, _ = cli("diff", MINI, prototxt, "--format", "json", *extra)
        report = json.loads(out)
        nodes = by_name(report)
        assert code == 1 and report["matched_by"][how] == 3
        node = nodes["fc6-conv"]
        assert node["matched_by"] == how and node["a"]["name"] == "fc6"
        assert {"field": "name", "a": "fc6", "b": "fc6-conv", "status": "changed"} in node["changes"]
        assert weight(node, "bias")["relation"]["kind"] == "identical" and not weight(node, "bias")["changed"]
        assert [n["name"] for n in report["nodes"] if n["status"] == "added"] == ["fc8-conv_flatten"]
        assert not [n for n in report["nodes"] if n["status"] == "removed"]
        assert nodes["relu6"]["status"] == "changed"  # it now reads and writes fc6-conv
    code, out, _ = cli("diff", MINI, prototxt, "--plan", plan_path)
    assert "+ fc8-conv_flatten (Flatten): fc8-conv -> fc8" in out


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


def test_text_option_adds_the_prototxt_diff(cli, caffenet_fcn):
    code, out, _ = cli("diff", CAFFENET, caffenet_fcn, "--no-weights", "--text")
    assert code == 1
    unified = out[out.rindex("\n--- ") :]  # after the report, which starts with its own ---/+++ lines
    unified = unified[unified.index("\n@@") + 1 :]
    assert '-  type: "InnerProduct"' in unified and '+  type: "Convolution"' in unified
    assert "+    kernel_size: 6" in unified
    code, out, _ = cli("diff", CAFFENET, caffenet_fcn, "--no-weights", "--text", "--format", "json")
    assert "+    kernel_size: 6" in json.loads(out)["text_diff"]


def test_all_lists_unchanged_layers_and_colour_on_request(cli, caffenet_fcn):
    code, out, _ = cli("diff", CAFFENET, caffenet_fcn, "--no-weights", "--all", "--color", "always")
    assert code == 1
    assert "  conv1 (Convolution)" in out and "unchanged:" not in out
    assert "\x1b[33m~ fc6 (InnerProduct -> Convolution)\x1b[0m" in out


def test_legacy_prototxt_is_compared_after_its_upgrade(cli):
    # caffenet_v0 is CaffeNet in the V0 format: upgraded in memory, only its input layer's name differs
    code, out, _ = cli("diff", CAFFE_DATA / "caffenet_v0.prototxt", CAFFENET, "--format", "json")
    report = json.loads(out)
    assert code == 1 and report["counts"]["changed"] == 1 and report["counts"]["unchanged"] == 23
    (node,) = [n for n in report["nodes"] if n["status"] == "changed"]
    assert node["matched_by"] == "position" and node["changes"] == [
        {"field": "name", "a": "input", "b": "data", "status": "changed"}
    ]


def test_costs_follow_the_declared_input(cli):
    code, out, _ = cli("diff", MINI, MINI, "--format", "json", "--input-shape", "data:2,3,115,115")
    report = json.loads(out)
    single = json.loads(cli("diff", MINI, MINI, "--format", "json")[1])
    assert code == 0 and report["totals"]["macs"]["a"] == 2 * single["totals"]["macs"]["a"]
    assert report["totals"]["parameters"] == single["totals"]["parameters"]
    conv1 = next(n for n in report["nodes"] if n["name"] == "conv1")
    assert conv1["a"]["macs"] == 2 * 32 * 27 * 27 * 3 * 11 * 11
