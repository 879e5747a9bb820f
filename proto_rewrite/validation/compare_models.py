"""Run two ONNX models on the same inputs and compare every output (and, with ``localize``,
every intermediate tensor they share by name)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from proto_rewrite.errors import UsageError
from proto_rewrite.validation.dynamic import DefaultedInput, choose_shapes, declared_shapes
from proto_rewrite.validation.inputs import load_npz, random_inputs, session_inputs
from proto_rewrite.validation.relations import FCN, SAME, SPATIAL_MEAN
from proto_rewrite.validation.runtime import RuntimeOptions, external_folder, make_session, run_session
from proto_rewrite.validation.stats import Comparison, compare
from proto_rewrite.validation.tolerances import Tolerances

AVERAGING_POOLS = frozenset({"GlobalAveragePool", "ReduceMean", "AveragePool"})
SATURATION = 1e-4  # a softmax row whose top probability is within this of 1 is saturated


class OutputMismatchError(UsageError):
    """The two models do not have the same inputs or outputs (by name or shape)."""


@dataclass
class ValidateOptions:
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    seed: int = 0
    trials: int = 1
    batch: int | None = None
    input_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    input_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    inputs_file: str | None = None
    tolerances: Tolerances = field(default_factory=Tolerances)
    localize: bool = False
    renames: dict[str, str] = field(default_factory=dict)  # tensor in A -> its name in B (a rewrite plan's renames)


@dataclass
class TensorResult:
    name: str
    shape_a: tuple[int, ...]
    shape_b: tuple[int, ...]
    relation: str  # SAME or FCN
    dtype: str
    comparison: Comparison
    role: str = "output"  # "output", "softmax input" or "intermediate"


@dataclass
class ValidationResult:
    model_a: str
    model_b: str
    options: ValidateOptions
    providers: list[str]
    inputs: dict[str, tuple[tuple[int, ...], str]]
    outputs: list[TensorResult]
    intermediates: list[TensorResult] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    input_defaults: list[DefaultedInput] = field(default_factory=list)  # symbolic dims given default sizes
    first_divergence: str | None = None
    input_values: list[dict[str, np.ndarray]] = field(default_factory=list, repr=False)
    output_values: list[dict[str, np.ndarray]] = field(default_factory=list, repr=False)

    @property
    def passed(self) -> bool:
        return all(result.comparison.passed for result in self.outputs)

    def to_dict(self) -> dict:
        """The JSON report (``schemas/report.schema.json``)."""
        from proto_rewrite.validation.report import to_dict

        return to_dict(self)

    def to_json(self) -> str:
        import json

        return json.dumps(self.to_dict(), indent=2) + "\n"

    def render_text(self) -> str:
        from proto_rewrite.validation.report import render_text

        return render_text(self)


def validate_models(model_a, model_b, options: ValidateOptions | None = None, *, names=("A", "B")) -> ValidationResult:
    """Compare ``model_a`` (the reference) with ``model_b``; both are onnx.ModelProto."""
    options = options or ValidateOptions()
    outputs_a = [o.name for o in model_a.graph.output]
    outputs_b = [o.name for o in model_b.graph.output]
    if sorted(outputs_a) != sorted(outputs_b):
        raise OutputMismatchError(
            f"the models' outputs differ: only in {names[0]}: {sorted(set(outputs_a) - set(outputs_b)) or 'none'}; "
            f"only in {names[1]}: {sorted(set(outputs_b) - set(outputs_a)) or 'none'}",
            hint="outputs are paired by name; both models must have the same output names",
        )
    softmax_inputs = _softmax_inputs(model_a, outputs_a)
    averaged = averaged_outputs(model_a, outputs_a)
    extra = _shared_tensors(model_a, model_b, options.renames) if options.localize else []
    extra += [name for name in softmax_inputs.values() if name in _tensor_names(model_b) and name not in extra]
    extra = [name for name in extra if name not in outputs_a]
    in_b = {
        name: options.renames.get(name, name) if options.renames.get(name) in _tensor_names(model_b) else name
        for name in extra
    }  # the same tensor's name in B (the plan's renames)
    # One session at a time: A runs every trial, then B. Peak memory is one model's, not two.
    session_a = make_session(
        _serialized_with_outputs(model_a, extra),
        options.runtime,
        what=f"model {names[0]}",
        external_folder=external_folder(model_a),
    )
    specs = session_inputs(session_a)
    unknown = sorted((set(options.input_shapes) | set(options.input_ranges)) - {s.name for s in specs})
    if unknown:
        raise UsageError(
            f"input_shapes / input_ranges name inputs the model does not have: {', '.join(unknown)}",
            options=("input_shapes", "input_ranges"),
        )
    fetch = outputs_a + extra
    trials, defaults = [], []
    if options.inputs_file:
        trials.append(load_npz(options.inputs_file, specs))
    else:
        shapes, defaults = choose_shapes(specs, declared_shapes(model_b), options.input_shapes, options.batch, names)
        trials = [
            random_inputs(specs, shapes, options.seed + t, options.input_ranges, path=names[0])
            for t in range(options.trials)
        ]
    providers = list(session_a.get_providers())
    runs_a = [dict(zip(fetch, run_session(session_a, fetch, feed, what=f"model {names[0]}"))) for feed in trials]
    del session_a
    session_b = make_session(
        _serialized_with_outputs(model_b, [in_b[n] for n in extra]),
        options.runtime,
        what=f"model {names[1]}",
        external_folder=external_folder(model_b),
    )
    names_b = sorted(i.name for i in session_b.get_inputs())
    if sorted(s.name for s in specs) != names_b:
        raise OutputMismatchError(
            f"the models' inputs differ: {names[0]} has {sorted(s.name for s in specs)}, {names[1]} has {names_b}",
            hint="inputs are fed by name",
        )
    fetch_b = outputs_a + [in_b[name] for name in extra]
    runs_b = [dict(zip(fetch, run_session(session_b, fetch_b, feed, what=f"model {names[1]}"))) for feed in trials]
    del session_b
    result = ValidationResult(
        names[0],
        names[1],
        options,
        providers,
        {s.name: (tuple(trials[0][s.name].shape), str(s.dtype)) for s in specs},
        [],
        [],
    )
    result.input_defaults = defaults
    worst: dict[str, TensorResult] = {}
    for feed, values_a, values_b in zip(trials, runs_a, runs_b):
        result.input_values.append(feed)
        result.output_values.append(
            {**{f"a/{k}": v for k, v in values_a.items()}, **{f"b/{k}": v for k, v in values_b.items()}}
        )
        for name in fetch:
            role = (
                "output"
                if name in outputs_a
                else ("softmax input" if name in softmax_inputs.values() else "intermediate")
            )
            tensor = _compare_tensor(
                name, values_a[name], values_b[name], options.tolerances, role, names, name in averaged
            )
            if tensor is not None and (name not in worst or _worse(tensor, worst[name])):
                worst[name] = tensor
        result.warnings += _saturation_warnings(softmax_inputs, values_a, result.warnings)
    result.outputs = [worst[name] for name in outputs_a]
    result.intermediates = [worst[name] for name in extra if name in worst]
    diverging = [t.name for t in result.intermediates if not t.comparison.passed]
    result.first_divergence = diverging[0] if diverging else None
    return result


def _worse(new: TensorResult, old: TensorResult) -> bool:
    def key(c):
        return (not c.passed, c.mismatches, c.absolute.max)

    return key(new.comparison) > key(old.comparison)


def _compare_tensor(
    name, a: np.ndarray, b: np.ndarray, tolerances: Tolerances, role: str, names, averaged: bool = False
) -> TensorResult | None:
    relation = _relation(a.shape, b.shape)
    if relation is None and role == "output" and averaged and _is_score_map_of(a.shape, b.shape):
        relation = SPATIAL_MEAN
    if relation is None:
        if role != "output":
            return None  # an intermediate whose layout the rewrite changed: not comparable by name
        hint = "only equal shapes, (N, M) against (N, M, 1, 1) from an fcn rewrite, or (N, K) against the (N, K, h, w) "
        hint += "score map of a classifier_before_pool conversion of a model with a global average pool can be compared"
        raise OutputMismatchError(
            f"output '{name}' has shape {list(a.shape)} in {names[0]} and {list(b.shape)} in {names[1]}",
            hint=hint,
            options=("classifier_before_pool",),
        )
    atol, rtol = tolerances.for_output(name, a.dtype)
    shape_b = tuple(b.shape)
    if relation == SPATIAL_MEAN:
        b = b.astype(np.float64).mean(axis=(2, 3))  # what A's global average pool computed
    comparison = compare(a, b, atol, rtol, tolerances.scale_for_output(name, a.dtype))
    return TensorResult(name, tuple(a.shape), shape_b, relation, str(a.dtype), comparison, role)


def _relation(shape_a, shape_b) -> str | None:
    if tuple(shape_a) == tuple(shape_b):
        return SAME
    longer, shorter = (shape_b, shape_a) if len(shape_b) > len(shape_a) else (shape_a, shape_b)
    if tuple(longer[: len(shorter)]) == tuple(shorter) and all(d == 1 for d in longer[len(shorter) :]):
        return FCN
    return None


def _is_score_map_of(shape_a, shape_b) -> bool:
    """(N, K) or (N, K, 1, 1) against (N, K, h, w) with more than one cell."""
    if len(shape_b) != 4 or shape_b[2] * shape_b[3] <= 1:
        return False
    return tuple(shape_a) in (tuple(shape_b[:2]), (*shape_b[:2], 1, 1))


def averaged_outputs(model, outputs: list[str]) -> set[str]:
    """The outputs of ``model`` whose data path, followed back from the output, meets a global
    average (GlobalAveragePool, ReduceMean, AveragePool) before any other pooling or convolution:
    a --classifier-before-pool conversion computes those from the spatial mean of its score map."""
    producers = {name: node for node in model.graph.node for name in node.output}
    constants = {t.name for t in model.graph.initializer}
    constants |= {node.output[0] for node in model.graph.node if node.op_type == "Constant" and node.output}
    stops = {
        "Conv",
        "ConvTranspose",
        "MaxPool",
        "GlobalMaxPool",
        "LpPool",
        "GlobalLpPool",
        "ReduceMax",
        "ReduceMin",
        "ReduceSum",
        "ReduceProd",
    }
    found = set()
    for output in outputs:
        node, seen = producers.get(output), 0
        while node is not None and seen < 10_000:
            seen += 1
            if node.op_type in AVERAGING_POOLS:
                found.add(output)
                break
            if node.op_type in stops:
                break
            data = [name for name in node.input if name and name not in constants]
            node = producers.get(data[0]) if data else None
    return found


RESHAPING = frozenset(("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze"))


def _softmax_inputs(model, outputs: list[str]) -> dict[str, str]:
    """Graph output -> the input of the Softmax that makes it (through reshaping nodes)."""
    producers = {name: node for node in model.graph.node for name in node.output}
    found = {}
    for output in outputs:
        node = producers.get(output)
        while node is not None and node.op_type in RESHAPING:
            node = producers.get(node.input[0])
        if node is not None and node.op_type == "Softmax":
            found[output] = node.input[0]
    return found


def _saturation_warnings(
    softmax_inputs: dict[str, str], values: dict[str, np.ndarray], already: list[str]
) -> list[str]:
    warnings = []
    for output, logits in softmax_inputs.items():
        probabilities = values[output]
        top = probabilities.max(axis=1) if probabilities.ndim > 1 else probabilities
        if np.mean(top > 1 - SATURATION) >= 0.5:
            text = (
                f"output '{output}' is a saturated softmax (most rows put > {1 - SATURATION} on one class): equal "
                f"probabilities can hide different logits, so its input '{logits}' is compared too"
            )
            if text not in already and text not in warnings:
                warnings.append(text)
    return warnings


def _tensor_names(model) -> set[str]:
    return {name for node in model.graph.node for name in node.output}


def _shared_tensors(model_a, model_b, renames: dict[str, str] | None = None) -> list[str]:
    """Intermediate tensors of A (in A's node order) that B also computes, under the same name
    or the name the rewrite plan gave it."""
    in_b = _tensor_names(model_b)
    renames = renames or {}
    order = []
    for node in model_a.graph.node:
        for name in node.output:
            if name and (name in in_b or renames.get(name) in in_b) and name not in order:
                order.append(name)
    return order


def _serialized_with_outputs(model, names: list[str]) -> bytes:
    """``model`` serialized with the tensors ``names`` as extra graph outputs. The extra outputs
    are appended for the serialization and removed again, so the model is not copied."""
    if not names:
        return model.SerializeToString()
    from onnx import helper

    types = _tensor_types(model)
    existing = len(model.graph.output)
    model.graph.output.extend(
        helper.make_tensor_value_info(name, types.get(name, 1), None)
        for name in names
        if name not in {o.name for o in model.graph.output}
    )
    try:
        return model.SerializeToString()
    finally:
        del model.graph.output[existing:]


def _tensor_types(model) -> dict[str, int]:
    """Element type of every tensor, by shape inference on the graph without its weight data."""
    from onnx import helper, shape_inference

    skeleton = helper.make_graph(
        list(model.graph.node),
        "types",
        list(model.graph.input)
        + [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in model.graph.initializer],
        list(model.graph.output),
    )
    light = helper.make_model(skeleton, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    inferred = shape_inference.infer_shapes(light)
    return {info.name: info.type.tensor_type.elem_type for info in inferred.graph.value_info}
