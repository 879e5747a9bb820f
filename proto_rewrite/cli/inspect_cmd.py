"""``proto-rewrite inspect MODEL``: inputs, layers, weight shapes and parameter counts."""

from __future__ import annotations

import json

from proto_rewrite.cli.options import (
    FLAG_SPELLING,
    add_caffe_options,
    add_output_options,
    add_safety_options,
    add_shape_options,
    apply_safety_options,
    caffe_schema_arg,
    caffe_weights_arg,
    parse_input_shapes,
)

HELP = "show a model's inputs, layers with their output shapes, weight shapes and parameter counts"


def register(subparsers) -> None:
    parser = subparsers.add_parser("inspect", help=HELP, description=HELP)
    parser.add_argument("model", help="a Caffe .prototxt or an .onnx model")
    add_caffe_options(parser)
    add_shape_options(parser)
    add_safety_options(parser)
    add_output_options(parser)
    parser.set_defaults(run=run)


def run(args, console) -> int:
    from proto_rewrite.api import inspect
    from proto_rewrite.summary import render_text

    apply_safety_options(args)
    summary = inspect(
        args.model,
        weights=caffe_weights_arg(args),
        phase=args.phase,
        strict=args.strict,
        input_shapes=parse_input_shapes(args.input_shape) or None,
        caffe_schema=caffe_schema_arg(args),
    )
    console.diagnostics(summary.diagnostics)
    summary.diagnostics = [note.with_flags(FLAG_SPELLING) for note in summary.diagnostics]  # the JSON's too
    if args.format == "json":
        console.out(json.dumps(summary.to_dict(), indent=2) + "\n")
    else:
        console.out(render_text(summary))
    return 0
