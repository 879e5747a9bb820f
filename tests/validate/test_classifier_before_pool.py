"""validate on a --classifier-before-pool conversion: B's (N, K, h, w) score map against A's (N, K)
at the same input size, compared through the map's spatial mean (what A's global average pool
computes), said in the report."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from corpus import ROOT
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite.cli import main
from proto_rewrite.validation.compare_models import SPATIAL_MEAN, OutputMismatchError, ValidateOptions, validate_models

RNG = np.random.RandomState(5)
CONV = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
FC = RNG.standard_normal((5, 4)).astype(np.float32)
BIAS = RNG.standard_normal(5).astype(np.float32)
TRUNK = [helper.make_node("Conv", ["x", "k"], ["c"]), helper.make_node("Relu", ["c"], ["r"])]
INPUT = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 10, 10])


def original(pool: str = "gap", four_d: bool = False) -> onnx.ModelProto:
    """Conv -> Relu -> global pool -> Flatten -> Gemm (+ bias) [-> Reshape to (N, K, 1, 1)]."""
    if pool == "gap":
        nodes = [helper.make_node("GlobalAveragePool", ["r"], ["p"])]
    elif pool == "reducemean":
        nodes = [helper.make_node("ReduceMean", ["r"], ["p"], axes=[2, 3], keepdims=1)]
    else:
        nodes = [helper.make_node("GlobalMaxPool", ["r"], ["p"])]
    nodes += [helper.make_node("Flatten", ["p"], ["f"]), helper.make_node("Gemm", ["f", "w", "b"], ["g"], transB=1)]
    inits = [numpy_helper.from_array(CONV, "k"), numpy_helper.from_array(FC, "w"), numpy_helper.from_array(BIAS, "b")]
    if four_d:
        nodes.append(helper.make_node("Reshape", ["g", "s"], ["y"]))
        inits.append(numpy_helper.from_array(np.array([1, 5, 1, 1], np.int64), "s"))
    else:
        nodes.append(helper.make_node("Identity", ["g"], ["y"]))
    graph = helper.make_graph(
        TRUNK + nodes, "a", [INPUT], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def before_pool(fc: np.ndarray = FC) -> onnx.ModelProto:
    """The classifier moved before the pool: a 1 x 1 convolution, the score map is the output."""
    nodes = TRUNK + [helper.make_node("Conv", ["r", "w4", "b"], ["y"])]
    inits = [
        numpy_helper.from_array(CONV, "k"),
        numpy_helper.from_array(fc.reshape(5, 4, 1, 1), "w4"),
        numpy_helper.from_array(BIAS, "b"),
    ]
    graph = helper.make_graph(nodes, "b", [INPUT], [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize("pool, four_d", [("gap", False), ("gap", True), ("reducemean", False)])
def test_score_map_is_compared_through_its_spatial_mean(pool, four_d):
    result = validate_models(original(pool, four_d), before_pool(), ValidateOptions())
    (output,) = result.outputs
    assert output.relation == SPATIAL_MEAN and output.shape_b == (1, 5, 8, 8)
    assert output.shape_a == ((1, 5, 1, 1) if four_d else (1, 5))
    assert result.passed and output.comparison.scale_error < 1e-6


def test_a_wrong_classifier_fails_through_the_mean():
    wrong = FC.copy()
    wrong[2, 1] += 0.05
    result = validate_models(original(), before_pool(wrong), ValidateOptions())
    assert not result.passed and result.outputs[0].relation == SPATIAL_MEAN


def test_a_max_pooled_original_is_not_averaged():
    with pytest.raises(OutputMismatchError, match=r"\[1, 5\] in A and \[1, 5, 8, 8\] in B"):
        validate_models(original("max"), before_pool(), ValidateOptions())


def test_cli_says_how_it_compared(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    a, b = str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx")
    onnx.save(original(), a)
    onnx.save(before_pool(), b)
    out, err = io.StringIO(), io.StringIO()
    assert main(["validate", a, b], stdout=out, stderr=err) == 0, err.getvalue()
    assert "spatial mean" in out.getvalue() and "1x5 ~ 1x5x8x8 (mean)" in out.getvalue()
    out = io.StringIO()
    assert main(["validate", a, b, "--format", "json"], stdout=out, stderr=io.StringIO()) == 0
    report = json.loads(out.getvalue())
    jsonschema.validate(report, json.loads((ROOT / "schemas" / "report.schema.json").read_text()))
    assert report["outputs"][0]["relation"] == "spatial-mean"
