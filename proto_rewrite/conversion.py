"""Convert one model file: load, plan (or take a reviewed plan), check, write. The CLI's
``convert`` is this call and some printing.

:func:`convert_file` never prints: what a caller may want to show comes back in the
:class:`ConvertResult` (the plan, the files written, the validation, the loader's diagnostics
and notes such as upgrades applied or how the output was written). Nothing is written when the
validation fails (unless ``keep_on_failure``), when an error is raised, or in a dry run; outputs
go through the output guard, so no input is ever overwritten (``in_place`` allows the model to
replace its own files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from proto_rewrite.errors import UsageError
from proto_rewrite.formats import is_onnx_path as _is_onnx
from proto_rewrite.rewrite_plan import FCN, RewritePlan, Selection, read_plan

AUTO = "auto"  # Caffe weights: <stem>.caffemodel beside the prototxt when there is one


@dataclass
class ConvertOptions:
    """What ``proto-rewrite convert`` takes, as keyword arguments with the CLI's defaults."""

    mode: str = FCN
    only: str | list[str] | None = None  # FC names (a list, or comma-separated)
    match: str | None = None  # a regular expression on FC names
    exclude: str | list[str] | None = None
    classifier_before_pool: bool = False  # ONNX
    pool_scores: str | None = None  # "avg", "max", "probs-avg" (fcn mode)
    proof_run_limit: int | None = None  # ONNX fcn: above this many bytes of weights, prove by shape inference only
    input_shapes: dict | None = None  # {input: (N, C, H, W)} fixing symbolic dimensions
    rename: str | None = None  # Caffe: suffix for the rewritten layers, e.g. "-conv"
    input_size: tuple[int, int] | None = None  # Caffe: the deploy input's new H, W
    weights: str | None = AUTO  # Caffe: the caffemodel; AUTO: <stem>.caffemodel; None: none
    output_weights: str | None = None  # Caffe: default <output stem>.caffemodel
    phase: str = "TEST"
    strict: bool = False
    caffe_schema: str | None = None  # Caffe: a fork's compiled schema (descriptor set); None: the bundled one
    allow_nonfinite: bool = False
    plan: RewritePlan | str | None = None  # a reviewed plan (or its JSON file) to apply instead of planning
    save_plan: str | None = None  # also write the plan as JSON
    dry_run: bool = False
    validate: bool = False  # compare original and converted with onnxruntime before writing
    keep_on_failure: bool = False
    in_place: bool = False  # the output may replace the model's own files
    device: str = "cpu"
    optimize: bool = False
    threads: int | None = None

    def selection(self) -> Selection:
        return Selection.from_options(_names_text(self.only), self.match, _names_text(self.exclude))


@dataclass
class ConvertResult:
    plan: RewritePlan
    written: list[str] = field(default_factory=list)
    validation: object | None = None  # a ValidationResult with validate=True
    dry_run: bool = False
    diagnostics: list = field(default_factory=list)  # the loader's warnings and notes
    notes: list[str] = field(default_factory=list)  # upgrades applied, how the output was written

    @property
    def passed(self) -> bool:
        return self.validation is None or self.validation.passed

    def to_dict(self) -> dict:
        report = {"plan": self.plan.to_dict(), "written": list(self.written), "dry_run": self.dry_run}
        if self.validation is not None:
            from proto_rewrite.validation.report import to_dict

            report["validation"] = to_dict(self.validation)
        return report

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def convert_file(
    model_path: str, output: str | None = None, options: ConvertOptions | None = None, **kwargs
) -> ConvertResult:
    """Convert the model at ``model_path`` into ``output`` (.onnx, or .prototxt + .caffemodel).
    Options: a :class:`ConvertOptions`, or its fields as keyword arguments."""
    from proto_rewrite import output_guard

    options = options or ConvertOptions(**kwargs)
    if output is None and not options.dry_run:
        raise UsageError("no output given", hint="give the output path, or dry_run=True for the plan only")
    if options.keep_on_failure and not options.validate:
        raise UsageError("keep_on_failure only makes sense with validate", options=("keep_on_failure", "validate"))
    inputs = [(model_path, "the model")]
    with output_guard.guarding(inputs):
        if _is_onnx(model_path):
            result, write = _onnx(model_path, output, options)
        else:
            result, write = _caffe(model_path, output, options)
        if options.save_plan:
            from proto_rewrite.fileio import atomic_output

            with atomic_output(options.save_plan, "w") as handle:
                handle.write(result.plan.to_json())
        result.dry_run = options.dry_run
        if not options.dry_run:
            write(result)
    return result


# -- per format -------------------------------------------------------------------------------------


def _onnx(model_path: str, output: str | None, options: ConvertOptions):
    from proto_rewrite import output_guard
    from proto_rewrite.onnx.model import load_onnx, save_onnx
    from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite

    for name in ("rename", "input_size", "output_weights"):
        if getattr(options, name):
            raise UsageError(f"{name} applies to Caffe models only", options=(name,))
    if options.weights not in (None, AUTO):
        raise UsageError("weights applies to Caffe models only", options=("weights",))
    model = load_onnx(model_path)
    if not options.allow_nonfinite:
        from proto_rewrite.nonfinite import check_onnx_weights

        check_onnx_weights(model)
    if options.plan is not None:
        plan = _given_plan(options.plan, "onnx")
    else:
        from proto_rewrite.onnx.fcn_proof import RUN_LIMIT_BYTES

        limit = RUN_LIMIT_BYTES if options.proof_run_limit is None else options.proof_run_limit
        plan = plan_onnx_rewrite(
            model,
            selection=options.selection(),
            mode=options.mode,
            classifier_before_pool=options.classifier_before_pool,
            input_shapes=options.input_shapes or None,
            pool_scores=options.pool_scores,
            proof_run_limit=limit,
        )
    result = ConvertResult(plan, diagnostics=list(model.diagnostics))

    def write(result: ConvertResult) -> None:
        converted = apply_onnx_plan(model, plan)
        if options.validate:
            result.validation = _check(options, model.to_proto(), converted.to_proto())
            if not result.validation.passed and not options.keep_on_failure:
                return
        with output_guard.may_replace(options.in_place, model_path):
            result.notes.append(save_onnx(converted, output).describe())
        result.written.append(str(output))

    return result, write


def _caffe(model_path: str, output: str | None, options: ConvertOptions):
    from proto_rewrite import output_guard
    from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions, apply_caffe_plan, plan_caffe_rewrite
    from proto_rewrite.caffe.model import AUTO as CAFFE_AUTO
    from proto_rewrite.caffe.model import load_caffe, save_caffe

    if options.classifier_before_pool:
        raise UsageError("classifier_before_pool applies to ONNX models only", options=("classifier_before_pool",))
    weights = CAFFE_AUTO if options.weights == AUTO else options.weights
    model = load_caffe(
        model_path,
        weights,
        phase=options.phase,
        strict=options.strict,
        input_shapes=options.input_shapes,
        schema=options.caffe_schema,
    )
    if not options.allow_nonfinite:
        from proto_rewrite.nonfinite import check_caffe_weights

        check_caffe_weights(model)
    if options.plan is not None:
        plan = _given_plan(options.plan, "caffe")
    else:
        plan = plan_caffe_rewrite(
            model,
            CaffeRewriteOptions(
                mode=options.mode,
                selection=options.selection(),
                rename_suffix=options.rename,
                input_size=tuple(options.input_size) if options.input_size else None,
                input_shapes=options.input_shapes,
                pool_scores=options.pool_scores,
            ),
        )
    weights_out = None
    if model.weights_path:
        weights_out = options.output_weights or (str(Path(output).with_suffix(".caffemodel")) if output else None)
    elif options.output_weights:
        raise UsageError(
            "output_weights given, but the model has no weights",
            options=("output_weights",),
            hint="pass its weights, or put <stem>.caffemodel beside the prototxt",
        )
    result = ConvertResult(plan, diagnostics=list(model.diagnostics))
    if model.upgrades:
        result.notes.append(f"upgraded {model_path}: {'; '.join(model.upgrades)}")

    def write(result: ConvertResult) -> None:
        converted = apply_caffe_plan(model, plan)
        if options.validate:
            from proto_rewrite.caffe.onnx_export import export_onnx

            if not model.weights:
                raise UsageError(
                    "validate needs the model's weights", options=("validate",), hint="give the caffemodel (weights)"
                )
            result.validation = _check(options, export_onnx(model), export_onnx(converted))
            if not result.validation.passed and not options.keep_on_failure:
                return
        with output_guard.may_replace(options.in_place, model_path, model.weights_path):
            saved = save_caffe(converted, output, weights_out)
        if saved is not None:
            result.notes.append(saved.describe())
        result.written.extend([str(output)] + ([weights_out] if weights_out else []))

    return result, write


# -- helpers ---------------------------------------------------------------------------------------


def _given_plan(source, model_format: str) -> RewritePlan:
    plan = read_plan(source)
    if plan.model_format != model_format:
        raise UsageError(
            f"the plan is for a {plan.model_format} model, this is a {model_format} model",
            hint="apply the plan to the model it was made from",
        )
    return plan


def _check(options: ConvertOptions, original, converted):
    """The original and the converted model on the same random inputs (onnxruntime)."""
    from proto_rewrite.validation.compare_models import ValidateOptions, validate_models
    from proto_rewrite.validation.runtime import RuntimeOptions

    runtime = RuntimeOptions(options.device, options.optimize, options.threads)
    return validate_models(original, converted, ValidateOptions(runtime=runtime), names=("original", "converted"))


def _names_text(names) -> str | None:
    if names is None or isinstance(names, str):
        return names
    return ",".join(names)
