"""``proto-rewrite diff A B``: what changed between two models (Caffe/Caffe or ONNX/ONNX).

Exit 0 when the models are equal, 1 when they differ, 2 on bad input (like ``diff``).
"""

from __future__ import annotations

import json
import os

from proto_rewrite.cli.options import (
    add_caffe_net_options,
    add_safety_options,
    add_shape_options,
    add_verbosity_options,
    apply_safety_options,
    caffe_default_weights,
    caffe_schema_arg,
    parse_input_shapes,
    refuse_output_over_input,
)
from proto_rewrite.errors import EXIT_CHECK_FAILED, EXIT_OK, UsageError

HELP = "show what changed between two models: layers removed, added and changed, weight relations, costs"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "diff", help=HELP, description=HELP, epilog="exit codes: 0 equal, 1 different, 2 bad usage or bad input"
    )
    parser.add_argument("model_a", metavar="A", help="the model before (a Caffe .prototxt or an .onnx model)")
    parser.add_argument("model_b", metavar="B", help="the model after, of the same format")
    matching = parser.add_argument_group("matching")
    matching.add_argument(
        "--plan",
        metavar="PLAN.json",
        help="the conversion plan (convert --save-plan): its renames match layers across A and B",
    )
    weights = parser.add_argument_group("weights")
    weights.add_argument("--weights-a", metavar="CAFFEMODEL", help="A's weights (default: <stem>.caffemodel beside A)")
    weights.add_argument("--weights-b", metavar="CAFFEMODEL", help="B's weights (default: <stem>.caffemodel beside B)")
    weights.add_argument(
        "--no-weights", action="store_true", help="compare structure and weight shapes only; read no weight values"
    )
    add_caffe_net_options(parser)
    add_shape_options(parser)
    output = parser.add_argument_group("output")
    output.add_argument(
        "--format",
        choices=("text", "json", "html"),
        default="text",
        help="text (default): a git-diff-like listing; json: schemas/diff.schema.json; "
        "html: one self-contained page with both graphs side by side",
    )
    output.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE instead of stdout")
    output.add_argument("--all", action="store_true", help="text: list unchanged layers too, one per line")
    output.add_argument(
        "--text",
        action="store_true",
        help="add a unified diff of the two models as normalised text (Caffe: V2 prototxt)",
    )
    output.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default="auto",
        help="colour the text report: auto (default) when stdout is a terminal",
    )
    add_verbosity_options(output)
    add_safety_options(parser)
    parser.set_defaults(run=run)


def run(args, console) -> int:
    from proto_rewrite.graphdiff.compare import diff_graphs
    from proto_rewrite.graphdiff.load import AUTO, LoadOptions, load_pair, text_diff
    from proto_rewrite.rewrite_plan import plan_renames, read_plan

    apply_safety_options(args)
    refuse_output_over_input(
        [args.output],
        [
            args.model_a,
            args.model_b,
            args.weights_a,
            args.weights_b,
            args.plan,
            *caffe_default_weights(args.model_a, args.model_b),
        ],
    )
    if args.no_weights and (args.weights_a or args.weights_b):
        raise UsageError("--no-weights cannot be combined with --weights-a / --weights-b")
    plan = read_plan(args.plan) if args.plan else None
    options = LoadOptions(
        weights_a=None if args.no_weights else (args.weights_a or AUTO),
        weights_b=None if args.no_weights else (args.weights_b or AUTO),
        phase=args.phase,
        strict=args.strict,
        input_shapes=parse_input_shapes(args.input_shape),
        caffe_schema=caffe_schema_arg(args),
    )
    graph_a, graph_b = load_pair(args.model_a, args.model_b, options)
    renames = plan_renames(plan, graph_a.model_format)
    for graph in (graph_a, graph_b):
        console.diagnostics(graph.diagnostics)
    diff = diff_graphs(graph_a, graph_b, renames, compare_values=not args.no_weights)
    if args.text:
        diff.text_diff = text_diff(graph_a, graph_b)
    report = _render(diff, args, console)
    if args.output:
        from proto_rewrite.fileio import atomic_output
        from proto_rewrite.terminal import escape_controls

        coloured = args.format == "text" and _colour(args, console)  # its names are escaped already
        with atomic_output(args.output, "w") as handle:  # a text report gets printed later: names escaped
            handle.write(escape_controls(report) if args.format == "text" and not coloured else report)
        console.info(f"wrote {args.output}")
    else:
        console.out(report, escaped=args.format == "text" and _colour(args, console))
    console.error(
        f"{'EQUAL' if diff.equal else 'DIFFERENT'}: {diff.count('changed')} changed, "
        f"{diff.count('removed')} removed, {diff.count('added')} added, {diff.count('unchanged')} unchanged"
    )
    return EXIT_OK if diff.equal else EXIT_CHECK_FAILED


def _render(diff, args, console) -> str:
    if args.format == "json":
        return json.dumps(diff.to_dict(), indent=2) + "\n"
    if args.format == "html":
        from proto_rewrite.graphdiff.html import render_html

        return render_html(diff)
    from proto_rewrite.graphdiff.text import render_text

    return render_text(diff, show_all=args.all, colour=_colour(args, console))


def _colour(args, console) -> bool:
    if args.color != "auto":
        return args.color == "always"
    if args.output or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(console.stdout, "isatty", None)
    return bool(isatty and isatty())
