"""The diff of two graphs: matched nodes compared field by field, weights related, costs summed.

``diff_graphs(a, b)`` returns a :class:`GraphDiff`; ``to_dict`` gives the JSON document that
``schemas/diff.schema.json`` describes. A matched node is *changed* when its name, op, data
inputs, outputs, attributes or weights differ; a weight differs unless its relation is
``identical`` (or, when the values were not read, its shape and dtype are the same). Output
shapes and costs are reported but are not changes by themselves: they follow from the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proto_rewrite import graph_view
from proto_rewrite.graph_view import Graph, Node, Weight, shape_list, total_parameters
from proto_rewrite.graphdiff import cost
from proto_rewrite.graphdiff.match import match_nodes
from proto_rewrite.graphdiff.status import ADDED_NODE, CHANGED, REMOVED_NODE, STATUSES, UNCHANGED
from proto_rewrite.graphdiff.weights import ADDED, IDENTICAL, REMOVED, UNKNOWN, Relation, relate

SCHEMA_VERSION = 1


@dataclass
class ValueChange:
    field: str  # "name", "op", "inputs", "outputs", or an attribute's name
    a: object = None
    b: object = None
    status: str = CHANGED  # "changed", "removed" (only in A), "added" (only in B)

    def to_dict(self) -> dict:
        return {"field": self.field, "a": self.a, "b": self.b, "status": self.status}


@dataclass
class WeightDiff:
    role: str
    a: Weight | None
    b: Weight | None
    relation: Relation
    from_node: str | None = None  # the node of A that held ``a``, when not this node's match

    @property
    def changed(self) -> bool:
        if self.a is None or self.b is None:
            return True
        if self.relation.kind == UNKNOWN:
            return self.a.shape != self.b.shape or self.a.dtype != self.b.dtype
        renamed = self.a.name != self.b.name and (self.a.own_name or self.b.own_name)
        return self.relation.kind != IDENTICAL or renamed or self.from_node is not None

    def to_dict(self) -> dict:
        return {
            "role": self.role,
            "a": None if self.a is None else self.a.to_dict(),
            "b": None if self.b is None else self.b.to_dict(),
            "relation": self.relation.to_dict(),
            "changed": self.changed,
            "from_node": self.from_node,
        }


@dataclass
class NodeDiff:
    status: str
    matched_by: str | None
    a: Node | None
    b: Node | None
    fields: list[ValueChange] = field(default_factory=list)  # name, op, inputs, outputs
    attributes: list[ValueChange] = field(default_factory=list)
    weights: list[WeightDiff] = field(default_factory=list)
    parameters: tuple[int | None, int | None] = (None, None)
    macs: tuple[int | None, int | None] = (None, None)

    @property
    def name(self) -> str:
        return (self.b or self.a).name

    def to_dict(self) -> dict:
        return {
            "status": self.status,
            "matched_by": self.matched_by,
            "name": self.name,
            "a": _node_dict(self.a, self.parameters[0], self.macs[0]),
            "b": _node_dict(self.b, self.parameters[1], self.macs[1]),
            "changes": [c.to_dict() for c in self.fields],
            "attributes": [c.to_dict() for c in self.attributes],
            "weights": [w.to_dict() for w in self.weights],
        }


@dataclass
class GraphDiff:
    a: Graph
    b: Graph
    nodes: list[NodeDiff]
    io: list[ValueChange]  # changed model inputs and outputs ("input data", "output prob")
    compared_values: bool = True
    text_diff: str | None = None  # unified diff of the normalised model texts, when asked for

    @property
    def equal(self) -> bool:
        return not self.io and all(node.status == UNCHANGED for node in self.nodes)

    def count(self, status: str) -> int:
        return sum(1 for node in self.nodes if node.status == status)

    def matched_by(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for node in self.nodes:
            if node.matched_by:
                counts[node.matched_by] = counts.get(node.matched_by, 0) + 1
        return counts

    def totals(self, side: str) -> tuple[int | None, int | None]:
        graph = self.a if side == "a" else self.b
        batch = cost.graph_batch(graph.inputs)
        return total_parameters(graph), _sum(cost.macs(node, batch) for node in graph.nodes)

    def to_json(self) -> str:
        """The JSON report (``schemas/diff.schema.json``)."""
        import json

        return json.dumps(self.to_dict(), indent=2) + "\n"

    # The renderers read a GraphDiff without importing this module (no import cycle).
    def to_html(self) -> str:
        """One self-contained page with both graphs side by side."""
        from proto_rewrite.graphdiff.html import render_html

        return render_html(self)

    def render_text(self, *, show_all: bool = False, colour: bool = False) -> str:
        from proto_rewrite.graphdiff.text import render_text

        return render_text(self, show_all=show_all, colour=colour)

    def to_dict(self) -> dict:
        params_a, macs_a = self.totals("a")
        params_b, macs_b = self.totals("b")
        return {
            "schema_version": SCHEMA_VERSION,
            "model_format": self.a.model_format,
            "equal": self.equal,
            "compared_values": self.compared_values,
            "a": self.a.summary(),
            "b": self.b.summary(),
            "counts": {status: self.count(status) for status in STATUSES},
            "matched_by": self.matched_by(),
            "io": [change.to_dict() for change in self.io],
            "nodes": [node.to_dict() for node in self.nodes],
            "totals": {"parameters": {"a": params_a, "b": params_b}, "macs": {"a": macs_a, "b": macs_b}},
            "text_diff": self.text_diff,
        }


def _node_dict(node: Node | None, parameters, macs) -> dict | None:
    if node is None:
        return None
    return {
        "name": node.name,
        "op": node.op,
        "attributes": dict(node.attributes),
        "inputs": list(node.inputs),
        "outputs": list(node.outputs),
        "input_shapes": [shape_list(s) for s in node.input_shapes],
        "output_shapes": [shape_list(s) for s in node.output_shapes],
        "weights": [w.to_dict() for w in node.weights],
        "parameters": parameters,
        "macs": macs,
    }


def _sum(values) -> int | None:
    total = 0
    for value in values:
        if value is None:
            return None
        total += value
    return total


# ---------------------------------------------------------------------------------------------
# Comparing


def diff_graphs(a: Graph, b: Graph, renames: dict[str, str] | None = None, *, compare_values: bool = True) -> GraphDiff:
    """Compare ``b`` (after) with ``a`` (before). ``renames``: a plan's old -> new names.
    ``compare_values`` False: weights are compared by shape and dtype only."""
    nodes = []
    batches = cost.graph_batch(a.inputs), cost.graph_batch(b.inputs)
    for pair in match_nodes(a.nodes, b.nodes, renames):
        node_a = None if pair.a is None else a.nodes[pair.a]
        node_b = None if pair.b is None else b.nodes[pair.b]
        nodes.append(diff_nodes(node_a, node_b, pair.matched_by, compare_values, batches))
    _find_moved_weights(a, nodes, compare_values)
    io = _io_changes("input", a.inputs, b.inputs) + _io_changes("output", a.outputs, b.outputs)
    return GraphDiff(a, b, nodes, io, compare_values and a.has_weights and b.has_weights)


def diff_nodes(
    a: Node | None,
    b: Node | None,
    matched_by: str | None,
    compare_values: bool = True,
    batches: tuple[int | None, int | None] = (None, None),
) -> NodeDiff:
    costs = [
        (None, None) if n is None else (graph_view.parameters(n), cost.macs(n, batch))
        for n, batch in zip((a, b), batches)
    ]
    parameters, macs = (costs[0][0], costs[1][0]), (costs[0][1], costs[1][1])
    if a is None or b is None:
        only = a or b
        weights = [
            WeightDiff(w.role, w if a else None, None if a else w, Relation(REMOVED if a else ADDED))
            for w in only.weights
        ]
        return NodeDiff(
            REMOVED_NODE if a else ADDED_NODE, None, a, b, weights=weights, parameters=parameters, macs=macs
        )
    fields = [
        ValueChange(name, getattr(a, name), getattr(b, name))
        for name in ("name", "op", "inputs", "outputs")
        if getattr(a, name) != getattr(b, name)
    ]
    attributes = _attribute_changes(a.attributes, b.attributes)
    weights = [_weight_diff(role, wa, wb, compare_values) for role, wa, wb in _weight_pairs(a.weights, b.weights)]
    changed = bool(fields or attributes or any(w.changed for w in weights))
    return NodeDiff(CHANGED if changed else UNCHANGED, matched_by, a, b, fields, attributes, weights, parameters, macs)


def _attribute_changes(a: dict, b: dict) -> list[ValueChange]:
    changes = []
    for key in list(a) + [k for k in b if k not in a]:
        if key not in b:
            changes.append(ValueChange(key, a[key], None, REMOVED))
        elif key not in a:
            changes.append(ValueChange(key, None, b[key], ADDED))
        elif a[key] != b[key]:
            changes.append(ValueChange(key, a[key], b[key]))
    return changes


def _weight_pairs(a: list[Weight], b: list[Weight]):
    """(role, weight in A, weight in B): by role, then the rest in order."""
    left, right = list(a), list(b)
    pairs = []
    for weight in a:
        match = next((w for w in right if w.role == weight.role), None)
        if match is not None:
            pairs.append((weight.role, weight, match))
            left.remove(weight)
            right.remove(match)
    for weight_a, weight_b in zip(list(left), list(right)):
        pairs.append((weight_a.role, weight_a, weight_b))
        left.remove(weight_a)
        right.remove(weight_b)
    pairs += [(w.role, w, None) for w in left] + [(w.role, None, w) for w in right]
    order = {id(w): k for k, w in enumerate(a)}
    order_b = {id(w): k for k, w in enumerate(b)}
    return sorted(pairs, key=lambda p: (order.get(id(p[1]), len(a)), order_b.get(id(p[2]), len(b))))


def _weight_diff(role: str, a: Weight | None, b: Weight | None, compare_values: bool) -> WeightDiff:
    if a is None or b is None:
        return WeightDiff(role, a, b, Relation(ADDED if a is None else REMOVED))
    if not compare_values or a.load is None or b.load is None:
        return WeightDiff(role, a, b, Relation(UNKNOWN))
    return WeightDiff(role, a, b, relate(a.load(), b.load()))


def _find_moved_weights(a: Graph, nodes: list[NodeDiff], compare_values: bool) -> None:
    """A weight new to a matched node, that another node of A held under the same name (ONNX: the
    bias of a MatMul + Add folded into the Conv), is related to that one."""
    holders = {}
    for node in a.nodes:
        for weight in node.weights:
            if weight.own_name:
                holders.setdefault(weight.name, (node.name, weight))
    for node in nodes:
        if node.a is None or node.b is None:
            continue
        for k, weight in enumerate(node.weights):
            if weight.a is None and weight.b.own_name and weight.b.name in holders:
                holder, before = holders[weight.b.name]
                moved = _weight_diff(weight.role, before, weight.b, compare_values)
                node.weights[k] = WeightDiff(weight.role, before, weight.b, moved.relation, holder)


def _io_changes(kind: str, a: list, b: list) -> list[ValueChange]:
    """The model inputs (or outputs) added, removed or of another shape, as ``input NAME``."""
    changes = _attribute_changes({t.name: shape_list(t.shape) for t in a}, {t.name: shape_list(t.shape) for t in b})
    return [ValueChange(f"{kind} {change.field}", change.a, change.b, change.status) for change in changes]
