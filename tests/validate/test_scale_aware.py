"""The default comparison is scale-aware: max|a-b| <= tol x max|a| per output, reported beside the
element-wise figures; the element-wise rule (atol + rtol x |a|) stays available."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from corpus import ROOT
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite.cli import main
from proto_rewrite.errors import UsageError
from proto_rewrite.validation.compare_models import ValidateOptions, validate_models
from proto_rewrite.validation.stats import ELEMENTWISE, SCALE, compare
from proto_rewrite.validation.tolerances import Tolerances

# A large-magnitude output (max |a| = 225) whose near-zero element is off by 9e-5 in B:
# 9e-5 / 225 = 4e-7 of the output's magnitude, yet 9e-5 > 1e-5 + 1e-4 x 1e-3 element-wise.
VALUES = np.array([225.0, 1e-3, -180.0, 97.5, -3.25, 60.0], np.float32)
OFF = VALUES.copy()
OFF[1] += np.float32(9e-5)


def constant_output_model(values: np.ndarray) -> onnx.ModelProto:
    """y = x * 0 + values: the output does not depend on the random input."""
    nodes = [helper.make_node("Mul", ["x", "zero"], ["m"]), helper.make_node("Add", ["m", "c"], ["y"])]
    inits = [numpy_helper.from_array(np.zeros(6, np.float32), "zero"), numpy_helper.from_array(values, "c")]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_large_output_with_a_near_zero_element_passes_by_default_and_fails_elementwise():
    a, b = constant_output_model(VALUES), constant_output_model(OFF)
    result = validate_models(a, b, ValidateOptions())
    (output,) = result.outputs
    c = output.comparison
    assert c.rule == SCALE and c.scale_tol == 1e-5
    assert c.scale_error == pytest.approx(9e-5 / 225, rel=0.05)  # 4e-7
    assert c.scale_error < 5e-7 and c.absolute.max == pytest.approx(9e-5, rel=0.05)
    assert c.mismatches == 1 and not c.elementwise_passed  # the element-wise figure, reported
    assert result.passed

    strict = validate_models(a, b, ValidateOptions(tolerances=Tolerances(rule=ELEMENTWISE)))
    assert strict.outputs[0].comparison.rule == ELEMENTWISE
    assert not strict.passed and strict.outputs[0].comparison.mismatches == 1


def test_scale_rule_still_fails_a_real_difference():
    wrong = VALUES.copy()
    wrong[0] += 0.01  # 0.01 / 225 = 4.4e-5 of the magnitude
    result = validate_models(constant_output_model(VALUES), constant_output_model(wrong), ValidateOptions())
    assert not result.passed and result.outputs[0].comparison.scale_error > 1e-5


def test_compare_scale_rule_edges():
    zeros = np.zeros(4)
    assert compare(zeros, zeros, 1e-5, 0, scale_tol=1e-5).passed
    # an all-zero reference: the scale rule falls back to atol
    assert compare(zeros, np.full(4, 5e-6), 1e-5, 0, scale_tol=1e-5).passed
    result = compare(zeros, np.full(4, 5e-5), 1e-5, 0, scale_tol=1e-5)
    assert not result.passed and result.scale_error == float("inf") and result.scale_bound == 1e-5
    nan = np.array([1.0, np.nan])
    assert not compare(nan, np.array([1.0, 2.0]), 1, 1, scale_tol=1.0).passed  # NaN mismatches always fail
    assert compare(np.array([2.0]), np.array([2.0]), 0, 0).rule == ELEMENTWISE  # no scale_tol: element-wise


def test_tolerance_parsing_chooses_the_rule():
    assert Tolerances.parse(None, None).rule == SCALE
    assert Tolerances.parse(["1e-3"], None).rule == ELEMENTWISE  # --atol implies the element-wise rule
    assert Tolerances.parse(None, ["1e-3"], compare=SCALE).rule == SCALE  # unless --compare scale says otherwise
    tolerances = Tolerances.parse(None, None, ["1e-6", "y:1e-3"])
    assert tolerances.scale_for_output("y", np.float32) == 1e-3
    assert tolerances.scale_for_output("z", np.float32) == 1e-6
    assert Tolerances().scale_for_output("z", np.float16) == 1e-2
    assert Tolerances(rule=ELEMENTWISE).scale_for_output("z", np.float32) is None
    assert Tolerances().scale_for_output("ids", np.int64) == 0.0
    with pytest.raises(UsageError, match="no effect"):
        Tolerances.parse(None, None, ["1e-6"], ELEMENTWISE)
    with pytest.raises(UsageError, match="not a comparison rule"):
        Tolerances.parse(None, None, None, "cosine")
    with pytest.raises(UsageError, match="not a number"):
        Tolerances.parse(None, None, ["y:small"])


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    return main(argv, stdout=out, stderr=err), out.getvalue(), err.getvalue()


def test_cli_rules_and_report(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    a, b = tmp_path / "a.onnx", tmp_path / "b.onnx"
    onnx.save(constant_output_model(VALUES), a)
    onnx.save(constant_output_model(OFF), b)
    a, b = str(a), str(b)

    code, out, err = run(["validate", a, b])
    assert code == 0 and err.startswith("PASSED")
    assert "scale-aware" in out and "err/max|A|" in out and "1/6" in out  # the element-wise count beside it
    code, out, _ = run(["validate", a, b, "--format", "json"])
    report = json.loads(out)
    jsonschema.validate(report, json.loads((ROOT / "schemas" / "report.schema.json").read_text()))
    (output,) = report["outputs"]
    assert report["comparison"] == "scale" and output["rule"] == "scale" and output["passed"]
    assert output["elementwise_passed"] is False and output["mismatches"] == 1
    assert output["scale_error"] < 5e-7 and output["scale_bound"] == pytest.approx(225e-5)

    assert run(["validate", a, b, "--compare", "elementwise"])[0] == 1
    assert run(["validate", a, b, "--atol", "1e-5"])[0] == 1  # --atol implies the element-wise rule
    assert run(["validate", a, b, "--compare", "scale", "--atol", "1e-5"])[0] == 0
    assert run(["validate", a, b, "--scale-tol", "1e-7"])[0] == 1
    assert run(["validate", a, b, "--scale-tol", "y:1e-6"])[0] == 0
    code, _, err = run(["validate", a, b, "--compare", "elementwise", "--scale-tol", "1e-6"])
    assert code == 2 and "no effect" in err and "Traceback" not in err
    code, out, _ = run(["validate", a, b, "--compare", "elementwise", "--format", "json"])
    jsonschema.validate(json.loads(out), json.loads((ROOT / "schemas" / "report.schema.json").read_text()))
