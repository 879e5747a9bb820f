"""``proto-rewrite inspect MODEL``: inputs, layers, weight shapes and parameter counts."""

from __future__ import annotations

import json

from proto_rewrite.cli.options import add_caffe_options, add_output_options, caffe_weights_arg, use_caffe_schema

HELP = "show a model's inputs, layers, weight shapes and parameter counts"


def register(subparsers) -> None:
    parser = subparsers.add_parser("inspect", help=HELP, description=HELP)
    parser.add_argument("model", help="a Caffe .prototxt")
    add_caffe_options(parser)
    add_output_options(parser)
    parser.set_defaults(run=run)


def run(args, console) -> int:
    use_caffe_schema(args)
    from proto_rewrite.caffe.model import load_caffe
    from proto_rewrite.caffe.summary import summarize
    from proto_rewrite.summary import render_text

    model = load_caffe(args.model, caffe_weights_arg(args), phase=args.phase, strict=args.strict)
    console.diagnostics(model.diagnostics)
    summary = summarize(model)
    if args.format == "json":
        console.out(json.dumps(summary.to_dict(), indent=2) + "\n")
    else:
        console.out(render_text(summary))
    return 0
