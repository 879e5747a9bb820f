"""ONNX diffs through the library (``pr.diff``): the three FC forms (Gemm transB=0, Gemm with
alpha/beta, MatMul + Add) against their conversion, the VGG sample, renamed nodes matched by
position, a model with itself, the text diff of the printed graphs. The command line's own part
is test_diff_cli.py."""

from __future__ import annotations

import onnx
import pytest
from corpus import ROOT

import proto_rewrite as pr
from proto_rewrite.errors import UsageError

VGG = ROOT / "samples" / "onnx" / "vgg_mini.onnx"
NO_WEIGHTS = {"weights_a": None, "weights_b": None, "compare_values": False}  # what --no-weights asks for


def by_name(report: dict) -> dict:
    return {node["name"]: node for node in report["nodes"]}


def relation(node: dict, role: str) -> dict:
    return next(w for w in node["weights"] if w["role"] == role)["relation"]


def test_fc_forms_against_their_conversion(onnx_pair, check_schema):
    before, after, _ = onnx_pair
    changes = pr.diff(before, after)
    assert not changes.equal
    report = check_schema(changes.to_dict())
    nodes = by_name(report)
    status = {name: node["status"] for name, node in nodes.items()}
    assert status == {
        "c1": "unchanged",
        "r1": "unchanged",
        "flatten": "removed",
        "fc1": "changed",
        "r2": "unchanged",
        "fc2": "changed",
        "r3": "unchanged",
        "fc3": "changed",
        "fc3_add": "removed",
    }
    assert [n["name"] for n in report["nodes"]] == ["c1", "r1", "flatten", "fc1", "r2", "fc2", "r3", "fc3", "fc3_add"]
    # Gemm transB=0: the (K, M) weight is transposed into the kernel
    assert relation(nodes["fc1"], "weight")["kind"] == "transposed"
    assert relation(nodes["fc1"], "bias")["kind"] == "identical"
    assert nodes["fc1"]["b"]["attributes"]["kernel"] == [3, 3]
    assert {"field": "inputs", "a": ["flat"], "b": ["r1"], "status": "changed"} in nodes["fc1"]["changes"]
    # Gemm alpha 0.5, beta 2: folded into the weights
    weight, bias = relation(nodes["fc2"], "weight"), relation(nodes["fc2"], "bias")
    assert (weight["kind"], weight["factor"], weight["layout"]) == ("scaled", 0.5, "same")
    assert (bias["kind"], bias["factor"]) == ("scaled", 2.0)
    # MatMul + Add: the weight is transposed, the Add's bias moves into the Conv
    assert relation(nodes["fc3"], "weight")["kind"] == "transposed"
    moved = next(w for w in nodes["fc3"]["weights"] if w["role"] == "bias")
    assert moved["from_node"] == "fc3_add" and moved["relation"]["kind"] == "identical"
    assert nodes["fc3"]["a"]["op"] == "MatMul" and nodes["fc3"]["b"]["op"] == "Conv"
    # the input became symbolic; the costs are still at the declared 1x4x3x3
    assert {"field": "input x", "a": [1, 4, 3, 3], "b": [1, 4, "x_height", "x_width"], "status": "changed"} in report[
        "io"
    ]
    totals = report["totals"]
    assert totals["parameters"]["a"] == totals["parameters"]["b"]
    assert totals["macs"]["a"] == totals["macs"]["b"] == 4 * 8 * 9 + 72 * 16 + 16 * 12 + 12 * 5


def test_fc_forms_text(onnx_pair):
    before, after, _ = onnx_pair
    changes = pr.diff(before, after)
    out = changes.render_text()
    assert not changes.equal
    for line in (
        "- flatten (Flatten): r1 -> flat",
        "~ fc1 (Gemm -> Conv)",
        "~     weight 72x16 -> 16x8x3x3: transposed",
        "-     alpha: 0.5, beta: 2.0, transB: 1",
        "~     weight 12x16 -> 12x16x1x1: scaled x0.5",
        "~     bias 12: scaled x2",
        "~     bias 5 (from fc3_add): identical",
        "~ input x: 1x4x3x3 -> (1, 4, x_height, x_width)",
        "  4 unchanged: c1, r1, r2, r3",
    ):
        assert line in out, line


def test_plan_of_the_conversion_and_no_weights(onnx_pair, check_schema):
    before, after, plan = onnx_pair
    changes = pr.diff(before, after, plan=plan, **NO_WEIGHTS)
    report = check_schema(changes.to_dict())
    assert not changes.equal and report["compared_values"] is False
    assert relation(by_name(report)["fc1"], "weight")["kind"] == "unknown"


def test_renamed_nodes_are_matched_by_position(onnx_pair, tmp_path):
    before, after, _ = onnx_pair
    model = onnx.load(str(after))
    for node in model.graph.node:
        if node.name == "fc1":
            node.name = "/classifier/fc1/Conv"
    renamed = tmp_path / "renamed.onnx"
    onnx.save(model, str(renamed))
    changes = pr.diff(before, renamed)
    node = by_name(changes.to_dict())["/classifier/fc1/Conv"]
    assert not changes.equal and node["matched_by"] == "position" and node["a"]["name"] == "fc1"
    assert relation(node, "weight")["kind"] == "transposed"


def test_vgg_sample_against_its_conversion(tmp_path, check_schema):
    from proto_rewrite.onnx.model import load_onnx, save_onnx
    from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite

    model = load_onnx(VGG)
    converted = tmp_path / "vgg_fcn.onnx"
    save_onnx(apply_onnx_plan(model, plan_onnx_rewrite(model)), converted)
    changes = pr.diff(VGG, converted)
    report = check_schema(changes.to_dict())
    assert not changes.equal
    assert {n["name"] for n in report["nodes"] if n["status"] == "changed"} == {"fc1", "fc2", "fc3"}
    assert {n["name"] for n in report["nodes"] if n["status"] == "removed"} == {
        "view1.Shape",
        "view1.Gather",
        "view1.Unsqueeze",
        "view1.Concat",
        "view1.Reshape",
    }
    assert all(relation(n, "weight")["kind"] == "reshaped" for n in report["nodes"] if n["status"] == "changed")
    assert report["totals"]["macs"]["a"] == report["totals"]["macs"]["b"] is not None


def test_a_model_against_itself(check_schema):
    changes = pr.diff(VGG, VGG)
    report = check_schema(changes.to_dict())
    assert changes.equal and report["equal"]
    assert report["totals"]["macs"]["a"] is not None  # the batch lost by the view chain is the input's


@pytest.mark.parametrize("option", ["weights_a", "weights_b"])
def test_weights_options_are_for_caffe(onnx_pair, option):
    before, after, _ = onnx_pair
    with pytest.raises(UsageError, match="Caffe models only"):
        pr.diff(before, after, **{option: "x.caffemodel"})


def test_text_diff_of_the_printed_graphs(onnx_pair, with_text_diff):
    before, after, _ = onnx_pair
    changes = with_text_diff(pr.diff(before, after))
    out = changes.render_text()
    unified = out[out.rindex("\n--- ") + 1 :].splitlines()
    assert not changes.equal and unified[1].startswith("+++ ")
    assert any(line.startswith("-") and "Gemm" in line for line in unified)
    assert any(line.startswith("+") and "Conv <kernel_shape" in line for line in unified)
    assert any(line.startswith("-") and "Flatten" in line for line in unified)
