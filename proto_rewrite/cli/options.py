"""Option groups shared by several subcommands, defined once."""

from __future__ import annotations

import argparse


def add_output_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("output")
    group.add_argument("--format", choices=("text", "json"), default="text",
                       help="report format on stdout (default: text)")
    add_verbosity_options(group)


def add_verbosity_options(group) -> None:
    group.add_argument("-v", "--verbose", action="count", default=0, help="say more on stderr")
    group.add_argument("-q", "--quiet", action="store_true", help="print no warnings, only errors")


def add_caffe_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Caffe models")
    group.add_argument("--weights", metavar="CAFFEMODEL",
                       help="weights of the model (default: <stem>.caffemodel beside the prototxt, if present)")
    group.add_argument("--no-weights", action="store_true", help="do not read weights even if a caffemodel is beside the prototxt")
    group.add_argument("--phase", choices=("TEST", "TRAIN"), default="TEST",
                       help="which layers of a train_val file to keep, by their include/exclude rules (default: TEST)")
    group.add_argument("--strict", action="store_true",
                       help="treat unknown layer types as errors instead of warnings")
    group.add_argument("--caffe-schema", metavar="DESCRIPTOR_SET",
                       help="read the model with another Caffe fork's schema: its caffe.proto compiled with "
                            "protoc --descriptor_set_out (default: the bundled BVLC + forks schema)")


def use_caffe_schema(args) -> None:
    """Select the Caffe schema the options ask for; call before any Caffe module is imported."""
    import os
    import sys

    from proto_rewrite.errors import UsageError

    if not args.caffe_schema:
        return
    wanted = os.path.abspath(args.caffe_schema)
    loaded = sys.modules.get("proto_rewrite.caffe.schema")
    if loaded is None:
        os.environ["PROTO_REWRITE_CAFFE_SCHEMA"] = wanted
    elif loaded.CUSTOM_SCHEMA_PATH != wanted:
        raise UsageError("a different Caffe schema is already loaded in this process",
                         hint="run proto-rewrite in a new process to change --caffe-schema")


def caffe_weights_arg(args):
    """The ``weights`` argument of ``load_caffe`` that the options ask for."""
    from proto_rewrite.caffe.model import AUTO

    if args.no_weights:
        return None
    return args.weights if args.weights else AUTO
