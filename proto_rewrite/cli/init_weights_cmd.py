"""``proto-rewrite init-weights PROTOTXT -o OUT.caffemodel``: random weights for a net, for tests."""

from __future__ import annotations

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
    from proto_rewrite.caffe.init_weights import write_random_weights
    from proto_rewrite.caffe.model import load_caffe
    from proto_rewrite.diagnostics import Diagnostic
    from proto_rewrite.errors import Location

    model = load_caffe(args.model, weights=None, phase=args.phase, strict=args.strict, schema=caffe_schema_arg(args))
    console.diagnostics(model.diagnostics)
    result = write_random_weights(model, args.output, seed=args.seed, input_shapes=parse_input_shapes(args.input_shape))
    console.diagnostics(result.diagnostics)
    console.diagnostics(
        [
            Diagnostic(
                "warning",
                "proto-rewrite does not know this layer's learnable blobs; it gets none",
                Location(model.prototxt_path, model.layer_lines.get(name), layer=name),
                hint="Caffe fills them from the layer's fillers when it loads the net",
            )
            for name in result.unknown_layers
        ]
    )
    console.out(result.render_text())
    return 0
