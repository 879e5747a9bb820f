"""The diff as text, like ``git diff``: ``-`` only in A, ``+`` only in B, ``~`` changed.

Changed nodes list what changed (name, inputs, outputs, attributes), every weight with its shape
before and after and its relation, and the node's parameters and MACs; unchanged nodes are
summed up in one line unless ``show_all``. Colour (ANSI) only when asked for: the CLI asks when
stdout is a terminal.
"""

from __future__ import annotations

import json
import os

from proto_rewrite.graphdiff.status import ADDED_NODE, CHANGED, REMOVED_NODE, UNCHANGED
from proto_rewrite.graphdiff.weights import ADDED, REMOVED
from proto_rewrite.shape_text import shape_text
from proto_rewrite.terminal import escape_controls

RED, GREEN, YELLOW, BOLD, RESET = "\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[1m", "\x1b[0m"
COLOURS = {"-": RED, "+": GREEN, "~": YELLOW}
DIMENSIONS = frozenset(("kernel", "stride", "pad", "dilation"))  # shown as 6x6
UNCHANGED_NAMES = 12  # names listed in the one-line summary of unchanged nodes


def side_label(side: str, path: str) -> str:
    """``a/path`` as git writes it, for a relative path; an absolute path as it is."""
    return path if os.path.isabs(path) else f"{side}/{path}"


def render_text(diff, *, show_all: bool = False, colour: bool = False) -> str:
    """``diff``: a ``compare.GraphDiff`` (not imported: ``compare`` imports this module)."""
    out = _Lines(colour)
    path_a, path_b = side_label("a", diff.a.path), side_label("b", diff.b.path)
    out.header(f"diff {diff.a.model_format} {path_a} {path_b}")
    out.header(f"--- {path_a}{_weights_note(diff.a)}")
    out.header(f"+++ {path_b}{_weights_note(diff.b)}")
    for change in diff.io:
        out.add(_marker(change), f"{change.field}: {_change_text(change, shape=True)}")
    unchanged = []
    for node in diff.nodes:
        if node.status == UNCHANGED:
            unchanged.append(node)
            if show_all:
                out.add(" ", f"{node.name} ({node.b.op})")
            continue
        _node_lines(out, node)
    if unchanged and not show_all:
        names = ", ".join(n.name for n in unchanged[:UNCHANGED_NAMES]) + (
            ", ..." if len(unchanged) > UNCHANGED_NAMES else ""
        )
        out.add(" ", f"{len(unchanged)} unchanged: {names}")
    out.blank()
    out.add("", _summary(diff))
    for label, (before, after) in (
        ("parameters", (diff.totals("a")[0], diff.totals("b")[0])),
        ("MACs", (diff.totals("a")[1], diff.totals("b")[1])),
    ):
        out.add("", f"{label}: {_count(before)} -> {_count(after)}{_delta(before, after)}")
    if not diff.compared_values:
        out.add("", "weight values not compared (no weights read): shapes only")
    if diff.text_diff is not None:
        out.blank()
        for line in diff.text_diff.splitlines():
            out.add(line[:1] if line[:1] in "-+" and not line.startswith(("---", "+++")) else "", line, raw=True)
    return out.text()


class _Lines:
    def __init__(self, colour: bool) -> None:
        self.colour, self.lines = colour, []

    # With colour, the report carries our own escape sequences: the names in it are escaped here,
    # line by line, and the console prints the report as it is (see the diff command).
    def header(self, text: str) -> None:
        self.lines.append(f"{BOLD}{escape_controls(text)}{RESET}" if self.colour else text)

    def add(self, marker: str, text: str, raw: bool = False) -> None:
        line = text if raw else (f"{marker} {text}" if marker else text)
        if self.colour:
            line = escape_controls(line)
        if self.colour and marker in COLOURS:
            line = f"{COLOURS[marker]}{line}{RESET}"
        self.lines.append(line)

    def blank(self) -> None:
        self.lines.append("")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _weights_note(graph) -> str:
    if graph.model_format != "caffe":
        return ""
    return f" (weights: {graph.weights_path})" if graph.weights_path else " (no weights)"


def _node_lines(out: _Lines, node) -> None:
    if node.status == REMOVED_NODE:
        out.add("-", _brief(node.a, node.parameters[0]))
        return
    if node.status == ADDED_NODE:
        out.add("+", _brief(node.b, node.parameters[1]))
        return
    a, b = node.a, node.b
    op = a.op if a.op == b.op else f"{a.op} -> {b.op}"
    how = "" if node.matched_by in ("name", "plan") else f", matched by {node.matched_by}"
    out.add("~", f"{b.name} ({op}{how})")
    for change in node.fields:
        if change.field != "op":
            out.add("~", f"    {change.field}: {_change_text(change, key=change.field)}")
    for status, marker in (("removed", "-"), ("added", "+")):
        items = [f"{c.field}: {_change_text(c, key=c.field)}" for c in node.attributes if c.status == status]
        if items:
            out.add(marker, f"    {', '.join(items)}")
    for change in node.attributes:
        if change.status == CHANGED:
            out.add("~", f"    {change.field}: {_change_text(change, key=change.field)}")
    for weight in node.weights:
        marker = "~" if weight.changed else " "
        if weight.relation.kind in (ADDED, REMOVED):
            marker = "+" if weight.relation.kind == ADDED else "-"
            side = weight.b or weight.a
            out.add(marker, f"    {weight.role} {shape_text(side.shape)}")
            continue
        shapes = (
            shape_text(weight.a.shape)
            if weight.a.shape == weight.b.shape
            else f"{shape_text(weight.a.shape)} -> {shape_text(weight.b.shape)}"
        )
        names = f" ({weight.a.name} -> {weight.b.name})" if weight.a.name != weight.b.name and weight.b.own_name else ""
        if weight.from_node:
            names += f" (from {weight.from_node})"
        out.add(marker, f"    {weight.role} {shapes}{names}: {weight.relation.text()}")
    before_shapes = [shape_text(s) for s in a.output_shapes]
    after_shapes = [shape_text(s) for s in b.output_shapes]
    if before_shapes != after_shapes:
        out.add(" ", f"    output shape: {', '.join(before_shapes)} -> {', '.join(after_shapes)}")
    (pa, pb), (ma, mb) = node.parameters, node.macs
    if not (a.weights or b.weights or ma or mb):
        return
    params = _count(pa) if pa == pb else f"{_count(pa)} -> {_count(pb)}"
    macs = _count(ma) if ma == mb else f"{_count(ma)} -> {_count(mb)}"
    out.add(" ", f"    parameters {params}, MACs {macs}")


def _brief(node, parameters) -> str:
    text = f"{node.name} ({node.op}): {', '.join(node.inputs) or '-'} -> {', '.join(node.outputs) or '-'}"
    if node.weights:
        text += f", weights {', '.join(shape_text(w.shape) for w in node.weights)}"
    if parameters:
        text += f", {_count(parameters)} parameters"
    return text


def _marker(change) -> str:
    return {"removed": "-", "added": "+"}.get(change.status, "~")


def _change_text(change, *, key: str = "", shape: bool = False) -> str:
    show = (lambda v: shape_text(v)) if shape else (lambda v: value_text(key, v))
    if change.status == "removed":
        return show(change.a)
    if change.status == "added":
        return show(change.b)
    return f"{show(change.a)} -> {show(change.b)}"


def value_text(key: str, value) -> str:
    if isinstance(value, list) and key in DIMENSIONS and value and all(isinstance(v, int) for v in value):
        return shape_text(value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value) and key in ("inputs", "outputs", "name"):
        return ", ".join(value) or "-"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _count(value) -> str:
    return "?" if value is None else f"{value:,}"


def _delta(before, after) -> str:
    if before is None or after is None:
        return ""
    change = after - before
    return f" ({'+' if change >= 0 else '-'}{abs(change):,})"


def _summary(diff) -> str:
    counts = ", ".join(f"{diff.count(s)} {s}" for s in (CHANGED, REMOVED_NODE, ADDED_NODE, UNCHANGED))
    matched = diff.matched_by()
    how = ", ".join(f"{n} by {k}" for k, n in matched.items())
    verdict = "equal" if diff.equal else "different"
    return f"{verdict}: {counts}" + (f" (matched {how})" if how else "")
