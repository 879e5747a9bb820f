"""Helpers for the export tests: tiny nets from text, running the exported model in onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx

from proto_rewrite.caffe.init_weights import random_weights
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.caffe.onnx_export import export_onnx
from proto_rewrite.caffe.shapes import infer_shapes


def input_layer(*dims: int, name: str = "data") -> str:
    text = " ".join(f"dim: {d}" for d in dims)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {text} }} }} }}\n'


def caffe_net(tmp_path, text: str, weights: dict | None = None, seed: int = 0, name: str = "net"):
    """A CaffeModel from prototxt text; ``weights``: layer -> arrays, else random weights."""
    path = tmp_path / f"{name}.prototxt"
    path.write_text(text)
    model = load_caffe(path, weights=None)
    if weights is None:
        model.weights = random_weights(model.net, infer_shapes(model.net), seed)
    else:
        model.weights = {key: [np.asarray(a, np.float32) for a in arrays] for key, arrays in weights.items()}
    return model


def session(model_proto: onnx.ModelProto, extra_outputs: dict[str, int] | None = None, check: bool = True):
    """An onnxruntime session (optimisations off) on the model checked with full_check;
    ``extra_outputs``: value name -> rank, values to output as well."""
    import onnxruntime as ort

    for name, rank in (extra_outputs or {}).items():
        model_proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [None] * rank))
    data = model_proto.SerializeToString()
    if check:
        onnx.checker.check_model(data, full_check=True)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 2
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def session_from_file(path, extra_outputs: dict[str, int] | None = None):
    """A session on a model file whose weights are external data, with more values as outputs
    (a copy of the small .onnx beside it, pointing to the same data file)."""
    import onnxruntime as ort

    skeleton = onnx.load(str(path), load_external_data=False)
    for name, rank in (extra_outputs or {}).items():
        skeleton.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, [None] * rank))
    probe = path.with_name(path.stem + "_probe.onnx")
    probe.write_bytes(skeleton.SerializeToString())
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(probe), options, providers=["CPUExecutionProvider"])


def run(model, feeds: dict, *, extra_outputs: dict[str, int] | None = None, **export_args) -> dict[str, np.ndarray]:
    """Export ``model`` (checked with full_check), run it on ``feeds``; outputs by name."""
    proto = export_onnx(model, **export_args)
    sess = session(proto, extra_outputs)
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, feeds)))


def rel_error(actual, expected) -> float:
    """Max abs difference over max |expected|."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    error = float(np.max(np.abs(actual.astype(np.float64) - expected))) if expected.size else 0.0
    return error / (scale or 1.0)


def assert_rel(actual, expected, rtol: float = 1e-5, what: str = "") -> None:
    error = rel_error(actual, expected)
    assert error <= rtol, f"{what}: max abs error {error:.3g} x max |expected| > {rtol}"


def rng_input(shape, seed: int = 0, scale: str = "normal") -> np.ndarray:
    rs = np.random.RandomState(seed)
    if scale == "pixel":
        return rs.uniform(0, 255, shape).astype(np.float32)
    return rs.standard_normal(shape).astype(np.float32)


def canonical_rows(rows: np.ndarray) -> np.ndarray:
    """Detection rows (…, 7) sorted on every column: to compare detections as a set."""
    flat = rows.reshape(-1, 7).astype(np.float64)
    return flat[np.lexsort(flat.T[::-1])]


_NEWEST: list[int] = []


def newest_runnable_opset() -> int:
    """The newest opset both the installed onnx and onnxruntime know (onnxruntime 1.18 stops at 21)."""
    if not _NEWEST:
        import onnxruntime as ort
        from onnx import helper

        from proto_rewrite.caffe.onnx_export import max_opset

        for opset in range(max_opset(), 10, -1):
            node = helper.make_node("Relu", ["x"], ["y"])
            graph = helper.make_graph(
                [node],
                "probe",
                [helper.make_tensor_value_info("x", 1, [1])],
                [helper.make_tensor_value_info("y", 1, [1])],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
            model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
            try:
                ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            except Exception:  # noqa: BLE001, S112 - this runtime does not know the opset
                continue
            _NEWEST.append(opset)
            break
    return _NEWEST[0]
