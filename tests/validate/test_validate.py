"""validate: equal pairs pass, perturbed ones fail naming the output, mismatched ones are bad input."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from corpus import ROOT
from onnx import helper, numpy_helper

from proto_rewrite.cli import main
from proto_rewrite.validation.compare_models import FCN, ValidateOptions, validate_models
from proto_rewrite.validation.stats import compare
from proto_rewrite.validation.tolerances import Tolerances


def fc_model(weight: np.ndarray, *, four_d_output=False, output="scores", dtype=np.float32, softmax=False):
    """x (N, 3, 2, 2) -> Flatten -> Gemm (transB=1) [-> Reshape to (N, M, 1, 1)] [-> Softmax]."""
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    m = weight.shape[0]
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w"], ["logits" if softmax else "fc"], transB=1),
    ]
    inits = [numpy_helper.from_array(weight.astype(dtype), "w")]
    last = "logits" if softmax else "fc"
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["fc"], axis=1))
        last = "fc"
    if four_d_output:
        nodes.append(helper.make_node("Reshape", [last, "shape4"], [output]))
        inits.append(numpy_helper.from_array(np.array([0, m, 1, 1], np.int64), "shape4"))
        out_shape = ["N", m, 1, 1]
    else:
        nodes.append(helper.make_node("Identity", [last], [output]))
        out_shape = ["N", m]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", elem, ["N", 3, 2, 2])],
        [helper.make_tensor_value_info(output, elem, out_shape)],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


WEIGHT = np.random.RandomState(0).standard_normal((5, 12)).astype(np.float32)
OPTIONS = ValidateOptions(batch=2)


def test_equal_models_pass():
    result = validate_models(fc_model(WEIGHT), fc_model(WEIGHT.copy()), OPTIONS)
    assert result.passed
    (output,) = result.outputs
    assert output.comparison.absolute.max == 0.0 and output.comparison.cosine_similarity == pytest.approx(1.0)


def test_fcn_shaped_output_is_recognised():
    result = validate_models(fc_model(WEIGHT), fc_model(WEIGHT, four_d_output=True), OPTIONS)
    assert result.passed and result.outputs[0].relation == FCN
    assert result.outputs[0].shape_b == (2, 5, 1, 1)


def test_one_perturbed_weight_fails_and_names_the_output():
    perturbed = WEIGHT.copy()
    perturbed[2, 7] += 0.01
    result = validate_models(fc_model(WEIGHT), fc_model(perturbed), OPTIONS)
    assert not result.passed
    comparison = result.outputs[0].comparison
    assert comparison.mismatches > 0 and comparison.min_atol == pytest.approx(comparison.absolute.max)


def test_saturated_softmax_warns_and_compares_its_input():
    big = WEIGHT * 1000
    result = validate_models(fc_model(big, softmax=True), fc_model(big, softmax=True), OPTIONS)
    assert any("saturated softmax" in w for w in result.warnings)
    assert [t.name for t in result.intermediates] == ["logits"]


def test_localize_names_the_first_divergence():
    perturbed = WEIGHT.copy()
    perturbed[0, 0] += 1
    options = ValidateOptions(batch=2, localize=True)
    result = validate_models(fc_model(WEIGHT, softmax=True), fc_model(perturbed, softmax=True), options)
    assert result.first_divergence == "logits"
    assert "flat" in [t.name for t in result.intermediates if t.comparison.passed]


def test_compare_handles_nan_inf_and_zero_reference():
    ref = np.array([0.0, 1.0, np.nan, np.inf, 2.0])
    assert compare(ref, ref.copy(), 0, 0).passed
    got = np.array([0.0, 1.0, 1.0, np.inf, 2.0])
    result = compare(ref, got, 1e-3, 1e-3)
    assert result.nonfinite_mismatches == 1 and not result.passed
    result = compare(np.array([0.0]), np.array([1e-3]), 0, 0)
    assert result.min_rtol == float("inf") and result.min_atol == pytest.approx(1e-3)


def test_tolerances_per_output_and_defaults():
    tolerances = Tolerances.parse(["1e-3", "scores:0.5"], ["scores:0"])
    assert tolerances.for_output("scores", np.float32) == (0.5, 0.0)
    assert tolerances.for_output("other", np.float32) == (1e-3, 1e-4)
    assert Tolerances().for_output("x", np.float16) == (1e-2, 1e-2)


def test_fp16_pairs_use_fp16_tolerances():
    a, b = fc_model(WEIGHT, dtype=np.float16), fc_model(WEIGHT, dtype=np.float16, four_d_output=True)
    result = validate_models(a, b, OPTIONS)
    assert result.passed and result.outputs[0].comparison.atol == 1e-2


# --- the command ------------------------------------------------------------------------------


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    return main(argv, stdout=out, stderr=err), out.getvalue(), err.getvalue()


def save(model, path):
    onnx.save(model, str(path))
    return str(path)


def test_cli_exit_codes_and_json_report(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    a = save(fc_model(WEIGHT), tmp_path / "a.onnx")
    b = save(fc_model(WEIGHT, four_d_output=True), tmp_path / "b.onnx")
    perturbed = WEIGHT.copy()
    perturbed[1, 1] += 0.1
    c = save(fc_model(perturbed), tmp_path / "c.onnx")
    renamed = save(fc_model(WEIGHT, output="other"), tmp_path / "r.onnx")
    schema = json.loads((ROOT / "schemas" / "report.schema.json").read_text())

    code, out, err = run(["validate", a, b, "--batch", "3", "--format", "json"])
    assert code == 0 and err.startswith("PASSED")
    report = json.loads(out)
    jsonschema.validate(report, schema)
    assert report["outputs"][0]["relation"] == "fcn"

    code, out, err = run(["validate", a, c, "--batch", "1"])
    assert code == 1 and err.startswith("FAILED: scores")
    assert "FAIL" in out

    code, out, err = run(["validate", a, c, "--batch", "1", "--atol", "scores:1"])
    assert code == 0

    code, _, err = run(["validate", a, renamed, "--batch", "1"])
    assert code == 2 and "scores" in err and "other" in err

    code, _, err = run(["validate", a, b])
    assert code == 0 and "x (N, 3, 2, 2) -> 1x3x2x2 [dim 0 = 1 (batch)]" in err  # symbolic batch: 1, said


def test_cli_npz_inputs_round_trip(tmp_path):
    a = save(fc_model(WEIGHT), tmp_path / "a.onnx")
    b = save(fc_model(WEIGHT, four_d_output=True), tmp_path / "b.onnx")
    inputs, outputs = tmp_path / "in.npz", tmp_path / "out.npz"
    assert (
        run(
            [
                "validate",
                a,
                b,
                "--batch",
                "2",
                "--seed",
                "4",
                "--save-inputs",
                str(inputs),
                "--save-outputs",
                str(outputs),
            ]
        )[0]
        == 0
    )
    saved = np.load(inputs)
    assert saved["x"].shape == (2, 3, 2, 2)
    code, _, _ = run(["validate", a, b, "--inputs", str(inputs), "--save-outputs", str(tmp_path / "again.npz")])
    assert code == 0
    first, again = np.load(outputs), np.load(tmp_path / "again.npz")
    np.testing.assert_array_equal(first["b/scores"], again["b/scores"])
    bad = tmp_path / "bad.npz"
    np.savez(bad, y=np.zeros((1, 3, 2, 2), np.float32))
    code, _, err = run(["validate", a, b, "--inputs", str(bad)])
    assert code == 2 and "missing: ['x']" in err


def test_cuda_request_without_a_gpu_build_is_a_clear_error(tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: the device check runs on the GPU machine instead")
    a = save(fc_model(WEIGHT), tmp_path / "a.onnx")
    code, _, err = run(["validate", a, a, "--batch", "1", "--device", "cuda"])
    assert code == 2 and "no CUDA execution provider" in err and "onnxruntime-gpu" in err
