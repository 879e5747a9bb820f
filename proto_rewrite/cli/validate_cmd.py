"""``proto-rewrite validate A B``: do two models compute the same outputs? (onnxruntime)"""

from __future__ import annotations

import json

from proto_rewrite.cli.options import (
    add_caffe_schema_option,
    add_output_options,
    add_runtime_options,
    add_safety_options,
    add_shape_options,
    add_validation_options,
    apply_safety_options,
    caffe_default_weights,
    caffe_schema_arg,
    parse_input_shapes,
    refuse_output_over_input,
    validate_options_from,
)
from proto_rewrite.errors import EXIT_CHECK_FAILED

HELP = "check that two models (ONNX or Caffe) compute the same outputs, with onnxruntime"


def register(subparsers) -> None:
    parser = subparsers.add_parser("validate", help=HELP, description=HELP + ". A is the reference.")
    parser.add_argument("model_a", metavar="A", help="reference model: .onnx or Caffe .prototxt")
    parser.add_argument("model_b", metavar="B", help="model to check: .onnx or Caffe .prototxt")
    caffe = parser.add_argument_group("Caffe models (exported to ONNX for onnxruntime)")
    caffe.add_argument("--weights-a", metavar="CAFFEMODEL", help="weights of A (default: <stem>.caffemodel beside it)")
    caffe.add_argument("--weights-b", metavar="CAFFEMODEL", help="weights of B (default: <stem>.caffemodel beside it)")
    add_caffe_schema_option(caffe)
    parser.add_argument(
        "--plan",
        metavar="PLAN.json",
        help="with --localize: the conversion plan (convert --save-plan), to pair renamed tensors",
    )
    parser.add_argument(
        "--dense",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="dense check of an fcn conversion: B once on an H x W image against A on every crop its score map covers",
    )
    add_validation_options(parser)
    parser.add_argument(
        "--compare",
        choices=("scale", "elementwise"),
        help="pass/fail rule: scale (default): max|A-B| <= tol x max|A| per output; elementwise: every "
        "element within atol + rtol x |A| (the default when --atol or --rtol is given)",
    )
    parser.add_argument(
        "--scale-tol",
        action="append",
        default=[],
        metavar="[NAME:]VALUE",
        help="tolerance of the scale rule, for every output or one (repeatable); default by dtype "
        "(fp32 1e-5, fp16 1e-2, fp64 1e-10)",
    )
    add_runtime_options(parser)
    add_shape_options(parser)
    add_safety_options(parser, nonfinite=True)
    add_output_options(parser)
    parser.set_defaults(run=run)


def run(args, console) -> int:
    from proto_rewrite.validation.compare_models import validate_models
    from proto_rewrite.validation.dynamic import defaults_line
    from proto_rewrite.validation.load import load_for_validation
    from proto_rewrite.validation.report import render_text, summary_line, to_dict
    from proto_rewrite.validation.tolerances import Tolerances

    apply_safety_options(args)
    refuse_output_over_input(
        [args.save_inputs, args.save_outputs],
        [
            args.model_a,
            args.model_b,
            args.weights_a,
            args.weights_b,
            args.inputs,
            *caffe_default_weights(args.model_a, args.model_b),
        ],
    )
    options = validate_options_from(args, parse_input_shapes(args.input_shape))
    options.tolerances = Tolerances.parse(args.atol, args.rtol, args.scale_tol, args.compare)
    if args.plan:
        options.renames = plan_renames(args.plan)
    model_a, model_b = (
        load_for_validation(
            path,
            weights,
            console,
            any_size=bool(args.dense),
            allow_nonfinite=args.allow_nonfinite,
            caffe_schema=caffe_schema_arg(args),
        )
        for path, weights in ((args.model_a, args.weights_a), (args.model_b, args.weights_b))
    )
    if args.dense:
        return run_dense(args, console, model_a, model_b, options)
    result = validate_models(model_a, model_b, options, names=(args.model_a, args.model_b))
    line = defaults_line(result.input_defaults)
    if line:
        console.info(line, level=0)
    save_arrays(args, result)
    if args.format == "json":
        console.out(json.dumps(to_dict(result), indent=2) + "\n")
    else:
        console.out(render_text(result))
    console.error(summary_line(result))
    return 0 if result.passed else EXIT_CHECK_FAILED


def plan_renames(path) -> dict[str, str]:
    from proto_rewrite.rewrite_plan import read_plan

    return read_plan(path).renames


def run_dense(args, console, model_a, model_b, options) -> int:
    from proto_rewrite.validation.dense import dense_check

    result = dense_check(model_a, model_b, tuple(args.dense), options, names=(args.model_a, args.model_b))
    console.out(json.dumps(result.to_dict(), indent=2) + "\n" if args.format == "json" else result.render_text())
    worst = max((o.comparison.absolute.max for o in result.outputs), default=0.0)
    verdict = "PASSED" if result.passed else "FAILED"
    console.error(
        f"{verdict}: dense check, {result.cells} cells, max abs error {worst:.3g}"
        + (" (padded net: reported, not judged)" if result.padded else "")
    )
    return 0 if result.passed else EXIT_CHECK_FAILED


def save_arrays(args, result) -> None:
    """--save-inputs / --save-outputs: npz files (trial k of several: keys suffixed #k)."""
    import io

    import numpy as np

    from proto_rewrite.fileio import atomic_output

    for path, batches in ((args.save_inputs, result.input_values), (args.save_outputs, result.output_values)):
        if not path:
            continue
        arrays = {}
        for trial, values in enumerate(batches):
            for name, value in values.items():
                arrays[name if len(batches) == 1 else f"{name}#{trial}"] = value
        archive = io.BytesIO()  # np.savez straight into a file that fails leaves a ZipFile complaining at exit
        np.savez(archive, **arrays)
        with atomic_output(path) as handle:
            handle.write(archive.getbuffer())
