"""``proto-rewrite export MODEL.prototxt -o OUT.onnx``: the Caffe net as an ONNX model, with
Caffe's exact semantics (validated against OpenCV dnn and Caffe's sources layer by layer)."""

from __future__ import annotations

import json

from proto_rewrite.cli.options import (
    add_caffe_options,
    add_output_options,
    add_safety_options,
    add_shape_options,
    apply_safety_options,
    caffe_schema_arg,
    caffe_weights_arg,
    parse_input_shapes,
)

HELP = "export a Caffe net to ONNX with Caffe's exact semantics"
DESCRIPTION = (
    HELP + ". Tensor names are the Caffe blob names; a value rewritten by an in-place layer is "
    "BLOB@LAYER before its last write. Without weights the model gets random weights (said loudly)."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("export", help=HELP, description=DESCRIPTION)
    parser.add_argument("model", help="a Caffe .prototxt")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT.onnx",
        help="the ONNX file to write (over 2 GB: with OUT.onnx.data beside it)",
    )
    group = parser.add_argument_group("export")
    group.add_argument(
        "--opset", type=int, default=None, help="ONNX opset (default: 17; 11 to the newest the installed onnx knows)"
    )
    group.add_argument("--dynamic-batch", action="store_true", help="leave the batch size of the inputs free")
    group.add_argument(
        "--dynamic-size",
        action="store_true",
        help="leave the spatial size of the inputs free (nets without size-bound layers)",
    )
    group.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights used when the model has none (default: 0)"
    )
    add_caffe_options(parser)
    add_shape_options(parser)
    add_safety_options(parser, nonfinite=True)
    add_output_options(parser)
    parser.set_defaults(run=run)


def run(args, console) -> int:
    from proto_rewrite.caffe.model import load_caffe
    from proto_rewrite.caffe.onnx_export.export_file import export_file

    apply_safety_options(args)
    overrides = parse_input_shapes(args.input_shape) or None
    model = load_caffe(
        args.model,
        caffe_weights_arg(args),
        phase=args.phase,
        strict=args.strict,
        input_shapes=overrides,
        schema=caffe_schema_arg(args),
    )
    console.diagnostics(model.diagnostics)
    result = export_file(
        model,
        args.output,
        opset=args.opset,
        dynamic_batch=args.dynamic_batch,
        dynamic_size=args.dynamic_size,
        input_shapes=overrides,
        seed=args.seed,
        allow_nonfinite=args.allow_nonfinite,
    )
    if result.random_weights:
        console.error(
            f"WARNING: {model.prototxt_path}: no weights given: the exported model has RANDOM weights "
            f"(seed {args.seed}); it computes nothing meaningful. Give --weights FILE.caffemodel for the "
            f"trained model."
        )
    if args.format == "json":
        console.out(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        console.out(result.render_text())
    return 0
