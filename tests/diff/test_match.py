"""Node matching: plan renames, names, derived names, positions; and the report order."""

from __future__ import annotations

from proto_rewrite.graph_view import Node
from proto_rewrite.graphdiff.match import match_nodes


def nodes(*specs: str) -> list[Node]:
    """ "name:Op" specs."""
    return [Node(*spec.split(":")) for spec in specs]


def pairs(a, b, renames=None):
    return [
        (None if p.a is None else a[p.a].name, None if p.b is None else b[p.b].name, p.matched_by)
        for p in match_nodes(a, b, renames)
    ]


def test_same_names_in_order():
    a = nodes("data:Input", "conv1:Convolution", "fc6:InnerProduct")
    b = nodes("data:Input", "conv1:Convolution", "fc6:Convolution")
    assert pairs(a, b) == [("data", "data", "name"), ("conv1", "conv1", "name"), ("fc6", "fc6", "name")]


def test_plan_renames_come_first():
    a = nodes("fc6:InnerProduct", "fc7:InnerProduct")
    b = nodes("fc6-conv:Convolution", "fc7:Convolution")
    assert pairs(a, b, {"fc6": "fc6-conv"}) == [("fc6", "fc6-conv", "plan"), ("fc7", "fc7", "name")]


def test_plan_rename_of_a_blob_does_not_hide_the_layer():
    # exact mode renames the blob fc6 to fc6_map; the layer fc6 keeps its name
    a = nodes("fc6:InnerProduct")
    b = nodes("fc6:Convolution", "fc6_flatten:Flatten")
    assert pairs(a, b, {"fc6": "fc6_map"}) == [("fc6", "fc6", "name"), (None, "fc6_flatten", None)]


def test_derived_names_need_a_compatible_op_and_one_candidate():
    a = nodes("fc6:InnerProduct", "fc7:InnerProduct", "fc8:InnerProduct")
    b = nodes(
        "fc6-conv:Convolution",
        "fc6-conv_flatten:Flatten",
        "fc7_conv:Convolution",
        "fc7.fcn:Convolution",
        "fc8_reshape:Reshape",
        "fc8-conv:Convolution",
    )
    found = pairs(a, b)
    assert ("fc6", "fc6-conv", "derived-name") in found
    assert ("fc8", "fc8-conv", "derived-name") in found
    # two candidates for fc7: neither is guessed by name; the position step pairs it in order
    assert ("fc7", "fc7_conv", "position") in found
    assert (None, "fc6-conv_flatten", None) in found and (None, "fc8_reshape", None) in found


def test_positions_pair_same_ops_within_a_gap_only():
    a = nodes("in:Input", "x1:Conv", "x2:Relu", "mid:Relu", "x3:Reshape", "out:Softmax")
    b = nodes("in:Input", "y1:Conv", "y2:Relu", "mid:Relu", "y3:Flatten", "out:Softmax")
    found = pairs(a, b)
    assert ("x1", "y1", "position") in found and ("x2", "y2", "position") in found
    assert ("x3", None, None) in found and (None, "y3", None) in found


def test_unnamed_fc_to_conv_by_position():
    a = nodes("in:Input", "/fc/Gemm:Gemm", "out:Softmax")
    b = nodes("in:Input", "/fc/Conv:Conv", "out:Softmax")
    assert ("/fc/Gemm", "/fc/Conv", "position") in pairs(a, b)


def test_order_follows_b_and_puts_removals_first():
    a = nodes("a:Input", "shape:Shape", "reshape:Reshape", "fc:Gemm", "relu:Relu")
    b = nodes("a:Input", "fc:Conv", "flat:Flatten", "relu:Relu")
    assert pairs(a, b) == [
        ("a", "a", "name"),
        ("shape", None, None),
        ("reshape", None, None),
        ("fc", "fc", "name"),
        (None, "flat", None),
        ("relu", "relu", "name"),
    ]


def test_every_node_appears_once_when_orders_differ():
    a = nodes("p:Relu", "q:Relu", "r:Relu", "gone:Tanh")
    b = nodes("r:Relu", "new:Sigmoid", "p:Relu", "q:Relu")
    found = pairs(a, b)
    assert sorted(x for x, _, _ in found if x) == ["gone", "p", "q", "r"]
    assert sorted(y for _, y, _ in found if y) == ["new", "p", "q", "r"]
