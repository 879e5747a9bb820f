"""The diff as one self-contained HTML page: both graphs side by side as node diagrams.

Nothing is fetched: the style, the script and the data (the JSON report) are inlined. Each row of
the diagram is one entry of the diff, so matched nodes sit side by side; changed nodes are
highlighted amber, removed ones red (left only), added ones green (right only); edges run from
each node's producers. A click on a node (or ``#node=NAME`` in the address) shows its attributes,
inputs, outputs, weights with their relation, parameters and MACs, before and after.

For tests and tooling, the rendered DOM says what it drew: every node is an SVG ``g.node`` with
``data-name``, ``data-side`` (``a`` / ``b``) and ``data-status``; ``body[data-ready="1"]`` when
the script finished, and any script error lands in ``#page-errors`` with ``body[data-errors]``.
"""

from __future__ import annotations

import html
import json
import re


def render_html(diff) -> str:
    """``diff``: a ``compare.GraphDiff``."""
    data = json.dumps(diff.to_dict(), separators=(",", ":"))
    # Inside <script>, "</" would end the element early; \u003c reads back as "<" in JSON.
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    parts = {
        "TITLE": html.escape(f"proto-rewrite diff: {diff.a.path} -> {diff.b.path}"),
        "STYLE": STYLE,
        "SCRIPT": SCRIPT,
        "DATA": data,
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda match: parts[match.group(1)], TEMPLATE)  # one pass: no part is re-read


TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<title>{{TITLE}}</title>
<style>{{STYLE}}</style>
</head>
<body>
<header id="top">
  <h1 id="title"></h1>
  <div id="paths"></div>
  <div id="counts"></div>
  <div id="totals"></div>
  <div id="legend">
    <span class="swatch changed"></span>changed <span class="swatch removed"></span>only in A
    <span class="swatch added"></span>only in B <span class="swatch unchanged"></span>unchanged
    <span class="hint">click a node for its details</span>
  </div>
  <div id="io"></div>
</header>
<main>
  <section id="diagram"></section>
  <aside id="details"><h2>Details</h2><p class="hint">Select a node.</p><div id="changes"></div></aside>
</main>
<details id="text-diff-box" hidden><summary>Text diff</summary><pre id="text-diff"></pre></details>
<pre id="page-errors" hidden></pre>
<script>
(function () {
  var box = document.getElementById("page-errors");
  function record(text) {
    box.hidden = false;
    box.textContent += text + "\\n";
    document.body.setAttribute("data-errors", String((+document.body.getAttribute("data-errors") || 0) + 1));
  }
  window.onerror = function (message, source, line, column) { record("error: " + message + " (line " + line + ":" + column + ")"); };
  window.addEventListener("unhandledrejection", function (event) { record("unhandled rejection: " + event.reason); });
  var original = console.error;
  console.error = function () { record("console.error: " + Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); };
})();
</script>
<script type="application/json" id="diff-data">{{DATA}}</script>
<script>{{SCRIPT}}</script>
</body>
</html>
"""

STYLE = """
* { box-sizing: border-box; }
html, body { height: 100%; }
body { margin: 0; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; background: #fafafa;
       display: flex; flex-direction: column; overflow: hidden; }
header { flex: 0 0 auto; padding: 10px 16px; background: #fff; border-bottom: 1px solid #ddd; }
h1 { font-size: 16px; margin: 0 0 4px; }
h2 { font-size: 14px; margin: 0 0 8px; }
h3 { font-size: 13px; margin: 12px 0 4px; }
#paths, #totals, #io { color: #555; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
#counts { margin: 4px 0; }
#counts span { margin-right: 12px; font-weight: 600; }
#legend { margin-top: 4px; color: #444; }
.swatch { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 10px; vertical-align: -2px; border: 2px solid; border-radius: 3px; }
.hint { color: #888; margin-left: 12px; }
main { flex: 1 1 auto; display: flex; min-height: 0; }
#diagram { flex: 1 1 auto; overflow: auto; padding: 8px 16px; }
.column { font: 600 13px system-ui, sans-serif; fill: #555; }
#details { flex: 0 0 440px; overflow: auto; background: #fff; border-left: 1px solid #ddd; padding: 12px; }
svg text { font-family: ui-monospace, Menlo, Consolas, monospace; }
.node { cursor: pointer; }
.node rect { fill: #fff; stroke: #b8b8b8; stroke-width: 1; rx: 5; }
.node .op { fill: #666; font-size: 10px; }
.node .name { fill: #222; font-size: 12px; font-weight: 600; }
.node.changed rect, .swatch.changed { fill: #fff1c7; background: #fff1c7; stroke: #d39a00; border-color: #d39a00; stroke-width: 2.5; }
.node.removed rect, .swatch.removed { fill: #ffe1e1; background: #ffe1e1; stroke: #cc3333; border-color: #cc3333; stroke-width: 2.5; }
.node.added rect, .swatch.added { fill: #dff7e3; background: #dff7e3; stroke: #2f9e44; border-color: #2f9e44; stroke-width: 2.5; }
.swatch.unchanged { background: #fff; border-color: #b8b8b8; }
.node.selected rect { stroke: #1c6dd0; stroke-width: 3.5; }
.edge { fill: none; stroke: #9aa; stroke-width: 1.2; }
.link { stroke-width: 1.2; stroke-dasharray: 4 3; fill: none; }
.link.changed { stroke: #d39a00; }
.link.unchanged { stroke: #ccc; }
table { border-collapse: collapse; width: 100%; font-size: 12px; }
th, td { text-align: left; vertical-align: top; padding: 2px 4px; border-bottom: 1px solid #eee; word-break: break-word; }
th { color: #555; font-weight: 600; white-space: nowrap; }
td:first-child { white-space: nowrap; color: #444; }
tr.diff td { background: #fff7dd; }
tr.removed td { background: #ffecec; }
tr.added td { background: #e9f9ec; }
td.mono { font-family: ui-monospace, Menlo, Consolas, monospace; }
.status { display: inline-block; padding: 0 6px; border-radius: 8px; font-weight: 600; font-size: 11px; }
.status.changed { background: #fff1c7; color: #8a6500; }
.status.removed { background: #ffe1e1; color: #a32020; }
.status.added { background: #dff7e3; color: #1f6f31; }
.status.unchanged { background: #eee; color: #555; }
#changes a { display: block; color: #1c4f9c; text-decoration: none; font-family: ui-monospace, Menlo, Consolas, monospace; padding: 1px 0; }
#changes a:hover { text-decoration: underline; }
#text-diff-box { flex: 0 0 auto; margin: 0; padding: 4px 16px; border-top: 1px solid #ddd; background: #fff; }
#text-diff { max-height: 35vh; overflow: auto; margin: 4px 0; }
#page-errors { color: #a00; background: #fee; padding: 8px; margin: 8px 16px; }
"""

SCRIPT = r"""
"use strict";
(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var data = JSON.parse(document.getElementById("diff-data").textContent);
  var ROW = 46, BOX_W = 230, BOX_H = 34, BULGE = 120, GAP = 140, TOP = 34;
  var X = { a: BULGE, b: BULGE + BOX_W + GAP };
  var WIDTH = 2 * BULGE + 2 * BOX_W + GAP;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    for (var key in attrs || {}) node.setAttribute(key, attrs[key]);
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function svg(tag, attrs) {
    var node = document.createElementNS(SVG, tag);
    for (var key in attrs || {}) node.setAttribute(key, attrs[key]);
    return node;
  }
  function shape(s) {
    if (s === null || s === undefined) return "?";
    if (!s.length) return "scalar";
    var dims = s.map(function (d) { return d === null ? "?" : String(d); });
    // symbolic dimensions: 1x3xdata_height would not read
    return s.some(function (d) { return typeof d === "string"; }) ? "(" + dims.join(", ") + ")" : dims.join("x");
  }
  function count(n) { return n === null || n === undefined ? "?" : Number(n).toLocaleString("en-US"); }
  var DIMENSIONS = ["kernel", "stride", "pad", "dilation"];
  function value(v, key) {
    if (v === null || v === undefined) return "";
    if (Array.isArray(v) && DIMENSIONS.indexOf(key) >= 0 && v.every(function (d) { return typeof d === "number"; })) return v.join("x");
    return typeof v === "string" ? v : JSON.stringify(v);
  }
  function short(text, limit) { return text.length > limit ? text.slice(0, limit - 1) + "\u2026" : text; }

  // ---- header
  document.getElementById("title").textContent = "proto-rewrite diff (" + data.model_format + "): " +
    (data.equal ? "equal" : "different");
  document.getElementById("paths").textContent = "A: " + data.a.path + (data.a.weights_path ? " + " + data.a.weights_path : "") +
    "    B: " + data.b.path + (data.b.weights_path ? " + " + data.b.weights_path : "");
  var counts = document.getElementById("counts");
  ["changed", "removed", "added", "unchanged"].forEach(function (status) {
    counts.appendChild(el("span", { "class": "count-" + status }, data.counts[status] + " " + status));
  });
  var t = data.totals;
  document.getElementById("totals").textContent = "parameters " + count(t.parameters.a) + " \u2192 " + count(t.parameters.b) +
    "    MACs " + count(t.macs.a) + " \u2192 " + count(t.macs.b) + (data.compared_values ? "" : "    (weight values not compared)");
  document.getElementById("io").textContent = data.io.map(function (c) {
    return c.field + ": " + (c.status === "added" ? "+" + shape(c.b) : c.status === "removed" ? "-" + shape(c.a) : shape(c.a) + " \u2192 " + shape(c.b));
  }).join("    ");
  if (data.text_diff !== null) {
    document.getElementById("text-diff-box").hidden = false;
    document.getElementById("text-diff").textContent = data.text_diff;
  }

  // ---- diagram
  var rows = data.nodes;
  var height = TOP * 2 + rows.length * ROW;
  var root = svg("svg", { width: WIDTH, height: height, viewBox: "0 0 " + WIDTH + " " + height, id: "graph" });
  var edges = svg("g", { "class": "edges" }), links = svg("g", { "class": "links" }), boxes = svg("g", { "class": "boxes" });
  root.appendChild(edges); root.appendChild(links); root.appendChild(boxes);
  [["a", "A (before)"], ["b", "B (after)"]].forEach(function (column) {
    var text = svg("text", { x: X[column[0]] + BOX_W / 2, y: 18, "text-anchor": "middle", "class": "column" });
    text.textContent = column[1];
    root.appendChild(text);
  });
  var producers = { a: {}, b: {} };
  rows.forEach(function (row, index) {
    ["a", "b"].forEach(function (side) {
      if (row[side]) row[side].outputs.forEach(function (name) { producers[side][name] = index; });
    });
  });
  // In-place layers (Caffe ReLU fc6 -> fc6) read the previous producer of their blob.
  function producerBefore(side, name, index) {
    for (var k = index - 1; k >= 0; k--) {
      var node = rows[k][side];
      if (node && node.outputs.indexOf(name) >= 0) return k;
    }
    return -1;
  }
  var elements = {};
  rows.forEach(function (row, index) {
    var y = TOP + index * ROW;
    ["a", "b"].forEach(function (side) {
      var node = row[side];
      if (!node) return;
      node.inputs.forEach(function (name) {
        var from = producerBefore(side, name, index);
        if (from < 0) return;
        var x = X[side] + BOX_W / 2, y0 = TOP + from * ROW + BOX_H, y1 = y;
        var d;
        if (from === index - 1) {
          d = "M" + x + "," + y0 + " L" + x + "," + y1;
        } else {
          var reach = Math.min(BULGE - 10, 30 + 14 * Math.log2(index - from));
          var out = side === "a" ? X.a - reach : X.b + BOX_W + reach;
          var edge = side === "a" ? X.a : X.b + BOX_W;
          y0 = TOP + from * ROW + BOX_H / 2; y1 = y + BOX_H / 2;
          d = "M" + edge + "," + y0 + " C" + out + "," + y0 + " " + out + "," + y1 + " " + edge + "," + y1;
        }
        edges.appendChild(svg("path", { d: d, "class": "edge" }));
      });
      var g = svg("g", { "class": "node " + row.status, "data-name": node.name, "data-side": side,
                         "data-status": row.status, "data-op": node.op, tabindex: "0",
                         transform: "translate(" + X[side] + "," + y + ")" });
      var title = svg("title"); title.textContent = node.name + " (" + node.op + ")"; g.appendChild(title);
      g.appendChild(svg("rect", { width: BOX_W, height: BOX_H, rx: 5 }));
      var label = svg("text", { x: 8, y: 14, "class": "name" }); label.textContent = short(node.name, 28); g.appendChild(label);
      var other = row[side === "a" ? "b" : "a"];
      var opText = node.op + (other && other.op !== node.op ? (side === "a" ? " \u2192 " + other.op : " \u2190 " + other.op) : "");
      var outShape = node.output_shapes.length ? "  " + shape(node.output_shapes[0]) : "";
      var op = svg("text", { x: 8, y: 28, "class": "op" }); op.textContent = short(opText + outShape, 38); g.appendChild(op);
      g.addEventListener("click", function () { select(index, side); });
      g.addEventListener("keydown", function (event) { if (event.key === "Enter") select(index, side); });
      boxes.appendChild(g);
      elements[index + side] = g;
    });
    if (row.a && row.b) {
      links.appendChild(svg("path", { d: "M" + (X.a + BOX_W) + "," + (y + BOX_H / 2) + " L" + X.b + "," + (y + BOX_H / 2),
                                      "class": "link " + row.status }));
    }
  });
  document.getElementById("diagram").appendChild(root);

  // ---- details
  var details = document.getElementById("details");
  var selected = [];
  function table(head, body) {
    var tbl = el("table"), tr = el("tr");
    head.forEach(function (h) { tr.appendChild(el("th", {}, h)); });
    tbl.appendChild(tr);
    body.forEach(function (cells) {
      var row = el("tr", cells.cls ? { "class": cells.cls } : {});
      cells.values.forEach(function (c) { row.appendChild(el("td", { "class": "mono" }, c)); });
      tbl.appendChild(row);
    });
    return tbl;
  }
  function select(index, side) {
    var row = rows[index];
    selected.forEach(function (g) { g.classList.remove("selected"); });
    selected = [elements[index + "a"], elements[index + "b"]].filter(Boolean);
    selected.forEach(function (g) { g.classList.add("selected"); });
    details.textContent = "";
    details.setAttribute("data-selected", row.name);
    var head = el("h2", {}, row.name + " ");
    head.appendChild(el("span", { "class": "status " + row.status }, row.status));
    details.appendChild(head);
    if (row.matched_by) details.appendChild(el("div", { "class": "hint" }, "matched by " + row.matched_by));
    var a = row.a || {}, b = row.b || {};
    function line(label, f) {
      var va = row.a ? f(a) : "", vb = row.b ? f(b) : "";
      return { values: [label, va, vb], cls: va !== vb ? (row.a && row.b ? "diff" : (row.a ? "removed" : "added")) : "" };
    }
    details.appendChild(table(["", "A", "B"], [
      line("name", function (n) { return n.name; }),
      line("op", function (n) { return n.op; }),
      line("inputs", function (n) { return n.inputs.join(", "); }),
      line("outputs", function (n) { return n.outputs.join(", "); }),
      line("input shapes", function (n) { return n.input_shapes.map(shape).join(", "); }),
      line("output shapes", function (n) { return n.output_shapes.map(shape).join(", "); }),
      line("parameters", function (n) { return count(n.parameters); }),
      line("MACs", function (n) { return count(n.macs); })
    ]));
    details.appendChild(el("h3", {}, "Attributes"));
    var keys = Object.keys(a.attributes || {});
    Object.keys(b.attributes || {}).forEach(function (k) { if (keys.indexOf(k) < 0) keys.push(k); });
    details.appendChild(keys.length ? table(["attribute", "A", "B"], keys.map(function (k) {
      var va = value((a.attributes || {})[k], k), vb = value((b.attributes || {})[k], k);
      return { values: [k, va, vb], cls: va === vb ? "" : (row.a && row.b ? "diff" : (row.a ? "removed" : "added")) };
    })) : el("div", { "class": "hint" }, "none"));
    details.appendChild(el("h3", {}, "Weights"));
    details.appendChild(row.weights.length ? table(["weight", "A", "B", "relation"], row.weights.map(function (w) {
      return { values: [w.role, w.a ? shape(w.a.shape) + (w.a.dtype ? " " + w.a.dtype : "") : "-",
                        w.b ? shape(w.b.shape) + (w.b.dtype ? " " + w.b.dtype : "") : "-",
                        w.relation.text + (w.from_node ? " (from " + w.from_node + ")" : "")],
               cls: w.changed ? "diff" : "" };
    })) : el("div", { "class": "hint" }, "none"));
    var back = el("a", { href: "#" }, "\u2190 all changes");
    back.addEventListener("click", function (event) { event.preventDefault(); overview(); });
    details.appendChild(el("p")).appendChild(back);
    var target = elements[index + (side || "b")] || selected[0];
    if (target && target.scrollIntoView) target.scrollIntoView({ block: "nearest" });
  }
  function overview() {
    details.textContent = "";
    details.removeAttribute("data-selected");
    details.appendChild(el("h2", {}, "Changes"));
    var list = el("div", { id: "changes" });
    rows.forEach(function (row, index) {
      if (row.status === "unchanged") return;
      var mark = { changed: "~ ", removed: "- ", added: "+ " }[row.status];
      var link = el("a", { href: "#node=" + encodeURIComponent(row.name), "class": row.status }, mark + row.name +
        "  (" + (row.a && row.b && row.a.op !== row.b.op ? row.a.op + " \u2192 " + row.b.op : (row.b || row.a).op) + ")");
      link.addEventListener("click", function (event) { event.preventDefault(); select(index, row.b ? "b" : "a"); });
      list.appendChild(link);
    });
    if (!list.childNodes.length) list.appendChild(el("div", { "class": "hint" }, "no changes"));
    details.appendChild(list);
  }
  overview();
  var wanted = /(?:^#|&)node=([^&]*)/.exec(location.hash);
  if (wanted) {
    var name = decodeURIComponent(wanted[1]);
    var target = document.querySelector('g.node[data-side="b"][data-name="' + CSS.escape(name) + '"]') ||
                 document.querySelector('g.node[data-side="a"][data-name="' + CSS.escape(name) + '"]');
    if (target) target.dispatchEvent(new MouseEvent("click", { bubbles: true }));
  }
  document.body.setAttribute("data-ready", "1");
})();
"""
