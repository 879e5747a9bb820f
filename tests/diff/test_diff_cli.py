"""The diff command line: how its options map to ``pr.diff`` and its renderings, exit codes, what
goes to stdout and to stderr, errors (text and JSON), and the installed script. What a diff
reports is tested through the library, in test_caffe_diff.py and test_onnx_diff.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import CAFFE_DATA, ROOT

import proto_rewrite as pr
from proto_rewrite.errors import UsageError

LENET = ROOT / "samples" / "lenet" / "lenet.prototxt"
VGG = ROOT / "samples" / "onnx" / "vgg_mini.onnx"
MINI = ROOT / "samples" / "caffenet_mini" / "caffenet_mini.prototxt"
NO_WEIGHTS = {"weights_a": None, "weights_b": None, "compare_values": False}  # what --no-weights asks for
PLAN_FILE = "PLAN_FILE"  # stands for the plan file of the mini_renamed fixture in OPTIONS

# option -> (its command-line arguments, the pr.diff keyword arguments it stands for)
OPTIONS = {
    "defaults": ([], {}),
    "--no-weights": (["--no-weights"], NO_WEIGHTS),
    "--plan": (["--plan", PLAN_FILE], {"plan": PLAN_FILE}),
    "--input-shape": (["--input-shape", "data:2,3,115,115"], {"input_shapes": {"data": [2, 3, 115, 115]}}),
}

# text output option -> (its command-line arguments, the library's rendering of a GraphDiff it prints);
# JSON: test_options_map_to_the_library, HTML: test_html_to_a_file
RENDERINGS = {
    "text": ([], lambda changes: changes.render_text()),
    "--all": (["--all"], lambda changes: changes.render_text(show_all=True)),
    "--color always": (["--color", "always"], lambda changes: changes.render_text(colour=True)),
}


def with_plan(value, plan):
    return plan if value == PLAN_FILE else value


def test_help_lists_the_options(cli):
    code, out, _ = cli("diff", "--help")
    assert code == 0
    for option in ("--weights-a", "--weights-b", "--plan", "--format", "{text,json,html}", "--text", "--all", "-o"):
        assert option in out


def test_exit_codes_and_the_summary_on_stderr(cli, onnx_pair):
    before, after, _ = onnx_pair
    code, out, err = cli("diff", LENET, LENET)
    assert code == 0 and "EQUAL: 0 changed, 0 removed, 0 added" in err and "EQUAL" not in out
    code, out, err = cli("diff", before, after)
    assert code == 1 and "DIFFERENT: 3 changed, 2 removed, 0 added, 4 unchanged" in err and "DIFFERENT" not in out
    assert "\x1b[" not in out  # no colour off a terminal
    code, out, err = cli("diff", before, CAFFE_DATA / "missing.prototxt")
    assert code == 2 and err.startswith("error: ") and out == ""


@pytest.mark.parametrize("option", OPTIONS)
def test_options_map_to_the_library(cli, mini_renamed, option):
    """The CLI's JSON is the library's report for the options it stands for."""
    prototxt, plan = mini_renamed
    args, options = OPTIONS[option]
    args = [with_plan(arg, plan) for arg in args]
    options = {key: with_plan(value, plan) for key, value in options.items()}
    code, out, err = cli("diff", MINI, prototxt, *args, "--format", "json")
    report = pr.diff(MINI, prototxt, **options).to_dict()
    assert code == 1, err
    assert json.loads(out) == report
    if options:  # the option changes the report, so a CLI that dropped it would fail above
        assert report != pr.diff(MINI, prototxt).to_dict()


@pytest.mark.parametrize("output", RENDERINGS)
def test_output_options_print_the_library_renderings(cli, mini_renamed, output):
    prototxt, _ = mini_renamed
    args, render = RENDERINGS[output]
    changes = pr.diff(MINI, prototxt)
    code, out, err = cli("diff", MINI, prototxt, *args)
    assert code == 1, err
    assert out == render(changes)
    if args:  # not the default rendering, so a CLI that dropped the option would fail above
        assert out != changes.render_text()


def test_text_option_appends_the_text_diff(cli, mini_renamed, with_text_diff):
    prototxt, _ = mini_renamed
    code, out, _ = cli("diff", MINI, prototxt, "--text")
    expected = with_text_diff(pr.diff(MINI, prototxt)).render_text()
    assert code == 1 and out == expected
    assert expected != pr.diff(MINI, prototxt).render_text()


def test_weights_options_and_an_output_file(cli, mini_fcn, tmp_path):
    prototxt, caffemodel = mini_fcn
    model_b = shutil.copy(prototxt, tmp_path / "b.prototxt")  # no caffemodel beside it
    weights_a, weights_b = MINI.with_suffix(".caffemodel"), shutil.copy(caffemodel, tmp_path / "b_weights.caffemodel")
    report = tmp_path / "diff.txt"
    code, out, err = cli("diff", MINI, model_b, "--weights-a", weights_a, "--weights-b", weights_b, "-o", report)
    assert code == 1 and out == ""  # the report goes to the file, the summary to stderr
    assert "DIFFERENT: 3 changed, 0 removed, 0 added, 21 unchanged" in err
    expected = pr.diff(MINI, model_b, weights_a=weights_a, weights_b=weights_b).render_text()
    assert report.read_text() == expected
    assert expected != pr.diff(MINI, model_b).render_text()  # B's weights are read only when named


def test_mixed_formats_are_refused(cli):
    code, out, err = cli("diff", LENET, VGG)
    assert code == 2 and "cannot diff a caffe model" in err and "Hint:" in err and out == ""
    assert "Traceback" not in err


def test_errors_as_json(cli):
    code, out, _ = cli("diff", LENET, VGG, "--format", "json")
    error = json.loads(out)
    assert code == 2 and error["error"] == "UsageError" and error["hint"]


@pytest.mark.parametrize("option", ["--weights-a", "--weights-b"])
def test_weights_options_are_for_caffe(cli, onnx_pair, option):
    before, after, _ = onnx_pair
    code, out, err = cli("diff", before, after, option, "x.caffemodel")
    assert code == 2 and "Caffe models only" in err and out == ""


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "the plan is not JSON"),
        ('{"plan_version": 1}', "not a proto-rewrite plan"),
        ('{"plan_version": 99}', "unsupported plan version"),
    ],
)
def test_bad_plan_files(cli, tmp_path, content, message):
    plan = tmp_path / "plan.json"
    plan.write_text(content)
    code, _, err = cli("diff", LENET, LENET, "--plan", plan)
    assert code == 2 and message in err


def test_plan_of_the_other_format(cli, onnx_pair):
    plan = onnx_pair[2]
    code, _, err = cli("diff", LENET, LENET, "--plan", plan)
    assert code == 2 and "--plan was made for onnx models; these are caffe models" in err
    with pytest.raises(UsageError) as caught:  # the library refuses it too, naming its own argument
        pr.diff(LENET, LENET, plan=plan)
    assert caught.value.options == ("plan",) and "plan was made for onnx models" in caught.value.message
    assert cli("diff", LENET, LENET, "--plan", ROOT / "missing.json")[0] == 2


def test_no_weights_excludes_weight_files(cli):
    code, _, err = cli("diff", LENET, LENET, "--no-weights", "--weights-a", LENET.with_suffix(".caffemodel"))
    assert code == 2 and "--no-weights" in err


def test_html_to_a_file(cli, onnx_pair, tmp_path):
    before, after, _ = onnx_pair
    target = tmp_path / "out" / "diff.html"
    target.parent.mkdir()
    code, out, err = cli("diff", before, after, "--format", "html", "-o", target)
    assert code == 1 and out == "" and "DIFFERENT" in err
    text = target.read_text()
    assert text.startswith("<!DOCTYPE html>") and 'id="diff-data"' in text
    assert text == pr.diff(before, after).to_html()
    assert [p.name for p in target.parent.iterdir()] == ["diff.html"]  # no temporary file left


def test_a_failed_load_writes_nothing(cli, tmp_path):
    target = tmp_path / "diff.json"
    code, _, _ = cli("diff", LENET, tmp_path / "missing.prototxt", "-o", target)
    assert code == 2 and not target.exists()


def test_installed_console_script(tmp_path):
    script = shutil.which("proto-rewrite", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("proto-rewrite is not installed in this environment (pip install .)")
    result = subprocess.run(
        [script, "diff", str(LENET), str(LENET)], capture_output=True, text=True, cwd=ROOT, check=False
    )
    if "invalid choice: 'diff'" in result.stderr:
        pytest.skip("the installed proto-rewrite predates the diff command (reinstall with pip install .)")
    assert result.returncode == 0, result.stderr
    assert "equal: 0 changed" in result.stdout
