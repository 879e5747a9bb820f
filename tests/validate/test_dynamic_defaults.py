"""validate without flags on models with symbolic input dimensions: batch 1, other dimensions from
the other model's fixed size, said on stderr and in the JSON report; --input-shape overrides."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
from corpus import ROOT
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite.cli import main
from proto_rewrite.cli.options import FLAG_SPELLING
from proto_rewrite.errors import UsageError
from proto_rewrite.validation.compare_models import ValidateOptions, validate_models
from proto_rewrite.validation.dynamic import BATCH, OTHER_MODEL, choose_shapes, declared_shapes
from proto_rewrite.validation.inputs import InputSpec

RNG = np.random.RandomState(3)
CONV = RNG.standard_normal((4, 3, 3, 3)).astype(np.float32)
FC = RNG.standard_normal((5, 4 * 6 * 6)).astype(np.float32)


def original(batch="N") -> onnx.ModelProto:
    """x (batch, 3, 8, 8) -> Conv 3x3 -> Relu -> Flatten -> Gemm: a classifier at a fixed size."""
    nodes = [
        helper.make_node("Conv", ["x", "k"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"]),
        helper.make_node("Gemm", ["f", "w"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "a",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 5])],
        [numpy_helper.from_array(CONV, "k"), numpy_helper.from_array(FC, "w")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def fcn() -> onnx.ModelProto:
    """The same with the Gemm as a 6 x 6 convolution and every input dimension symbolic."""
    nodes = [
        helper.make_node("Conv", ["x", "k"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "w4"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "b",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5, "h", "w"])],
        [numpy_helper.from_array(CONV, "k"), numpy_helper.from_array(FC.reshape(5, 4, 6, 6), "w4")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_symbolic_dims_default_to_batch_1_and_the_other_models_size():
    # B (the fcn model) as the reference: its H and W come from A's fixed 8 x 8, the batch is 1
    result = validate_models(fcn(), original(), ValidateOptions(), names=("fcn.onnx", "orig.onnx"))
    assert result.passed and result.inputs["x"][0] == (1, 3, 8, 8)
    (default,) = result.input_defaults
    assert [(d.axis, d.value, d.source, d.model) for d in default.dims] == [
        (0, 1, BATCH, None),
        (2, 8, OTHER_MODEL, "orig.onnx"),
        (3, 8, OTHER_MODEL, "orig.onnx"),
    ]
    assert result.outputs[0].shape_b == (1, 5) and result.outputs[0].comparison.absolute.max < 1e-4


def test_original_as_reference_needs_only_the_batch():
    result = validate_models(original(), fcn(), ValidateOptions())
    assert result.passed and result.inputs["x"][0] == (1, 3, 8, 8)
    assert [(d.axis, d.source) for d in result.input_defaults[0].dims] == [(0, BATCH)]


def test_fixed_models_have_no_defaults_and_batch_and_input_shape_override():
    assert validate_models(original(batch=1), original(batch=1), ValidateOptions()).input_defaults == []
    result = validate_models(original(), fcn(), ValidateOptions(batch=3))
    assert result.inputs["x"][0] == (3, 3, 8, 8) and result.input_defaults == []  # --batch is not a default
    result = validate_models(fcn(), original(), ValidateOptions(input_shapes={"x": (2, 3, 8, 8)}))
    assert result.inputs["x"][0] == (2, 3, 8, 8) and result.input_defaults == []


def test_a_dimension_neither_model_fixes_is_an_error_naming_it():
    with pytest.raises(UsageError, match=r"input 'x' has symbolic dimension 2 in both models") as err:
        validate_models(fcn(), fcn(), ValidateOptions())
    assert (
        "of 'x' in input_shapes" in err.value.hint
        and "of 'x' in --input-shape" in err.value.with_flags(FLAG_SPELLING).hint
    )


def test_choose_shapes_rank_mismatch_is_not_borrowed():
    spec = InputSpec("x", np.dtype(np.float32), ("N", 3, "H"))
    with pytest.raises(UsageError):
        choose_shapes([spec], {"x": (1, 3, 8, 8)}, {}, None)
    assert declared_shapes(fcn()) == {"x": ("N", 3, "H", "W")}


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    return main(argv, stdout=out, stderr=err), out.getvalue(), err.getvalue()


def test_cli_says_the_defaults_on_stderr_and_in_json(tmp_path):
    jsonschema = pytest.importorskip("jsonschema")
    a, b = str(tmp_path / "a.onnx"), str(tmp_path / "b.onnx")
    onnx.save(original(), a)
    onnx.save(fcn(), b)
    code, out, err = run(["validate", b, a, "--format", "json"])
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note: symbolic input dimensions")]
    assert len(notes) == 1 and f"dim 2 = 8 (fixed in {a})" in notes[0] and "--input-shape" in notes[0]
    report = json.loads(out)
    jsonschema.validate(report, json.loads((ROOT / "schemas" / "report.schema.json").read_text()))
    (default,) = report["input_defaults"]
    assert default["declared"] == ["N", 3, "H", "W"] and default["shape"] == [1, 3, 8, 8]
    assert [d["source"] for d in default["defaulted"]] == ["batch", "other model", "other model"]

    code, out, err = run(["validate", a, b])
    assert code == 0 and "default shape: x (N, 3, 8, 8) -> 1x3x8x8" in out
    code, _, err = run(["validate", a, b, "--input-shape", "x:2,3,8,8"])
    assert code == 0 and "note: symbolic" not in err
    code, _, err = run(["validate", a, b, "-q"])
    assert code == 0 and "note:" not in err
    code, _, err = run(["validate", b, b])
    assert code == 2 and "symbolic dimension 2 in both models" in err and "Traceback" not in err
