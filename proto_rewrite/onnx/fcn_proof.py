"""fcn mode: show that the rewritten model runs at another input size before saying so.

The rewritten model (built in memory, nothing written) is checked at a second input size, the
planning size plus two output strides (1.5 times it when the stride cannot be read from the
graph): ONNX shape inference over every node with the new dims (strict: a node that cannot take
them is an error), then one onnxruntime run on random data, whose output shapes must be the
predicted ones: ``(N, K, h, w)`` with ``h, w`` from the graph's geometry for a score map, the
original shape for every other output. Above ``RUN_LIMIT_BYTES`` of weights the run gives way
to shape inference alone, and the report says which proof ran.

The result is a :class:`~proto_rewrite.rewrite_plan.FcnReport`; ``fully_convolutional`` is true only when
the proof passed. When it fails the report names the node that blocks (from the runtime's error,
from the nodes that bake the planning size, or from where the score maps had to be flattened).
"""

from __future__ import annotations

import math
import re

import numpy as np
import onnx

from proto_rewrite.onnx.fcn_check import size_warnings
from proto_rewrite.onnx.geometry import output_geometry
from proto_rewrite.onnx.layout import STOP_TEXT
from proto_rewrite.onnx.shapes import checkable_model, data_prop_is_safe
from proto_rewrite.onnx.tensors import raw_dtype
from proto_rewrite.rewrite_plan import Blocker, FcnReport, ScoreMap

RUN_LIMIT_BYTES = 256 * 2**20  # above this much weight data the proof is shape inference only
ONNXRUNTIME, SHAPE_INFERENCE = "onnxruntime", "shape-inference"
STRIDES_FURTHER = 2  # the second size: the planning size plus this many output strides
NO_KERNEL = "no kernel"  # onnxruntime lacks a kernel (float64 Conv on CPU): shapes only
TOO_LARGE = "inputs too large"  # an input at a checked size would pass the tensor limit: shapes only


def prove(new_model, program, run_limit_bytes: int = RUN_LIMIT_BYTES) -> FcnReport:
    """Check the rewritten ``new_model`` (an OnnxModel of ``program``) at a second input size."""
    plan, view = program.plan, program.view
    if not program.resized_inputs:
        return FcnReport(
            False, note="no input of the model feeds the rewritten FCs as a 4-D image, so its size stays as it is"
        )
    skeleton = checkable_model(new_model)
    maps = _score_maps(skeleton, program)
    if isinstance(maps, Blocker):
        return FcnReport(
            False, blockers=[maps] + _region_blockers(program), note="the score-map size cannot be read from the graph"
        )
    sizes = _second_sizes(plan.input_shapes, program.resized_inputs, maps)
    if sizes is None:
        return FcnReport(False, note="the planning input size is not known; give input_shapes (--input-shape)")
    expected = _expected_shapes(view, sizes, maps, program, skeleton)
    problem = _infer_at(skeleton, sizes)
    if problem is not None:
        return _failed(new_model, program, sizes, problem, SHAPE_INFERENCE)
    weight_bytes = sum(t.nbytes for t in new_model.initializers.values())
    proof, not_run = SHAPE_INFERENCE, None
    if weight_bytes <= run_limit_bytes:
        proof = ONNXRUNTIME
        problem = _run_at(new_model, sizes, expected)
        if problem is NO_KERNEL or problem is TOO_LARGE:
            proof, weight_bytes, not_run = SHAPE_INFERENCE, None, problem
            problem = _inferred_outputs(skeleton, sizes, expected)
        if problem is not None:
            return _failed(new_model, program, sizes, problem, proof)
    else:
        problem = _inferred_outputs(skeleton, sizes, expected)
        if problem is not None:
            return _failed(new_model, program, sizes, problem, SHAPE_INFERENCE)
    if proof == ONNXRUNTIME:
        note = ""
    elif weight_bytes is None and not_run is TOO_LARGE:
        note = "an input at the sizes checked would pass the tensor limit: shapes inferred, not run"
    elif weight_bytes is None:
        note = "onnxruntime's CPU build has no kernel for an operator of this model: shapes inferred, not run"
    else:
        note = (
            f"the weights ({weight_bytes / 2**20:.0f} MiB) pass the run limit ({run_limit_bytes / 2**20:.0f} MiB): "
            "shapes inferred, not run"
        )
    if not maps:
        why = (
            "the score maps are pooled back (--pool-scores)"
            if plan.options.get("pool_scores")
            else "the FCs read pooled vectors, so there is no score map"
        )
        note = "; ".join(filter(None, [note, f"the outputs keep their (N, K) shape at the sizes checked ({why})"]))
    return FcnReport(True, proof, [_plain(sizes)], list(maps.values()), [], note)


def any_real_map(new_model, program) -> bool:
    """Whether some output that became a map has more than one cell at a larger input (not a
    global pool's 1 x 1 at any size)."""
    skeleton = checkable_model(new_model)
    for output in program.map_outputs:
        for name in program.resized_inputs or [None]:
            found = output_geometry(skeleton, name, output) if name else None
            if found or not is_global_pool(found):
                return True
    return False


def is_global_pool(found) -> bool:
    return found is not None and not found and found.why.startswith("global pool")


# -- the second size and what it should give ---------------------------------------------------


def _score_maps(skeleton: onnx.ModelProto, program) -> dict[str, ScoreMap] | Blocker:
    maps = {}
    for output in program.map_outputs:
        for name in program.resized_inputs:
            found = output_geometry(skeleton, name, output)
            if found:
                maps[output] = ScoreMap(output, name, found[0], found[1])
                break
        else:
            return Blocker(getattr(found, "node", output), "", getattr(found, "why", "no geometry"))
    return maps


def _second_sizes(planned: dict, resized: dict, maps: dict) -> dict | None:
    sizes = {}
    strides: dict[str, list] = {}
    for score in maps.values():
        strides.setdefault(score.input, []).append(score)
    for name, shape in planned.items():
        if shape is None:
            return None
        shape = [1 if d == -1 and i == 0 else d for i, d in enumerate(shape)]
        if name in resized:
            scores = strides.get(name, [])
            for axis, (position, _) in enumerate(resized[name]):
                base = shape[position]
                if base is None or base <= 0:
                    return None
                stride = max((getattr(s, ("height", "width")[axis]).stride for s in scores), default=0)
                shape[position] = base + STRIDES_FURTHER * stride if stride else base + base // 2
        if any(d is None or d <= 0 for d in shape):
            return None
        sizes[name] = tuple(int(d) for d in shape)
    return sizes


def _expected_shapes(view, sizes: dict, maps: dict, program, skeleton) -> dict[str, tuple | None]:
    """Each output's shape at the second size: a score map's from its geometry; another 4-D output
    whose size follows the input (a segmentation branch beside the classifier) from its own
    geometry; every other output as the original declares it."""
    expected = {}
    for name in view.outputs:
        score = maps.get(name) or _spatial_output(skeleton, program, name)
        shape = view.shape(name)
        if score is None:
            expected[name] = None if shape is None else tuple(d if isinstance(d, int) else None for d in shape)
            continue
        size = sizes[score.input]
        positions = [p for p, _ in program.resized_inputs[score.input]]
        h, w = score.size_at(size[positions[0]], size[positions[1]])
        shape = shape or ()
        batch = size[0] if len(shape) < 1 or not isinstance(shape[0], int) else shape[0]
        channels = shape[1] if len(shape) > 1 and isinstance(shape[1], int) else None
        expected[name] = (batch, channels, h, w)
    return expected


def _spatial_output(skeleton, program, name: str) -> ScoreMap | None:
    if name in program.map_outputs:
        return None
    for source in program.resized_inputs:
        found = output_geometry(skeleton, source, name)
        if found:
            return ScoreMap(name, source, found[0], found[1])
    return None


# -- the checks -----------------------------------------------------------------------------


def _infer_at(skeleton: onnx.ModelProto, sizes: dict) -> str | None:
    model = _with_inputs(skeleton, sizes)
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=data_prop_is_safe(model))
    except Exception as err:  # noqa: BLE001 - onnx raises several error types
        return _first_line(err)
    return None


def _inferred_outputs(skeleton: onnx.ModelProto, sizes: dict, expected: dict) -> str | None:
    model = _with_inputs(skeleton, sizes)
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=data_prop_is_safe(model))
    for value in inferred.graph.output:
        dims = value.type.tensor_type.shape.dim
        got = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        problem = _mismatch(value.name, got, expected.get(value.name), unknown_ok=True)
        if problem:
            return problem
    return None


def _run_at(new_model, sizes: dict, expected: dict) -> str | None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(new_model.to_bytes(), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own types
        if "NOT_IMPLEMENTED" in str(err) or "Could not find an implementation" in str(err):
            return NO_KERNEL
        return _first_line(err)
    rng = np.random.default_rng(0)
    feeds = {}
    for item in session.get_inputs():
        if item.name not in sizes:
            continue
        dtype = _numpy_type(item.type)
        if dtype is None:
            return f"input '{item.name}' is of type {item.type}, which the proof does not generate"
        from proto_rewrite.limits import max_tensor_bytes

        if math.prod(sizes[item.name]) * 8 > max_tensor_bytes():  # drawn as float64: not drawn at all
            return TOO_LARGE
        feeds[item.name] = (
            rng.standard_normal(sizes[item.name]) if dtype.kind == "f" else rng.integers(0, 2, sizes[item.name])
        ).astype(dtype)
    try:
        results = session.run(None, feeds)
    except Exception as err:  # noqa: BLE001
        return _first_line(err)
    for item, value in zip(session.get_outputs(), results):
        problem = _mismatch(item.name, tuple(np.shape(value)), expected.get(item.name))
        if problem:
            return problem
    return None


def _mismatch(name: str, got: tuple, wanted: tuple | None, unknown_ok: bool = False) -> str | None:
    if wanted is None:
        return None
    if len(got) != len(wanted) or any(
        w is not None and g != w and not (unknown_ok and g is None) for g, w in zip(got, wanted)
    ):
        text = "x".join("?" if w is None else str(w) for w in wanted)
        return f"output '{name}' is {'x'.join('?' if g is None else str(g) for g in got)}, predicted {text}"
    return None


# -- when it fails: who blocks -----------------------------------------------------------------

NODE_IN_MESSAGE = re.compile(r"[Nn]ode \(([^)]+)\)|node '([^']+)'|Node:([^ ,]+)")


def _failed(new_model, program, sizes: dict, problem: str, proof: str) -> FcnReport:
    blockers = []
    found = NODE_IN_MESSAGE.search(problem)
    if found:
        node = next(g for g in found.groups() if g)
        op = next((n.op_type for n in new_model.graph.node if n.name == node), "")
        blockers.append(Blocker(node, op, problem))
    for diagnostic in size_warnings(new_model, program):
        layer = diagnostic.location.layer if diagnostic.location else ""
        if not any(b.name == layer for b in blockers):
            op = next((n.op_type for n in new_model.graph.node if n.name == layer), "")
            blockers.append(Blocker(layer or "?", op, diagnostic.message))
    for blocker in _region_blockers(program):
        if not any(b.name == blocker.name for b in blockers):
            blockers.append(blocker)
    if not blockers:
        blockers.append(Blocker("?", "", problem))
    size_text = ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in sizes.items())
    return FcnReport(
        False,
        None,
        [_plain(sizes)],
        [],
        blockers,
        f"at {size_text} the converted model fails ({proof}): {problem}; the input keeps its size",
    )


def _region_blockers(program) -> list[Blocker]:
    view = program.view
    return [
        Blocker(
            view.key(i),
            view.nodes[i].op_type,
            f"the score map is flattened in front of it: {STOP_TEXT[stop.reason]} [{stop.reason}]",
        )
        for i, stop in sorted(program.region_stops.items())
    ]


# -- small helpers ------------------------------------------------------------------------------


def _with_inputs(skeleton: onnx.ModelProto, sizes: dict) -> onnx.ModelProto:
    model = onnx.ModelProto()
    model.CopyFrom(skeleton)
    for value in model.graph.input:
        if value.name in sizes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, sizes[value.name]):
                dim.Clear()
                dim.dim_value = size
    return model


def _numpy_type(text: str):
    names = {
        "tensor(float)": onnx.TensorProto.FLOAT,
        "tensor(float16)": onnx.TensorProto.FLOAT16,
        "tensor(double)": onnx.TensorProto.DOUBLE,
        "tensor(int64)": onnx.TensorProto.INT64,
        "tensor(int32)": onnx.TensorProto.INT32,
        "tensor(uint8)": onnx.TensorProto.UINT8,
        "tensor(bool)": onnx.TensorProto.BOOL,
    }
    data_type = names.get(text)
    return None if data_type is None else np.dtype(raw_dtype(data_type))


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0][:500] if text else type(err).__name__


def _plain(sizes: dict) -> dict:
    return {k: tuple(v) for k, v in sizes.items()}
