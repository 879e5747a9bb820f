"""onnx before 1.21 crashes the process (SIGSEGV) in data propagation on a Slice with a negative
step over an empty shape tensor: such a model must be read, inspected and converted without it."""

import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite.onnx.shapes import data_prop_is_safe


def _model() -> onnx.ModelProto:
    def const(name, values):
        return numpy_helper.from_array(np.array(values, np.int64), name)

    nodes = [
        helper.make_node("Shape", ["x"], ["empty"], name="shape", end=-6),  # no dims: an empty tensor
        helper.make_node("Slice", ["empty", "b", "e", "a", "s"], ["part"], name="slice"),
        helper.make_node("Flatten", ["x"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "w"], ["y"], name="fc", transB=1),
    ]
    rng = np.random.default_rng(0)
    inits = [
        const("b", [-7]),
        const("e", [7]),
        const("a", [0]),
        const("s", [-1]),
        numpy_helper.from_array(rng.standard_normal((3, 24)).astype(np.float32), "w"),
    ]
    graph = helper.make_graph(
        nodes,
        "crash",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 4])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3]),
            helper.make_tensor_value_info("part", TensorProto.INT64, None),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    return model


def test_guard_keeps_data_propagation_where_it_is_safe():
    """Only graphs with a Slice stepping backwards (or by an unknown step) lose data propagation, and
    only on an onnx that crashes on them: a forward Slice keeps it everywhere."""
    forward = _model()
    steps = next(t for t in forward.graph.initializer if t.name == "s")
    steps.CopyFrom(numpy_helper.from_array(np.array([1], np.int64), "s"))
    assert data_prop_is_safe(forward)
    old_onnx = tuple(int(part) for part in onnx.__version__.split(".")[:2]) < (1, 21)
    assert data_prop_is_safe(_model()) is not old_onnx


def test_inspect_and_convert_do_not_crash(tmp_path):
    path = tmp_path / "crash.onnx"
    onnx.save(_model(), path)
    for args in (["inspect", str(path)], ["convert", str(path), "-o", str(tmp_path / "out.onnx")]):
        result = subprocess.run(
            [sys.executable, "-m", "proto_rewrite", *args], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, (args, result.returncode, result.stderr)
