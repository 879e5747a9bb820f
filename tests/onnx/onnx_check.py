"""Run ONNX models (onnxruntime, graph optimisations off; onnx's reference evaluator for float64,
which onnxruntime's CPU Conv lacks) and compare outputs with dtype-aware tolerances."""

from __future__ import annotations

import functools

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from proto_rewrite.onnx.model import OnnxModel
from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite

TOLERANCE = {np.dtype(np.float32): 1e-5, np.dtype(np.float16): 1e-2, np.dtype(np.float64): 1e-12}


@functools.cache
def newest_opset() -> int:
    """The newest default-domain opset both the installed onnx and onnxruntime know."""
    for opset in range(onnx.defs.onnx_opset_version(), 10, -1):
        graph = helper.make_graph(
            [helper.make_node("Relu", ["x"], ["y"])],
            "probe",
            [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = helper.find_min_ir_version_for([helper.make_opsetid("", opset)])
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            return opset
        except Exception:  # noqa: BLE001 - onnxruntime too old for this opset
            continue
    raise RuntimeError("onnxruntime runs no opset above 10")


def to_proto(model) -> onnx.ModelProto:
    return model.to_proto() if isinstance(model, OnnxModel) else model


def run(model, feeds: dict) -> list[np.ndarray]:
    proto = to_proto(model)
    if any(i.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE for i in proto.graph.input) or any(
        t.data_type == onnx.TensorProto.DOUBLE for t in proto.graph.initializer
    ):
        from onnx.reference import ReferenceEvaluator

        return [np.asarray(o) for o in ReferenceEvaluator(proto).run(None, feeds)]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def run_path(path, feeds: dict) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).run(None, feeds)


def assert_close(expected: np.ndarray, actual: np.ndarray, what: str = "output") -> None:
    expected = np.asarray(expected)
    actual = np.asarray(actual)
    assert actual.size == expected.size, f"{what}: {actual.shape} vs {expected.shape}"
    actual = actual.reshape(expected.shape)
    if expected.dtype.kind not in "fc":
        np.testing.assert_array_equal(actual, expected, err_msg=what)
        return
    scale = max(float(np.abs(expected.astype(np.float64)).max()), 1e-30)
    error = float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max())
    limit = TOLERANCE[expected.dtype] * scale
    assert error <= limit, f"{what}: max abs error {error:.3g} > {limit:.3g} (max |output| {scale:.3g})"


def feeds_for(proto: onnx.ModelProto, shapes: dict | None = None, seed: int = 1) -> dict:
    rng = np.random.RandomState(seed)
    initializers = {t.name for t in proto.graph.initializer}
    feeds = {}
    for value in proto.graph.input:
        if value.name in initializers:
            continue
        tensor_type = value.type.tensor_type
        shape = (shapes or {}).get(value.name) or [
            d.dim_value if d.HasField("dim_value") else 2 for d in tensor_type.shape.dim
        ]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
        feeds[value.name] = rng.randn(*shape).astype(dtype)
    return feeds


def convert(proto_or_model, mode="fcn", selection=None, **options):
    model = proto_or_model if isinstance(proto_or_model, OnnxModel) else OnnxModel.from_proto(proto_or_model)
    plan = plan_onnx_rewrite(model, selection=selection, mode=mode, **options)
    return plan, apply_onnx_plan(model, plan)


def ops(model) -> list[str]:
    return [node.op_type for node in to_proto(model).graph.node]


def initializer_shapes(model) -> dict[str, tuple[int, ...]]:
    return {t.name: tuple(t.dims) for t in to_proto(model).graph.initializer}
