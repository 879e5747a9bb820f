"""``proto-rewrite convert MODEL -o OUT``: rewrite the FC layers of a Caffe or ONNX model."""

from __future__ import annotations

from proto_rewrite.cli.options import (
    add_caffe_options,
    add_output_options,
    add_runtime_options,
    add_safety_options,
    add_shape_options,
    apply_safety_options,
    caffe_schema_arg,
    parse_input_shapes,
)
from proto_rewrite.errors import EXIT_CHECK_FAILED, UsageError

HELP = "rewrite fully-connected layers into convolutions"


def register(subparsers) -> None:
    parser = subparsers.add_parser("convert", help=HELP, description=HELP)
    parser.add_argument(
        "model", nargs="+", help="a Caffe .prototxt or an .onnx model; several, folders or globs for a batch"
    )
    parser.add_argument("-o", "--output", help="the converted model (.prototxt or .onnx); for a batch, a folder")
    batch = parser.add_argument_group("batch")
    batch.add_argument("--jobs", type=int, default=1, metavar="N", help="convert N models at a time (processes)")
    batch.add_argument("--in-place", action="store_true", help="allow the output to replace the input")
    rewrite = parser.add_argument_group("rewrite")
    rewrite.add_argument(
        "--mode",
        choices=("fcn", "exact"),
        default="fcn",
        help="fcn (default): the FC outputs become score maps, and the input size is freed where a run at a "
        "second size proves the net takes it (the plan says what was shown); exact: every output keeps its "
        "original shape",
    )
    rewrite.add_argument(
        "--only",
        metavar="NAMES",
        help="rewrite only these FC layers (comma-separated); one that cannot be rewritten is an error",
    )
    rewrite.add_argument("--match", metavar="REGEX", help="rewrite only FC layers whose name matches")
    rewrite.add_argument("--exclude", metavar="NAMES", help="leave these FC layers as they are (comma-separated)")
    rewrite.add_argument(
        "--pool-scores",
        choices=("avg", "max", "probs-avg"),
        help="fcn mode: pool each score map back to (N, K) with a global pooling, so the output "
        "keeps its shape at other input sizes too (avg/max of the scores before a final Softmax; "
        "probs-avg: mean of the per-cell probabilities)",
    )
    rewrite.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    rewrite.add_argument("--save-plan", metavar="FILE.json", help="also write the plan as JSON")
    rewrite.add_argument(
        "--plan",
        metavar="PLAN.json",
        help="apply this reviewed plan (from --dry-run --save-plan) instead of planning: refused "
        "when it does not fit the model; rewrites dropped from it stay as they are",
    )
    rewrite.add_argument(
        "--validate",
        action="store_true",
        help="run the original and the converted model on the same random input with onnxruntime "
        "(Caffe through the exporter) and write nothing if they differ (exit 1)",
    )
    rewrite.add_argument(
        "--keep-on-failure", action="store_true", help="with --validate: write the outputs even when the check fails"
    )
    caffe = parser.add_argument_group("Caffe output")
    caffe.add_argument(
        "--output-weights",
        metavar="CAFFEMODEL",
        help="converted weights (default: OUTPUT's stem + .caffemodel, when the model has weights)",
    )
    caffe.add_argument(
        "--rename",
        metavar="SUFFIX",
        help="rename rewritten layers and their tops, e.g. --rename=-conv: fc6 -> fc6-conv",
    )
    caffe.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="set the deploy input's height and width in the converted prototxt",
    )
    onnx = parser.add_argument_group("ONNX")
    onnx.add_argument(
        "--proof-run-limit",
        metavar="SIZE",
        help="fcn mode: above this much weight data (default 256MiB) the proof that the net runs at "
        "another size infers shapes there instead of running onnxruntime (which needs memory "
        "for a copy of the weights)",
    )
    onnx.add_argument(
        "--classifier-before-pool",
        action="store_true",
        help="move a GlobalAveragePool -> FC classifier before the pool, so fcn mode gives a class score map",
    )
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
        return run_batch(args, models, console, convert_one)
    return convert_one(args, models[0], args.output, console)


def convert_one(args, model_path: str, output: str | None, console) -> int:
    """Convert one model to ``output`` (the library's ``convert_file``), printing its plan; the exit code."""
    from proto_rewrite.conversion import convert_file

    apply_safety_options(args)
    result = convert_file(model_path, output, options_from(args))
    console.diagnostics(result.diagnostics)
    for skip in result.plan.skips:
        console.info(f"note: {skip.message}")
    for note in result.notes:
        console.info(note)
    if args.format == "json":
        console.out(result.to_json())
    else:
        console.out(result.plan.render_text())
        for path in result.written:
            console.out(f"wrote {path}\n")
    check = result.validation
    if check is not None:
        from proto_rewrite.validation.report import summary_line

        console.error(summary_line(check) + ("" if check.passed or result.written else "; nothing written"))
        if not check.passed:
            return EXIT_CHECK_FAILED
    return 0


def options_from(args):
    """The library's ConvertOptions from the parsed command line."""
    from proto_rewrite.conversion import AUTO, ConvertOptions
    from proto_rewrite.limits import parse_size

    weights = None if getattr(args, "no_weights", False) else (args.weights or AUTO)
    return ConvertOptions(
        mode=args.mode,
        only=args.only,
        match=args.match,
        exclude=args.exclude,
        classifier_before_pool=args.classifier_before_pool,
        pool_scores=args.pool_scores,
        input_shapes=parse_input_shapes(args.input_shape) or None,
        rename=args.rename,
        proof_run_limit=None if args.proof_run_limit is None else parse_size(args.proof_run_limit, "--proof-run-limit"),
        input_size=tuple(args.input_size) if args.input_size else None,
        weights=weights,
        output_weights=args.output_weights,
        phase=args.phase,
        strict=args.strict,
        caffe_schema=caffe_schema_arg(args),
        allow_nonfinite=args.allow_nonfinite,
        plan=args.plan,
        save_plan=args.save_plan,
        dry_run=args.dry_run,
        validate=args.validate,
        keep_on_failure=args.keep_on_failure,
        in_place=args.in_place,
        device=args.device,
        optimize=args.optimize,
        threads=args.threads,
    )
