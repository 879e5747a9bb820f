"""The diff command line: exit codes, outputs, errors (text and JSON), and the installed script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import CAFFE_DATA, ROOT

LENET = ROOT / "samples" / "lenet" / "lenet.prototxt"
VGG = ROOT / "samples" / "onnx" / "vgg_mini.onnx"


def test_help_lists_the_options(cli):
    code, out, _ = cli("diff", "--help")
    assert code == 0
    for option in ("--weights-a", "--weights-b", "--plan", "--format", "{text,json,html}", "--text", "--all", "-o"):
        assert option in out


def test_exit_codes_equal_different_error(cli, onnx_pair):
    before, after, _ = onnx_pair
    assert cli("diff", LENET, LENET)[0] == 0
    assert cli("diff", before, after)[0] == 1
    assert cli("diff", before, CAFFE_DATA / "missing.prototxt")[0] == 2


def test_mixed_formats_are_refused(cli):
    code, out, err = cli("diff", LENET, VGG)
    assert code == 2 and "cannot diff a caffe model" in err and "Hint:" in err and out == ""
    assert "Traceback" not in err


def test_errors_as_json(cli):
    code, out, _ = cli("diff", LENET, VGG, "--format", "json")
    error = json.loads(out)
    assert code == 2 and error["error"] == "UsageError" and error["hint"]


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
    assert code == 2 and "plan for onnx models" in err
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
