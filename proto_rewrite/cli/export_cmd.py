"""``proto-rewrite export MODEL.prototxt -o OUT.onnx``: the Caffe net as an ONNX model, with
Caffe's exact semantics (validated against OpenCV dnn and Caffe's sources layer by layer)."""

from __future__ import annotations

import json
import os

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
RANDOM_WEIGHTS_NOTE = "random (init-weights, seed {seed}): NOT a trained model"


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
    from proto_rewrite.caffe.onnx_export import build_onnx
    from proto_rewrite.errors import UsageError

    apply_safety_options(args)
    if os.path.exists(args.output) and os.path.samefile(args.output, args.model):
        raise UsageError(
            "the output is the model itself", path=args.output, hint="write the ONNX model to a .onnx file"
        )
    if args.seed < 0 or args.seed >= 2**32:
        raise UsageError(f"--seed {args.seed} is out of range", hint="use a seed from 0 to 4294967295")
    overrides = parse_input_shapes(args.input_shape)
    model = load_caffe(
        args.model,
        caffe_weights_arg(args),
        phase=args.phase,
        strict=args.strict,
        input_shapes=overrides or None,
        schema=caffe_schema_arg(args),
    )
    console.diagnostics(model.diagnostics)
    if model.weights_path and os.path.exists(args.output) and os.path.samefile(args.output, model.weights_path):
        raise UsageError(
            "the output is the model's weights file, an input",
            path=args.output,
            hint="write the ONNX model to a .onnx file",
        )
    if not args.allow_nonfinite:
        from proto_rewrite.nonfinite import check_caffe_weights

        check_caffe_weights(model)
    random_note = None
    if model.weights_path is None and _has_learnable_blobs(model):
        random_note = _fill_random_weights(model, overrides, args.seed)
        console.error(
            f"WARNING: {model.prototxt_path}: no weights given: the exported model has RANDOM weights "
            f"(seed {args.seed}); it computes nothing meaningful. Give --weights FILE.caffemodel for the "
            f"trained model."
        )
    exported = build_onnx(
        model,
        opset=args.opset,
        dynamic_batch=args.dynamic_batch,
        dynamic_size=args.dynamic_size,
        input_shapes=overrides or None,
    )
    proto = exported.proto
    if random_note:
        entry = proto.metadata_props.add()
        entry.key, entry.value = "weights", random_note
    written = exported.write(args.output)  # the weights go from the caffemodel's memory to the file
    summary = _summary(proto, model, written, random_note)
    if args.format == "json":
        console.out(json.dumps(summary, indent=2) + "\n")
    else:
        console.out(_render(summary))
    return 0


def _has_learnable_blobs(model) -> bool:
    from proto_rewrite.caffe.blob_shapes import expected_blobs

    return any(expected_blobs(layer) for layer in model.net.layer)


def _fill_random_weights(model, overrides, seed: int) -> str:
    """Random weights for ``model``, checked against the limits before any is drawn, then drawn
    and written one layer at a time to a temporary caffemodel that is mapped and deleted: the
    export streams them from that mapping as it streams a real caffemodel's, so no more than one
    layer's weights are ever in this process's own memory."""
    import tempfile

    from proto_rewrite.caffe.caffemodel import read_caffemodel, write_caffemodel
    from proto_rewrite.caffe.init_weights import lazy_random_weights, random_weights
    from proto_rewrite.caffe.shapes import infer_shapes
    from proto_rewrite.caffe.weights import attach_weights

    shapes = infer_shapes(model.net, overrides or None, path=model.prototxt_path, lines=model.layer_lines)
    where = {"path": model.prototxt_path, "lines": model.layer_lines}
    if os.name != "posix":  # a mapped file cannot be deleted there: drawn in memory, within the limits
        model.weights = random_weights(model.net, shapes, seed, **where)
        return RANDOM_WEIGHTS_NOTE.format(seed=seed)
    weights = lazy_random_weights(model.net, shapes, seed, **where)
    with tempfile.TemporaryDirectory(prefix="proto-rewrite-random-") as folder:
        scratch = os.path.join(folder, "random.caffemodel")
        write_caffemodel(scratch, model.net, weights)
        stored = read_caffemodel(scratch)  # mapped: the mapping outlives the file
    model.weights, _ = attach_weights(
        model.net, stored, prototxt_path=model.prototxt_path, lines=model.layer_lines, bottom_shapes=shapes.bottoms
    )
    return RANDOM_WEIGHTS_NOTE.format(seed=seed)


def _dims(value_info) -> list:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]


def _summary(proto, model, written, random_note) -> dict:
    parameters = 0
    for tensor in proto.graph.initializer:
        count = 1
        for dim in tensor.dims:
            count *= dim
        parameters += count
    return {
        "model": model.prototxt_path,
        "weights": random_note or model.weights_path,
        "output": os.fspath(written[0]),
        "external_data": os.fspath(written[1]) if len(written) > 1 else None,
        "opset": proto.opset_import[0].version,
        "ir_version": proto.ir_version,
        "nodes": len(proto.graph.node),
        "initializers": len(proto.graph.initializer),
        "parameters": parameters,
        "inputs": [{"name": v.name, "shape": _dims(v)} for v in proto.graph.input],
        "outputs": [{"name": v.name, "shape": _dims(v)} for v in proto.graph.output],
    }


def _render(summary: dict) -> str:
    def shape(dims):
        return "x".join("?" if d is None else str(d) for d in dims)

    lines = [
        f"wrote {summary['output']}"
        + (f" (+ {summary['external_data']})" if summary["external_data"] else "")
        + f": ONNX opset {summary['opset']}, {summary['nodes']} nodes, {summary['parameters']:,} parameters",
        f"weights: {summary['weights']}",
    ]
    lines += [f"input  {v['name']}: {shape(v['shape'])}" for v in summary["inputs"]]
    lines += [f"output {v['name']}: {shape(v['shape'])}" for v in summary["outputs"]]
    return "\n".join(lines) + "\n"
