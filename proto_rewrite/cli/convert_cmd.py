"""``proto-rewrite convert MODEL -o OUT``: rewrite the FC layers of a Caffe or ONNX model."""

from __future__ import annotations

import json
import os
from pathlib import Path

from proto_rewrite import output_guard
from proto_rewrite.cli.options import (
    add_caffe_options,
    add_output_options,
    add_runtime_options,
    add_safety_options,
    add_shape_options,
    apply_safety_options,
    caffe_weights_arg,
    is_onnx_path,
    parse_input_shapes,
    use_caffe_schema,
)
from proto_rewrite.errors import EXIT_CHECK_FAILED, UsageError

HELP = "rewrite fully-connected layers into convolutions"


def register(subparsers) -> None:
    parser = subparsers.add_parser("convert", help=HELP, description=HELP)
    parser.add_argument("model", nargs="+",
                        help="a Caffe .prototxt or an .onnx model; several, folders or globs for a batch")
    parser.add_argument("-o", "--output", help="the converted model (.prototxt or .onnx); for a batch, a folder")
    batch = parser.add_argument_group("batch")
    batch.add_argument("--jobs", type=int, default=1, metavar="N", help="convert N models at a time (processes)")
    batch.add_argument("--in-place", action="store_true", help="allow the output to replace the input")
    rewrite = parser.add_argument_group("rewrite")
    rewrite.add_argument("--mode", choices=("fcn", "exact"), default="fcn",
                         help="fcn (default): the net accepts any input size and its FC outputs become score maps; "
                              "exact: every output keeps its original shape")
    rewrite.add_argument("--only", metavar="NAMES", help="rewrite only these FC layers (comma-separated); "
                                                         "one that cannot be rewritten is an error")
    rewrite.add_argument("--match", metavar="REGEX", help="rewrite only FC layers whose name matches")
    rewrite.add_argument("--exclude", metavar="NAMES", help="leave these FC layers as they are (comma-separated)")
    rewrite.add_argument("--pool-scores", choices=("avg", "max", "probs-avg"),
                         help="fcn mode: pool each score map back to (N, K) with a global pooling, so the output "
                              "keeps its shape at any input size (avg/max of the scores before a final Softmax; "
                              "probs-avg: mean of the per-cell probabilities)")
    rewrite.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    rewrite.add_argument("--save-plan", metavar="FILE.json", help="also write the plan as JSON")
    rewrite.add_argument("--validate", action="store_true",
                         help="run the original and the converted model on the same random input with onnxruntime "
                              "(Caffe through the exporter) and write nothing if they differ (exit 1)")
    rewrite.add_argument("--keep-on-failure", action="store_true",
                         help="with --validate: write the outputs even when the check fails")
    caffe = parser.add_argument_group("Caffe output")
    caffe.add_argument("--output-weights", metavar="CAFFEMODEL",
                       help="converted weights (default: OUTPUT's stem + .caffemodel, when the model has weights)")
    caffe.add_argument("--rename", metavar="SUFFIX", help="rename rewritten layers and their tops, e.g. --rename=-conv: fc6 -> fc6-conv")
    caffe.add_argument("--input-size", nargs=2, type=int, metavar=("H", "W"),
                       help="set the deploy input's height and width in the converted prototxt")
    onnx = parser.add_argument_group("ONNX")
    onnx.add_argument("--classifier-before-pool", action="store_true",
                      help="move a GlobalAveragePool -> FC classifier before the pool, so fcn mode gives a class score map")
    add_caffe_options(parser)
    add_shape_options(parser)
    add_runtime_options(parser)
    add_safety_options(parser, nonfinite=True)
    add_output_options(parser)
    parser.set_defaults(run=run)


def run(args, console) -> int:
    from proto_rewrite.cli.batch import expand_models, is_batch, run_batch

    if not args.output and not args.dry_run:
        raise UsageError("no output given", hint="add -o OUT (or --dry-run to see the plan only)")
    if args.keep_on_failure and not args.validate:
        raise UsageError("--keep-on-failure only makes sense with --validate")
    models = expand_models(args.model)
    if is_batch(args, models):
        return run_batch(args, models, console)
    return convert_one(args, models[0], args.output, console)


def convert_one(args, model_path: str, output: str | None, console) -> int:
    """Convert one model to ``output``, printing its plan; the exit code."""
    from proto_rewrite.plan import Selection

    apply_safety_options(args)
    selection = Selection.from_options(args.only, args.match, args.exclude)
    input_shapes = parse_input_shapes(args.input_shape)
    if is_onnx_path(model_path):
        plan, write = _convert_onnx(args, model_path, output, selection, input_shapes, console)
    else:
        plan, write = _convert_caffe(args, model_path, output, selection, input_shapes, console)
    for skip in plan.skips:
        console.info(f"note: {skip.message}")
    if args.save_plan:
        from proto_rewrite.fileio import atomic_output

        with atomic_output(args.save_plan, "w") as handle:
            handle.write(plan.to_json())
    written, check = ([], None) if args.dry_run else write()
    report = {"plan": plan.to_dict(), "written": written, "dry_run": args.dry_run}
    if check is not None:
        from proto_rewrite.validate.report import summary_line, to_dict

        report["validation"] = to_dict(check)
    if args.format == "json":
        console.out(json.dumps(report, indent=2) + "\n")
    else:
        console.out(plan.render_text())
        for path in written:
            console.out(f"wrote {path}\n")
    if check is not None:
        console.error(summary_line(check) + ("" if check.passed or written else "; nothing written"))
        if not check.passed:
            return EXIT_CHECK_FAILED
    return 0


def _check(args, original, converted):
    """validate_models on the pair, with the runtime options of the command line."""
    from proto_rewrite.validate.compare_models import ValidateOptions, validate_models
    from proto_rewrite.validate.runtime import RuntimeOptions

    symbolic_batch = any(not _fixed(i.type.tensor_type.shape.dim[0]) for i in original.graph.input
                         if i.type.tensor_type.shape.dim)
    options = ValidateOptions(runtime=RuntimeOptions(args.device, args.optimize, args.threads),
                              batch=1 if symbolic_batch else None)
    return validate_models(original, converted, options, names=("original", "converted"))


def _fixed(dim) -> bool:
    return dim.HasField("dim_value") and dim.dim_value > 0


def _refuse_overwriting_inputs(args, outputs, inputs) -> None:
    if args.in_place:
        return
    existing = [Path(p).resolve() for p in inputs if p and os.path.exists(p)]
    for output in outputs:
        if output and Path(output).resolve() in existing:
            raise UsageError(f"output '{output}' is also an input",
                             hint="choose another output path, or pass --in-place to replace the input")


def _convert_caffe(args, model_path, output, selection, input_shapes, console):
    use_caffe_schema(args)
    from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions, apply_caffe_plan, plan_caffe_rewrite
    from proto_rewrite.caffe.model import load_caffe, save_caffe

    if args.classifier_before_pool:
        raise UsageError("--classifier-before-pool applies to ONNX models only")
    model = load_caffe(model_path, caffe_weights_arg(args), phase=args.phase, strict=args.strict,
                       input_shapes=input_shapes)
    console.diagnostics(model.diagnostics)
    if model.upgrades:
        console.info(f"upgraded {model_path}: {'; '.join(model.upgrades)}")
    if not args.allow_nonfinite:
        from proto_rewrite.nonfinite import check_caffe_weights

        check_caffe_weights(model)
    options = CaffeRewriteOptions(mode=args.mode, selection=selection, rename_suffix=args.rename,
                                  input_size=tuple(args.input_size) if args.input_size else None,
                                  input_shapes=input_shapes, pool_scores=args.pool_scores)
    plan = plan_caffe_rewrite(model, options)
    weights_out = None
    if model.weights_path:
        weights_out = args.output_weights or (str(Path(output).with_suffix(".caffemodel")) if output else None)
    elif args.output_weights:
        raise UsageError("--output-weights given, but the model has no weights",
                         hint="pass --weights, or put <stem>.caffemodel beside the prototxt")
    if output:
        _refuse_overwriting_inputs(args, [output, weights_out], [model_path, model.weights_path])

    def write():
        converted = apply_caffe_plan(model, plan)
        check = None
        if args.validate:
            from proto_rewrite.caffe.onnx_export import export_onnx

            if not model.weights:
                raise UsageError("--validate needs the model's weights", hint="pass --weights")
            check = _check(args, export_onnx(model), export_onnx(converted))
            if not check.passed and not args.keep_on_failure:
                return [], check
        with output_guard.may_replace(args.in_place, model_path, model.weights_path):
            saved = save_caffe(converted, output, weights_out)
        if saved is not None:
            console.info(saved.describe())
        return [output] + ([weights_out] if weights_out else []), check

    return plan, write


def _convert_onnx(args, model_path, output, selection, input_shapes, console):
    from proto_rewrite.onnx.model import load_onnx, save_onnx
    from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite

    for option, value in (("--rename", args.rename), ("--input-size", args.input_size),
                          ("--output-weights", args.output_weights), ("--weights", args.weights)):
        if value:
            raise UsageError(f"{option} applies to Caffe models only")
    model = load_onnx(model_path)
    if not args.allow_nonfinite:
        from proto_rewrite.nonfinite import check_onnx_weights

        check_onnx_weights(model)
    plan = plan_onnx_rewrite(model, selection=selection, mode=args.mode,
                             classifier_before_pool=args.classifier_before_pool, input_shapes=input_shapes or None,
                             pool_scores=args.pool_scores)
    if output:
        _refuse_overwriting_inputs(args, [output], [model_path])

    def write():
        converted = apply_onnx_plan(model, plan)
        check = None
        if args.validate:
            check = _check(args, model.to_proto(), converted.to_proto())
            if not check.passed and not args.keep_on_failure:
                return [], check
        with output_guard.may_replace(args.in_place, model_path):
            console.info(save_onnx(converted, output).describe())
        return [output], check

    return plan, write
