"""Option groups shared by several subcommands, defined once."""

from __future__ import annotations

import argparse

from proto_rewrite.formats import is_onnx_path  # noqa: F401 - the commands import it from here


def add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument(
        "--format", choices=("text", "json"), default="text", help="report format on stdout (default: text)"
    )
    add_verbosity_options(group)


def add_verbosity_options(group) -> None:
    group.add_argument("-v", "--verbose", action="count", default=0, help="say more on stderr")
    group.add_argument("-q", "--quiet", action="store_true", help="print no warnings, only errors")


def add_caffe_options(parser: argparse.ArgumentParser) -> None:
    """The Caffe options of a command that reads a prototxt and its weights."""
    group = add_caffe_net_options(parser)
    group.add_argument(
        "--weights",
        metavar="CAFFEMODEL",
        help="weights of the model (default: <stem>.caffemodel beside the prototxt, if present)",
    )
    group.add_argument(
        "--no-weights", action="store_true", help="do not read weights even if a caffemodel is beside the prototxt"
    )


CAFFE_SCHEMA_ENV = "PROTO_REWRITE_CAFFE_SCHEMA"

# Library options whose flag is not the name with dashes (the flag takes one value per use): how
# errors and warnings that name the option show it (``err.with_flags(FLAG_SPELLING)``).
FLAG_SPELLING = {"input_shapes": "--input-shape", "input_ranges": "--input-range", "inputs_file": "--inputs"}


def caffe_schema_arg(args) -> str | None:
    """The ``caffe_schema`` argument of the library's loaders that the options ask for:
    --caffe-schema, else the PROTO_REWRITE_CAFFE_SCHEMA environment variable, else None (the
    bundled schema)."""
    import os

    return getattr(args, "caffe_schema", None) or os.environ.get(CAFFE_SCHEMA_ENV) or None


def caffe_weights_arg(args):
    """The ``weights`` argument of ``load_caffe`` that the options ask for."""
    from proto_rewrite.caffe.model import AUTO

    if args.no_weights:
        return None
    return args.weights if args.weights else AUTO


def add_caffe_net_options(parser: argparse.ArgumentParser):
    """The Caffe options of a command that reads a prototxt but no weights; returns the group."""
    group = parser.add_argument_group("Caffe models")
    group.add_argument(
        "--phase",
        choices=("TEST", "TRAIN"),
        default="TEST",
        help="which layers of a train_val file to keep, by their include/exclude rules (default: TEST)",
    )
    group.add_argument("--strict", action="store_true", help="treat unknown layer types as errors instead of warnings")
    add_caffe_schema_option(group)
    return group


def add_caffe_schema_option(group) -> None:
    group.add_argument(
        "--caffe-schema",
        metavar="DESCRIPTOR_SET",
        help="read Caffe models with another Caffe fork's schema: its caffe.proto compiled with "
        f"protoc --descriptor_set_out (default: ${CAFFE_SCHEMA_ENV} if set, else the bundled BVLC + forks schema)",
    )


INPUT_SHAPE_FORM = "NAME:D0,D1,... (e.g. data:1,3,224,224)"


def add_shape_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("shapes")
    group.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME:D0,D1,...",
        help="the shape of an input (repeat for several inputs), replacing the declared one: e.g. data:1,3,224,224",
    )


def parse_input_shapes(values) -> dict[str, list[int]]:
    """``["data:1,3,224,224", ...]`` -> ``{"data": [1, 3, 224, 224]}``; UsageError on a bad form."""
    from proto_rewrite.errors import UsageError

    shapes: dict[str, list[int]] = {}
    for value in values or []:
        name, colon, dims = value.rpartition(":")
        if not colon or not name or not dims:
            raise UsageError(
                f"--input-shape '{value}': expected {INPUT_SHAPE_FORM}",
                hint="name the input, then a colon, then its dimensions separated by commas",
            )
        try:
            shape = [int(d) for d in dims.split(",")]
        except ValueError as err:
            raise UsageError(
                f"--input-shape '{value}': the dimensions must be integers; expected {INPUT_SHAPE_FORM}",
                hint="separate the dimensions with commas, without spaces or brackets",
            ) from err
        if any(d <= 0 for d in shape):
            raise UsageError(f"--input-shape '{value}': every dimension must be positive")
        if name in shapes:
            raise UsageError(f"--input-shape gives '{name}' twice")
        shapes[name] = shape
    return shapes


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("onnxruntime")
    group.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="execution provider: cpu (default) or cuda (needs onnxruntime-gpu; TF32 is off)",
    )
    group.add_argument(
        "--optimize",
        action="store_true",
        help="enable onnxruntime's graph optimisations (off by default, for both models alike)",
    )
    group.add_argument("--threads", type=int, metavar="N", help="intra-op threads of each session")


def add_validation_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("comparison")
    group.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    group.add_argument(
        "--trials", type=int, default=1, metavar="K", help="compare on K random inputs (seeds seed..seed+K-1)"
    )
    group.add_argument("--batch", type=int, metavar="N", help="batch size of the random inputs")
    group.add_argument(
        "--input-range",
        action="append",
        default=[],
        metavar="NAME:LO,HI",
        help="draw this input uniformly in [LO, HI] instead of N(0, 1), e.g. data:0,255",
    )
    group.add_argument(
        "--inputs", metavar="FILE.npz", help="feed these inputs (keyed by input name) instead of random ones"
    )
    group.add_argument("--save-inputs", metavar="FILE.npz", help="write the inputs used")
    group.add_argument("--save-outputs", metavar="FILE.npz", help="write both models' outputs (keys a/NAME, b/NAME)")
    group.add_argument(
        "--atol",
        action="append",
        default=[],
        metavar="[NAME:]VALUE",
        help="absolute tolerance, for every output or one (repeatable); default by dtype",
    )
    group.add_argument(
        "--rtol",
        action="append",
        default=[],
        metavar="[NAME:]VALUE",
        help="relative tolerance, for every output or one (repeatable); default by dtype",
    )
    group.add_argument(
        "--localize",
        action="store_true",
        help="also compare every intermediate tensor both models compute, and name the first that diverges",
    )


def validate_options_from(args, input_shapes):
    """ValidateOptions from the parsed --seed/--trials/... options."""
    from proto_rewrite.errors import UsageError
    from proto_rewrite.validation.compare_models import ValidateOptions
    from proto_rewrite.validation.inputs import parse_ranges
    from proto_rewrite.validation.runtime import RuntimeOptions
    from proto_rewrite.validation.tolerances import Tolerances

    if args.trials < 1 or (args.batch is not None and args.batch < 1):
        raise UsageError("--trials and --batch must be at least 1")
    if args.inputs and (args.trials != 1 or args.input_range):
        raise UsageError("--inputs feeds fixed inputs: it cannot be combined with --trials or --input-range")
    return ValidateOptions(
        runtime=RuntimeOptions(args.device, args.optimize, args.threads),
        seed=args.seed,
        trials=args.trials,
        batch=args.batch,
        input_shapes={name: tuple(shape) for name, shape in input_shapes.items()},
        input_ranges=parse_ranges(args.input_range),
        inputs_file=args.inputs,
        tolerances=Tolerances.parse(args.atol, args.rtol),
        localize=args.localize,
    )


def add_safety_options(parser: argparse.ArgumentParser, *, nonfinite: bool = False) -> None:
    """--max-tensor-bytes (every command that reads a model) and --allow-nonfinite (the commands
    that compute with the weights)."""
    group = parser.add_argument_group("safety")
    group.add_argument(
        "--max-tensor-bytes",
        metavar="SIZE",
        help="refuse a model whose declared shapes would need a tensor larger than SIZE bytes "
        "(e.g. 4GiB, 500M; default: $PROTO_REWRITE_MAX_TENSOR_BYTES, else 16GiB)",
    )
    group.add_argument(
        "--max-text-bytes",
        metavar="SIZE",
        help="refuse a prototxt larger than SIZE bytes before reading it "
        "(default: $PROTO_REWRITE_MAX_TEXT_BYTES, else 16MiB)",
    )
    group.add_argument(
        "--max-random-bytes",
        metavar="SIZE",
        help="refuse random weights larger than SIZE bytes in all before drawing any "
        "(default: $PROTO_REWRITE_MAX_RANDOM_BYTES, else 4GiB)",
    )
    if nonfinite:
        group.add_argument(
            "--allow-nonfinite", action="store_true", help="accept weights that hold NaN or Inf (refused by default)"
        )


def apply_safety_options(args) -> None:
    """Set the limits the safety options ask for (call first in a command's run)."""
    from proto_rewrite.limits import set_max_random_bytes, set_max_tensor_bytes, set_max_text_bytes

    set_max_tensor_bytes(getattr(args, "max_tensor_bytes", None))
    set_max_text_bytes(getattr(args, "max_text_bytes", None))
    set_max_random_bytes(getattr(args, "max_random_bytes", None))


def refuse_output_over_input(outputs, inputs) -> None:
    """Refuse (UsageError) an output path that names an existing input file, however spelt."""
    import os

    from proto_rewrite.errors import UsageError

    existing = [path for path in inputs if path and os.path.isfile(path)]
    for output in outputs:
        if output and os.path.exists(output) and any(os.path.samefile(output, path) for path in existing):
            raise UsageError(
                f"output '{output}' is also an input",
                hint="choose another output path: proto-rewrite never replaces its inputs here",
            )


def caffe_default_weights(*models) -> list:
    """The <stem>.caffemodel beside each Caffe model that has one (inputs read by default)."""
    from pathlib import Path

    found = []
    for model in models:
        if model and not is_onnx_path(model):
            candidate = Path(model).with_suffix(".caffemodel")
            if candidate.is_file():
                found.append(str(candidate))
    return found
