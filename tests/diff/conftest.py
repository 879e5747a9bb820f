"""Fixtures of the diff tests: the CLI runner, the JSON schema, and model pairs made by converting."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from corpus import CAFFE_DATA, ROOT

from proto_rewrite.cli.main import main

SCHEMA_PATH = ROOT / "schemas" / "diff.schema.json"
MINI = ROOT / "samples" / "caffenet_mini" / "caffenet_mini.prototxt"


@pytest.fixture
def cli():
    """``cli(*args) -> (exit code, stdout, stderr)``, in-process through ``main``."""

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        code = main([str(a) for a in args], stdout=out, stderr=err)
        return code, out.getvalue(), err.getvalue()

    return run


@pytest.fixture(scope="session")
def check_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)

    def check(report: dict) -> dict:
        jsonschema.validate(report, schema, cls=jsonschema.Draft202012Validator)
        return report

    return check


@pytest.fixture(scope="session")
def make_fc_onnx():
    return _make_fc_onnx


@pytest.fixture(scope="session")
def convert_onnx():
    return _convert_onnx


def _make_fc_onnx(path, *, node_name_fc1: str = "fc1") -> None:
    """Conv -> Relu -> Flatten -> Gemm (transB=0) -> Relu -> Gemm (alpha 0.5, beta 2) -> Relu ->
    MatMul + Add: the three FC forms, each rewritten differently."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def init(name, shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "c1.w", "c1.b"], ["c1"], name="c1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="r1"),
        helper.make_node("Flatten", ["r1"], ["flat"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flat", "fc1.w", "fc1.b"], ["fc1"], name=node_name_fc1, transB=0),
        helper.make_node("Relu", ["fc1"], ["r2"], name="r2"),
        helper.make_node("Gemm", ["r2", "fc2.w", "fc2.b"], ["fc2"], name="fc2", alpha=0.5, beta=2.0, transB=1),
        helper.make_node("Relu", ["fc2"], ["r3"], name="r3"),
        helper.make_node("MatMul", ["r3", "fc3.w"], ["fc3_mm"], name="fc3"),
        helper.make_node("Add", ["fc3_mm", "fc3.b"], ["y"], name="fc3_add"),
    ]
    initializers = [
        init("c1.w", (8, 4, 1, 1)),
        init("c1.b", (8,)),
        init("fc1.w", (72, 16)),
        init("fc1.b", (16,)),
        init("fc2.w", (12, 16)),
        init("fc2.b", (12,)),
        init("fc3.w", (12, 5)),
        init("fc3.b", (5,)),
    ]
    graph = helper.make_graph(
        nodes,
        "fc_forms",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def _convert_onnx(source, target, mode: str = "fcn"):
    from proto_rewrite.onnx.model import load_onnx, save_onnx
    from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite

    model = load_onnx(source)
    plan = plan_onnx_rewrite(model, mode=mode)
    save_onnx(apply_onnx_plan(model, plan), target)
    return plan


@pytest.fixture(scope="session")
def onnx_pair(tmp_path_factory):
    """(before.onnx, after.onnx, plan.json): the FC forms model and its fcn conversion."""
    folder = tmp_path_factory.mktemp("onnx_pair")
    before, after, plan_path = folder / "before.onnx", folder / "after.onnx", folder / "plan.json"
    _make_fc_onnx(before)
    plan = _convert_onnx(before, after)
    plan_path.write_text(plan.to_json())
    return before, after, plan_path


@pytest.fixture(scope="session")
def convert_caffe():
    """The function converting a Caffe model to files (test modules cannot import this conftest)."""
    return _convert_caffe


def _convert_caffe(prototxt, folder, stem: str, *, weights=None, mode: str = "fcn", rename: str | None = None):
    """Convert a Caffe model (its caffemodel when ``weights`` is given); returns (prototxt, caffemodel or None, plan)."""
    from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions, apply_caffe_plan, plan_caffe_rewrite
    from proto_rewrite.caffe.model import load_caffe, save_caffe

    model = load_caffe(prototxt, weights)
    plan = plan_caffe_rewrite(model, CaffeRewriteOptions(mode=mode, rename_suffix=rename))
    out_prototxt = folder / f"{stem}.prototxt"
    out_weights = folder / f"{stem}.caffemodel" if weights else None
    save_caffe(apply_caffe_plan(model, plan), out_prototxt, out_weights)
    return out_prototxt, out_weights, plan


@pytest.fixture(scope="session")
def caffenet_fcn_prototxt(tmp_path_factory):
    """CaffeNet's fcn conversion, structure only (no weights)."""
    prototxt, _, _ = _convert_caffe(
        CAFFE_DATA / "bvlc_reference_caffenet.prototxt", tmp_path_factory.mktemp("caffenet_fcn"), "caffenet_fcn"
    )
    return prototxt


@pytest.fixture(scope="session")
def mini_fcn(tmp_path_factory):
    """(prototxt, caffemodel): the caffenet_mini sample's fcn conversion, with its weights."""
    folder = tmp_path_factory.mktemp("mini_fcn")
    prototxt, caffemodel, _ = _convert_caffe(MINI, folder, "mini_fcn", weights=MINI.with_suffix(".caffemodel"))
    return prototxt, caffemodel


@pytest.fixture(scope="session")
def mini_renamed(tmp_path_factory):
    """(prototxt, plan.json): caffenet_mini's exact conversion with its FCs renamed ``-conv``, with weights."""
    folder = tmp_path_factory.mktemp("mini_renamed")
    prototxt, _, plan = _convert_caffe(
        MINI, folder, "mini_exact", weights=MINI.with_suffix(".caffemodel"), mode="exact", rename="-conv"
    )
    plan_path = folder / "plan.json"
    plan_path.write_text(plan.to_json())
    return prototxt, plan_path


@pytest.fixture(scope="session")
def with_text_diff():
    """``with_text_diff(changes) -> changes`` with the unified diff of the two models' normalised
    texts added, as ``diff --text`` adds it (``pr.diff`` has no option for it)."""
    from proto_rewrite.graphdiff.load import text_diff

    def add(changes):
        changes.text_diff = text_diff(changes.a, changes.b)
        return changes

    return add
