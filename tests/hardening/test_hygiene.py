"""Issue 14, output hygiene: names from a model never reach the terminal raw (ESC, BEL, CR, C1
controls are shown escaped in every text output; JSON keeps the exact names), and an error in a
huge one-line prototxt quotes an excerpt around its column, not the line."""

from __future__ import annotations

import json

import pytest
from bounded_run import assert_refused, snapshot
from cli_run import run_cli

from proto_rewrite.terminal import escape_controls

HOSTILE = {
    "title": "n\x1b]0;pwned\x07",  # retitles the terminal
    "clear": "da\x1b[2Jta",  # clears the screen
    "csi": "fc\u009b31m",  # the C1 CSI: some terminals obey it too
    "cr": "out\rhidden",  # overwrites the start of the line
}
PROTOTXT = f'''name: "{HOSTILE["title"]}"
input: "{HOSTILE["clear"]}" input_dim: 1 input_dim: 3 input_dim: 4 input_dim: 4
layer {{ name: "{HOSTILE["csi"]}" type: "InnerProduct" bottom: "{HOSTILE["clear"]}" top: "{HOSTILE["cr"]}"
  inner_product_param {{ num_output: 2 }} }}
layer {{ name: "odd\x1b" type: "Nope\x1b[5m" bottom: "{HOSTILE["cr"]}" top: "o2" }}
'''


def _raw_controls(text: str) -> list[str]:
    return [c for c in text if (ord(c) < 32 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]


@pytest.fixture
def hostile(tmp_path):
    path = tmp_path / "hostile.prototxt"
    path.write_text(PROTOTXT, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["inspect", "{m}", "--no-weights"],
        ["inspect", "{m}", "--no-weights", "-v"],
        ["convert", "{m}", "--no-weights", "--dry-run"],
        ["convert", "{m}", "--no-weights", "--strict", "-o", "{d}/x.prototxt"],
        ["diff", "{m}", "{m}", "--no-weights", "--text"],
        ["export", "{m}", "-o", "{d}/x.onnx"],
    ],
)
def test_no_raw_control_character_reaches_the_terminal(tmp_path, hostile, argv):
    before = snapshot(tmp_path)
    run = run_cli([a.format(m=hostile, d=tmp_path) for a in argv])
    assert "Traceback" not in run.stderr, run.stderr
    assert _raw_controls(run.stdout) == [] and _raw_controls(run.stderr) == [], (run.stdout, run.stderr)
    shown = run.stdout + run.stderr
    assert "\\x1b" in shown  # escaped, not dropped: the user sees what the file says
    if argv[0] == "export":
        assert run.code == 2  # the unknown layer type
    assert snapshot(tmp_path) == before


def test_json_keeps_the_exact_names(hostile):
    run = run_cli(["inspect", hostile, "--no-weights", "--format", "json"])
    assert run.code == 0 and _raw_controls(run.stdout) == []
    names = [layer["name"] for layer in json.loads(run.stdout)["layers"]]
    assert HOSTILE["csi"] in names and "odd\x1b" in names


def test_escape_controls_keeps_our_newlines_and_tabs():
    assert escape_controls("a\tb\nc") == "a\tb\nc"
    assert escape_controls("\x1b[2J\x07\x7f\u0085é") == "\\x1b[2J\\x07\\x7f\\u0085é"


def test_an_error_on_a_huge_line_quotes_an_excerpt(tmp_path):
    model = tmp_path / "one_line.prototxt"
    layer = 'layer { name: "r" type: "ReLU" bottom: "data" top: "data" } '
    text = 'input: "data" input_dim: 1 input_dim: 1 input_dim: 2 input_dim: 2 ' + layer * 56000 + "input: 7bogus"
    model.write_text(text)  # 3.2 MB, one line, the error at its end
    assert model.stat().st_size > 3_000_000
    column = len(text) - len("7bogus") + 1
    run = run_cli(["inspect", model, "--no-weights"])
    assert_refused(run, f"{model}:1:{column}", message="7bogus")
    assert len(run.stderr) < 1000, len(run.stderr)


def test_a_text_report_written_to_a_file_is_escaped_too(tmp_path, hostile):
    report = tmp_path / "report.txt"
    run = run_cli(["diff", hostile, hostile, "--no-weights", "--text", "-o", report])
    assert run.code == 0, run.stderr
    text = report.read_text(encoding="utf-8")
    assert _raw_controls(text) == [] and "\\x1b" in text


def test_a_coloured_diff_keeps_its_colours_and_escapes_the_names(hostile):
    from proto_rewrite.graphdiff.text import BOLD, COLOURS, RESET

    run = run_cli(["diff", hostile, hostile, "--no-weights", "--all", "--text", "--color", "always"])
    assert run.code == 0, run.stderr
    assert BOLD in run.stdout  # our own colours
    ours = run.stdout
    for code in (BOLD, RESET, *COLOURS.values()):  # only those: a name's own sequence would remain
        ours = ours.replace(code, "")
    assert _raw_controls(ours) == [] and "\\x1b" in ours
