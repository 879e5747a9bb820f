"""``proto-rewrite init-weights PROTOTXT -o OUT.caffemodel``: random weights for a net, for tests."""

from __future__ import annotations

import os

from proto_rewrite.cli.options import (
    add_caffe_net_options,
    add_safety_options,
    add_shape_options,
    add_verbosity_options,
    apply_safety_options,
    caffe_schema_arg,
    parse_input_shapes,
)

HELP = "write a caffemodel with random weights for a prototxt (deterministic per --seed)"
DESCRIPTION = (
    HELP + ". Every learnable blob gets the shape Caffe expects for the input shapes; the values "
    "keep activations in range for unit-scale inputs and keep a final softmax from saturating."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("init-weights", help=HELP, description=DESCRIPTION)
    parser.add_argument("model", help="a Caffe .prototxt")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.caffemodel", help="the caffemodel to write")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_shape_options(parser)
    add_caffe_net_options(parser)
    add_safety_options(parser)
    add_verbosity_options(parser.add_argument_group("output"))
    parser.set_defaults(run=run)


def run(args, console) -> int:
    apply_safety_options(args)
    from proto_rewrite.caffe.caffemodel import write_caffemodel
    from proto_rewrite.caffe.init_weights import lazy_random_weights, unknown_blob_layers
    from proto_rewrite.caffe.model import load_caffe
    from proto_rewrite.caffe.shapes import infer_shapes
    from proto_rewrite.diagnostics import Diagnostic
    from proto_rewrite.errors import Location, UsageError

    if args.seed < 0 or args.seed >= 2**32:
        raise UsageError(f"--seed {args.seed} is out of range", hint="use a seed from 0 to 4294967295")
    if os.path.exists(args.output) and os.path.samefile(args.output, args.model):
        raise UsageError(
            "the output is the model itself", path=args.output, hint="write the weights to a .caffemodel file"
        )
    overrides = parse_input_shapes(args.input_shape)
    model = load_caffe(args.model, weights=None, phase=args.phase, strict=args.strict, schema=caffe_schema_arg(args))
    console.diagnostics(model.diagnostics)
    shapes = infer_shapes(model.net, overrides, path=model.prototxt_path, lines=model.layer_lines)
    console.diagnostics(shapes.diagnostics)
    # Checked against the limits before any is drawn; drawn and written one layer at a time.
    weights = lazy_random_weights(model.net, shapes, seed=args.seed, path=model.prototxt_path, lines=model.layer_lines)
    console.diagnostics(
        [
            Diagnostic(
                "warning",
                "proto-rewrite does not know this layer's learnable blobs; it gets none",
                Location(model.prototxt_path, model.layer_lines.get(name), layer=name),
                hint="Caffe fills them from the layer's fillers when it loads the net",
            )
            for name in unknown_blob_layers(model.net)
        ]
    )
    write_caffemodel(args.output, model.net, weights)
    parameters = weights.parameter_count()
    console.out(
        f"wrote {args.output}: random weights for {len(weights)} layers, {parameters:,} parameters (seed {args.seed})\n"
    )
    return 0
