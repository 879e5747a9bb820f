"""The Python API: one import, one call per step.

    import proto_rewrite as pr

    model = pr.load("net.onnx")                       # or pr.load("deploy.prototxt", weights="w.caffemodel")
    plan = pr.plan(model, mode="fcn")                 # a RewritePlan: rewrites, skips with reasons, edits
    print(plan.to_json())                             # the same JSON as --save-plan
    converted = pr.apply(model, plan)                 # refuses a plan made for another model
    pr.save(converted, "net_fcn.onnx")                # atomic, deterministic, streaming where possible
    report = pr.validate("net.onnx", "net_fcn.onnx")  # report.passed, per-output stats, report.to_json()
    changes = pr.diff("net.onnx", "net_fcn.onnx")     # changes.equal, changes.to_json(), changes.to_html()
    result = pr.convert("net.onnx", "net_fcn.onnx", mode="fcn", validate=True)  # the CLI's convert

Options are keyword arguments with the CLI's defaults; errors are the typed errors of
:mod:`proto_rewrite.errors` (the CLI prints them). Nothing here prints.
"""

from __future__ import annotations

import os

from proto_rewrite import API_NAMES  # the one list of the API's names
from proto_rewrite.conversion import AUTO, ConvertOptions, ConvertResult, convert_file
from proto_rewrite.errors import UsageError
from proto_rewrite.formats import is_onnx_path as _is_onnx
from proto_rewrite.rewrite_plan import FCN, RewritePlan, plan_renames, read_plan

__all__ = list(API_NAMES)


def load(
    path: str | os.PathLike,
    weights: str | os.PathLike | None = AUTO,
    *,
    phase: str = "TEST",
    strict: bool = False,
    input_shapes: dict | None = None,
    allow_nonfinite: bool = False,
    max_tensor_bytes: int | str | None = None,
    max_text_bytes: int | str | None = None,
    caffe_schema: str | os.PathLike | None = None,
):
    """An ONNX model (``.onnx``, with its external data) or a Caffe net (a prototxt of any
    generation, with ``weights``: a caffemodel, None for none, AUTO for ``<stem>.caffemodel``
    beside it). Weights with NaN or Inf are refused unless ``allow_nonfinite``.
    ``max_tensor_bytes`` / ``max_text_bytes``: the limits for this call (default: the environment
    variables, else 16 GiB / 16 MiB). ``caffe_schema``: the path of a fork's compiled schema
    (descriptor set) to read a Caffe net with, or None for the bundled one; models of different
    forks can be loaded side by side."""
    from proto_rewrite import limits

    with limits.scoped():
        if max_tensor_bytes is not None:
            limits.set_max_tensor_bytes(max_tensor_bytes)
        if max_text_bytes is not None:
            limits.set_max_text_bytes(max_text_bytes)
        return _load(path, weights, phase, strict, input_shapes, allow_nonfinite, caffe_schema)


def _load(path, weights, phase, strict, input_shapes, allow_nonfinite, caffe_schema):
    if _is_onnx(path):
        from proto_rewrite.onnx.model import load_onnx

        if weights not in (None, AUTO):
            raise UsageError(
                "weights applies to Caffe models only",
                options=("weights",),
                hint="an ONNX model carries its weights (or their external data files)",
            )
        model = load_onnx(path)
        if not allow_nonfinite:
            from proto_rewrite.nonfinite import check_onnx_weights

            check_onnx_weights(model)
        return model
    from proto_rewrite.caffe.model import AUTO as CAFFE_AUTO
    from proto_rewrite.caffe.model import load_caffe

    model = load_caffe(
        path,
        CAFFE_AUTO if weights == AUTO else weights,
        phase=phase,
        strict=strict,
        input_shapes=input_shapes,
        schema=caffe_schema,
    )
    if not allow_nonfinite:
        from proto_rewrite.nonfinite import check_caffe_weights

        check_caffe_weights(model)
    return model


def plan(
    model,
    *,
    mode: str = FCN,
    only=None,
    match: str | None = None,
    exclude=None,
    classifier_before_pool: bool = False,
    pool_scores: str | None = None,
    input_shapes: dict | None = None,
    rename: str | None = None,
    input_size: tuple[int, int] | None = None,
    proof_run_limit: int | None = None,
) -> RewritePlan:
    """What converting ``model`` (from :func:`load`) will change; the model is not modified.
    ``only`` / ``exclude``: FC names (a list, or comma-separated); ``match``: a regular expression.
    ``proof_run_limit`` (ONNX fcn): above this many bytes of weights the proof that the net runs at
    another size infers shapes there instead of running onnxruntime (default 256 MiB)."""
    selection = ConvertOptions(only=only, match=match, exclude=exclude).selection()
    if _is_caffe_model(model):
        from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions, plan_caffe_rewrite

        if classifier_before_pool:
            raise UsageError("classifier_before_pool applies to ONNX models only", options=("classifier_before_pool",))
        return plan_caffe_rewrite(
            model,
            CaffeRewriteOptions(
                mode=mode,
                selection=selection,
                rename_suffix=rename,
                input_size=tuple(input_size) if input_size else None,
                input_shapes=input_shapes,
                pool_scores=pool_scores,
            ),
        )
    from proto_rewrite.onnx.rewrite import plan_onnx_rewrite

    for name, value in (("rename", rename), ("input_size", input_size)):
        if value:
            raise UsageError(f"{name} applies to Caffe models only", options=(name,))
    from proto_rewrite.onnx.fcn_proof import RUN_LIMIT_BYTES

    return plan_onnx_rewrite(
        _onnx_model(model),
        selection=selection,
        mode=mode,
        classifier_before_pool=classifier_before_pool,
        input_shapes=input_shapes,
        pool_scores=pool_scores,
        proof_run_limit=RUN_LIMIT_BYTES if proof_run_limit is None else proof_run_limit,
    )


def apply(model, plan: RewritePlan | str):
    """A new model with ``plan`` (a RewritePlan or its JSON file) carried out; ``model`` is left
    as it was. Raises :class:`~proto_rewrite.errors.PlanMismatchError` for a plan that does not
    fit the model (another model, an edited kernel); a rewrite edited into a skip is honoured."""
    plan = read_plan(plan)
    if _is_caffe_model(model):
        from proto_rewrite.caffe.fc_to_conv import apply_caffe_plan

        return apply_caffe_plan(model, plan)
    from proto_rewrite.onnx.rewrite import apply_onnx_plan

    return apply_onnx_plan(_onnx_model(model), plan)


def save(
    model, path: str | os.PathLike, weights: str | os.PathLike | None = None, *, in_place: bool = False
) -> list[str]:
    """Write ``model`` atomically and deterministically; the paths written. A Caffe net writes its
    prototxt and, when it has weights, ``weights`` (default: ``<path stem>.caffemodel``). The files
    the model was read from are never overwritten unless ``in_place``."""
    from proto_rewrite import output_guard

    sources = [
        getattr(model, "path", None),
        getattr(model, "prototxt_path", None),
        getattr(model, "weights_path", None),
    ]
    with (
        output_guard.guarding([(source, "the model's own file") for source in sources if source]),
        output_guard.may_replace(in_place, *[s for s in sources if s]),
    ):
        if _is_caffe_model(model):
            from pathlib import Path

            from proto_rewrite.caffe.model import save_caffe

            weights_out = weights or (Path(path).with_suffix(".caffemodel") if model.weights else None)
            save_caffe(model, path, weights_out)
            return [str(path)] + ([str(weights_out)] if weights_out else [])
        from proto_rewrite.onnx.model import save_onnx

        if weights is not None:
            raise UsageError("weights applies to Caffe models only", options=("weights",))
        save_onnx(_onnx_model(model), path)
        return [str(path)]


def validate(
    a,
    b,
    *,
    weights_a=None,
    weights_b=None,
    allow_nonfinite: bool = False,
    caffe_schema: str | os.PathLike | None = None,
    options=None,
    **kwargs,
):
    """Run both models on the same inputs with onnxruntime and compare every output: a
    ValidationResult (``.passed``, ``.to_json()``). ``a`` / ``b``: paths (Caffe through the
    exporter, read with ``caffe_schema``), loaded models or onnx ModelProtos. ``options``: a
    ValidateOptions, or its fields as keyword arguments (seed, trials, batch, input_shapes,
    tolerances, localize, renames...)."""
    from proto_rewrite.validation.compare_models import ValidateOptions, validate_models

    if options is not None and kwargs:
        raise UsageError("give options or keyword arguments, not both")
    options = options or ValidateOptions(**kwargs)
    model_a = _for_validation(a, weights_a, allow_nonfinite, caffe_schema)
    model_b = _for_validation(b, weights_b, allow_nonfinite, caffe_schema)
    return validate_models(model_a, model_b, options, names=(_name(a, "A"), _name(b, "B")))


def diff(
    a,
    b,
    *,
    plan: RewritePlan | str | None = None,
    weights_a=AUTO,
    weights_b=AUTO,
    compare_values: bool = True,
    phase: str = "TEST",
    strict: bool = False,
    input_shapes: dict | None = None,
    caffe_schema: str | os.PathLike | None = None,
    text: bool = False,
):
    """What changed from model file ``a`` to model file ``b``: a GraphDiff (``.equal``,
    ``.to_json()``, ``.to_html()``, ``.render_text()``). ``plan``: the conversion's plan, to match
    renamed layers (one made for the other format is refused). ``weights_a`` / ``weights_b``:
    Caffe nets' caffemodels (None: none; ONNX models carry theirs). ``compare_values`` False:
    weights compared by shape and dtype only. ``caffe_schema``: a fork's compiled schema for Caffe
    nets. ``text``: also the unified diff of the two prototxts / ONNX texts (``.text_diff``)."""
    from proto_rewrite.graphdiff.compare import diff_graphs
    from proto_rewrite.graphdiff.load import LoadOptions, load_pair, text_diff

    options = LoadOptions(
        weights_a=weights_a,
        weights_b=weights_b,
        phase=phase,
        strict=strict,
        input_shapes=input_shapes or {},
        caffe_schema=caffe_schema,
    )
    graph_a, graph_b = load_pair(a, b, options)
    renames = plan_renames(None if plan is None else read_plan(plan), graph_a.model_format)
    changes = diff_graphs(graph_a, graph_b, renames, compare_values=compare_values)
    if text:
        changes.text_diff = text_diff(graph_a, graph_b)
    return changes


def convert(model_path: str | os.PathLike, output: str | os.PathLike | None = None, **options) -> ConvertResult:
    """The CLI's ``convert`` as a call: load, plan (or apply ``plan=``), check (``validate=True``),
    write. Keyword arguments: the fields of :class:`~proto_rewrite.conversion.ConvertOptions`."""
    return convert_file(os.fspath(model_path), None if output is None else os.fspath(output), ConvertOptions(**options))


def inspect(
    model,
    *,
    weights: str | os.PathLike | None = AUTO,
    phase: str = "TEST",
    strict: bool = False,
    input_shapes: dict | None = None,
    caffe_schema: str | os.PathLike | None = None,
):
    """What ``proto-rewrite inspect`` shows, as a ModelSummary (``.to_dict()``, the JSON of
    ``schemas/inspect.schema.json``; ``proto_rewrite.summary.render_text`` for the text):
    inputs, layers with their output shapes, weight shapes and parameter counts. ``model``: a
    path (loaded with the other arguments) or a loaded model; ``input_shapes`` replace the
    declared input shapes (ONNX: fix symbolic dimensions). A path is loaded at ``input_shapes``,
    its weights checked there; a loaded net's weights are not checked again at other shapes."""
    shapes = None  # a Caffe net's own: loaded here at input_shapes
    if isinstance(model, (str, os.PathLike)):
        caffe_shapes = None if _is_onnx(model) else input_shapes
        model = _load(model, weights, phase, strict, caffe_shapes, True, caffe_schema)
    else:
        _refuse_loader_arguments(weights=weights, phase=phase, strict=strict, caffe_schema=caffe_schema)
        if input_shapes and _is_caffe_model(model):  # its weights are not checked again at these shapes
            from proto_rewrite.caffe.shapes import infer_shapes

            shapes = infer_shapes(model.net, input_shapes, path=model.prototxt_path, lines=model.layer_lines)
    if _is_caffe_model(model):
        from proto_rewrite.caffe.summary import summarize

        return summarize(model, shapes)
    from proto_rewrite.onnx.summary import summarize_onnx

    return summarize_onnx(_onnx_model(model), input_shapes)


def export(
    model,
    output: str | os.PathLike,
    *,
    weights: str | os.PathLike | None = AUTO,
    phase: str = "TEST",
    strict: bool = False,
    caffe_schema: str | os.PathLike | None = None,
    opset: int | None = None,
    dynamic_batch: bool = False,
    dynamic_size: bool = False,
    input_shapes: dict | None = None,
    seed: int = 0,
    allow_nonfinite: bool = False,
):
    """``proto-rewrite export`` as a call: a Caffe net (a prototxt path, or a model from
    :func:`load`) written as ONNX with Caffe's semantics; an ExportResult (``.written``,
    ``.random_weights``, ``.to_dict()``). A net without weights gets random ones (``seed``), and
    ``result.random_weights`` says so."""
    from proto_rewrite.caffe.onnx_export.export_file import export_file

    model, loader_notes = _caffe_model(
        model,
        "export",
        weights=weights,
        phase=phase,
        strict=strict,
        input_shapes=input_shapes,
        caffe_schema=caffe_schema,
    )
    result = export_file(
        model,
        output,
        opset=opset,
        dynamic_batch=dynamic_batch,
        dynamic_size=dynamic_size,
        input_shapes=input_shapes,
        seed=seed,
        allow_nonfinite=allow_nonfinite,
    )
    result.diagnostics[:0] = loader_notes
    return result


def init_weights(
    model,
    output: str | os.PathLike,
    *,
    seed: int = 0,
    input_shapes: dict | None = None,
    phase: str = "TEST",
    strict: bool = False,
    caffe_schema: str | os.PathLike | None = None,
):
    """``proto-rewrite init-weights`` as a call: a caffemodel of random weights for a Caffe net
    (a prototxt path, or a model from :func:`load`), deterministic per ``seed``; a
    RandomWeightsResult (``.layers``, ``.parameters``, ``.unknown_layers``)."""
    from proto_rewrite.caffe.init_weights import write_random_weights

    model, loader_notes = _caffe_model(model, "init_weights", phase=phase, strict=strict, caffe_schema=caffe_schema)
    result = write_random_weights(model, output, seed=seed, input_shapes=input_shapes)
    result.diagnostics[:0] = loader_notes
    return result


# -- helpers ----------------------------------------------------------------------------------------


_LOADER_DEFAULTS = {"weights": AUTO, "phase": "TEST", "strict": False, "caffe_schema": None}


def _caffe_model(model, call: str, *, input_shapes=None, **loading):
    """(the Caffe model, the loader's warnings) for a call that takes a prototxt path (loaded here
    with ``loading``: weights, phase, strict, caffe_schema) or a loaded Caffe model."""
    if isinstance(model, (str, os.PathLike)):
        if _is_onnx(model):
            raise UsageError(f"{call} reads Caffe models, not ONNX ones", hint="give the net's .prototxt")
        loading = {**_LOADER_DEFAULTS, "weights": None, **loading}
        model = _load(
            model,
            loading["weights"],
            loading["phase"],
            loading["strict"],
            input_shapes,
            True,
            loading["caffe_schema"],
        )
        return model, list(model.diagnostics)
    if not _is_caffe_model(model):
        raise UsageError(f"not a Caffe model: {type(model).__name__}", hint="pass a prototxt or what load returns")
    _refuse_loader_arguments(**loading)
    return model, []


def _refuse_loader_arguments(**given) -> None:
    """How to load a model means nothing for a model already loaded: refuse such arguments."""
    for name, value in given.items():
        if value != _LOADER_DEFAULTS[name]:
            raise UsageError(
                f"{name} applies when the model is given as a path; this one is already loaded",
                options=(name,),
                hint="pass it to proto_rewrite.load instead",
            )


def _is_caffe_model(model) -> bool:
    from proto_rewrite.caffe.model import CaffeModel

    return isinstance(model, CaffeModel)


def _onnx_model(model):
    """An OnnxModel from an OnnxModel or an onnx.ModelProto."""
    import onnx

    from proto_rewrite.onnx.model import OnnxModel

    if isinstance(model, OnnxModel):
        return model
    if isinstance(model, onnx.ModelProto):
        return OnnxModel.from_proto(model)
    raise UsageError(f"not a model: {type(model).__name__}", hint="pass what proto_rewrite.load returns")


def _for_validation(model, weights, allow_nonfinite: bool, caffe_schema=None):
    import onnx

    if isinstance(model, (str, os.PathLike)):
        from proto_rewrite.validation.load import load_for_validation

        return load_for_validation(
            os.fspath(model), weights, allow_nonfinite=allow_nonfinite, caffe_schema=caffe_schema
        )
    if isinstance(model, onnx.ModelProto):
        return model
    if _is_caffe_model(model):
        from proto_rewrite.caffe.onnx_export import export_onnx

        return export_onnx(model)
    return _onnx_model(model).to_proto()


def _name(model, default: str) -> str:
    return os.fspath(model) if isinstance(model, (str, os.PathLike)) else default
