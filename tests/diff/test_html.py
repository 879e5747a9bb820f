"""The HTML page: self-contained, and rendered by headless Chromium with no network access, with
the expected nodes highlighted, a node's details on click, and no script or console error.

Chromium is Debian's ``chromium`` package (.ci/run installs it); without /usr/bin/chromium the
browser tests skip. A screenshot of the ONNX page is saved in the test's tmp dir.
"""

from __future__ import annotations

import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from corpus import CAFFE_DATA

from proto_rewrite.graphdiff.compare import diff_graphs
from proto_rewrite.graphdiff.html import render_html
from proto_rewrite.graphdiff.load import load_pair

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # no network: every host unresolvable, every request sent to a closed proxy
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=http://127.0.0.1:9",
    "--enable-logging=stderr",
    "--v=0",
    "--window-size=1400,1000",
]
EVIL = '</script><img src=x onerror="document.title=1">fc1'


class Dom(HTMLParser):
    """The drawn nodes, body attributes and the text of #details and #page-errors of a dumped DOM."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.nodes, self.body, self.details, self.texts, self._open = [], {}, {}, {"details": "", "page-errors": ""}, []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "g" and "node" in (attrs.get("class") or "").split():
            self.nodes.append(attrs)
        elif tag == "body":
            self.body = attrs
        if tag == "aside" and attrs.get("id") == "details":
            self.details = attrs
        if attrs.get("id") in self.texts:
            self._open.append(attrs["id"])
        elif self._open:
            self._open.append(None)

    def handle_endtag(self, tag):
        if self._open:
            self._open.pop()

    def handle_data(self, data):
        for name in self._open:
            if name:
                self.texts[name] += data + " "

    def names(self, side: str, status: str) -> set[str]:
        return {n["data-name"] for n in self.nodes if n["data-side"] == side and n["data-status"] == status}


def chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists():
        pytest.skip("headless Chromium is not installed (/usr/bin/chromium, Debian package 'chromium'); CI installs it")
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    profile.mkdir()
    result = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", *args, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console  # no console output at all: no errors, no CSP violations
    return result


def page(tmp_path: Path, name: str, a, b, **options) -> Path:
    graph_a, graph_b = load_pair(a, b)
    path = tmp_path / name
    path.write_text(render_html(diff_graphs(graph_a, graph_b, **options)), encoding="utf-8")
    return path


def assert_rendered(dom: Dom) -> None:
    assert dom.body.get("data-ready") == "1", dom.texts["page-errors"]
    assert "data-errors" not in dom.body and not dom.texts["page-errors"].strip()


def test_page_is_self_contained(onnx_pair, tmp_path):
    before, after, _ = onnx_pair
    text = page(tmp_path, "diff.html", before, after).read_text()
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//""", text)
    assert "url(" not in text and "<link" not in text and "@import" not in text
    assert "default-src 'none'" in text  # the page may not fetch anything, even by mistake
    data = re.search(r'<script type="application/json" id="diff-data">(.*?)</script>', text, re.DOTALL).group(1)
    report = json.loads(data)
    assert {n["name"] for n in report["nodes"] if n["status"] == "changed"} == {"fc1", "fc2", "fc3"}


def test_names_cannot_break_out_of_the_page(tmp_path, make_fc_onnx, convert_onnx):
    before, after = tmp_path / "a.onnx", tmp_path / "b.onnx"
    make_fc_onnx(before, node_name_fc1=EVIL)
    convert_onnx(before, after)
    path = page(tmp_path, "evil.html", before, after)
    assert EVIL not in path.read_text() and "</script><img" not in path.read_text()
    dom = Dom(chromium(tmp_path, path.as_uri(), "--dump-dom").stdout)
    assert_rendered(dom)
    assert EVIL in dom.names("a", "changed") and EVIL in dom.names("b", "changed")


def test_caffenet_page_highlights_the_rewritten_layers(tmp_path, caffenet_fcn_prototxt):
    path = page(tmp_path, "caffenet.html", CAFFE_DATA / "bvlc_reference_caffenet.prototxt", caffenet_fcn_prototxt)
    dom = Dom(chromium(tmp_path, path.as_uri(), "--dump-dom").stdout)
    assert_rendered(dom)
    for side in ("a", "b"):
        assert dom.names(side, "changed") == {"fc6", "fc7", "fc8"}
        assert len(dom.names(side, "unchanged")) == 21
        assert not dom.names(side, "removed") and not dom.names(side, "added")
    ops = {(n["data-side"], n["data-name"]): n["data-op"] for n in dom.nodes}
    assert ops[("a", "fc6")] == "InnerProduct" and ops[("b", "fc6")] == "Convolution"


def test_onnx_page_shows_a_node_on_click_and_looks_right(tmp_path, onnx_pair):
    before, after, _ = onnx_pair
    path = page(tmp_path, "onnx.html", before, after)
    dom = Dom(chromium(tmp_path, path.as_uri() + "#node=fc1", "--dump-dom").stdout)
    assert_rendered(dom)
    assert dom.names("a", "changed") == dom.names("b", "changed") == {"fc1", "fc2", "fc3"}
    assert dom.names("a", "removed") == {"flatten", "fc3_add"} and not dom.names("b", "removed")
    # #node=fc1 clicks fc1: the details show its attributes and weight relations
    assert dom.details.get("data-selected") == "fc1"
    selected = [n for n in dom.nodes if "selected" in n["class"].split()]
    assert {(n["data-side"], n["data-name"]) for n in selected} == {("a", "fc1"), ("b", "fc1")}
    details = dom.texts["details"]
    for text in ("Gemm", "Conv", "transB", "kernel", "3x3", "transposed", "identical"):
        assert text in details, text
    screenshot = tmp_path / "onnx_diff.png"
    chromium(tmp_path, path.as_uri() + "#node=fc2", f"--screenshot={screenshot}")
    data = screenshot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 10_000
    print(f"screenshot: {screenshot}")
