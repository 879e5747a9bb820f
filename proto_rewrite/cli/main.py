"""Entry point: parse the command line, run a subcommand, map errors to exit codes.

Exit codes: 0 ok; 1 a check failed or differences were found; 2 bad usage or bad input;
3 internal error (a bug: reported with a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import traceback
from pathlib import Path

from proto_rewrite import __version__, limits, output_guard
from proto_rewrite.cli import convert_cmd, diff_cmd, export_cmd, init_weights_cmd, inspect_cmd, validate_cmd
from proto_rewrite.cli.console import EXIT_TERMINATED, Console, Terminated, terminate_as_interrupt
from proto_rewrite.cli.options import FLAG_SPELLING
from proto_rewrite.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, ProtoRewriteError, UsageError
from proto_rewrite.input_guard import watch_inputs

COMMANDS = (convert_cmd, validate_cmd, diff_cmd, export_cmd, inspect_cmd, init_weights_cmd)

EPILOG = "exit codes: 0 ok, 1 check failed or differences found, 2 bad usage or bad input, 3 internal error"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proto-rewrite",
        description="Rewrite the fully-connected layers of Caffe and ONNX networks into convolutions.",
        epilog=EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None, stdout=None, stderr=None) -> int:
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: --help / --version exit 0, bad usage exits 2
        return int(exit_.code or 0)
    console = Console(stdout, stderr, getattr(args, "verbose", 0), getattr(args, "quiet", False))
    guard = None
    try:
        with terminate_as_interrupt(), output_guard.guarding(command_inputs(args)) as guard:
            limits.check_environment()
            refuse_shared_outputs(args)
            with watch_inputs(), limits.scoped():  # SIGBUS on a truncated input: a typed error; limits end here
                return args.run(args, console)
    except ProtoRewriteError as err:
        err = err.with_flags(FLAG_SPELLING)  # the library names options by their Python names
        console.error(f"error: {err}")
        if getattr(args, "format", "text") == "json":
            console.out(json.dumps(err.to_dict(), indent=2) + "\n")
        return err.exit_code
    except Terminated:
        console.error("terminated (SIGTERM)")
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130
    except Exception:  # noqa: BLE001 - anything else is a bug in proto-rewrite
        console.error(traceback.format_exc())
        console.error("internal error: this is a bug in proto-rewrite; please report it with the traceback above")
        return EXIT_INTERNAL
    finally:
        if guard is not None and not console.quiet:
            for note in guard.notes:
                console.error(f"note: {note}")


# Arguments naming files a command reads, and what they are.
_INPUT_ARGS = (
    ("model", "the model"),
    ("model_a", "model A"),
    ("model_b", "model B"),
    ("weights", "the weights"),
    ("weights_a", "A's weights"),
    ("weights_b", "B's weights"),
    ("plan", "the plan"),
    ("inputs", "the inputs file"),
    ("caffe_schema", "the Caffe schema"),
)


def command_inputs(args) -> list[tuple[str, str]]:
    """The files the command line names as inputs, and the caffemodel read by default beside a
    prototxt, for the output guard (files found later, such as external data, join when read)."""
    from proto_rewrite.cli.options import is_onnx_path

    found = []
    for name, what in _INPUT_ARGS:
        values = getattr(args, name, None)
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str) and value:
                found.append((value, what))
    reads_weights = any(hasattr(args, name) for name in ("weights", "weights_a"))
    if reads_weights and not getattr(args, "no_weights", False):
        for value, what in list(found):
            if what in ("the model", "model A", "model B") and not is_onnx_path(value):
                with contextlib.suppress(ValueError):
                    found.append((str(Path(value).with_suffix(".caffemodel")), f"the weights beside {what}"))
    return found


_OUTPUT_ARGS = ("output", "output_weights", "save_plan", "save_inputs", "save_outputs")


def refuse_shared_outputs(args) -> None:
    """Two output options naming one file (however spelt): refused before anything runs."""
    seen: dict = {}
    for name in _OUTPUT_ARGS:
        value = getattr(args, name, None)
        if not isinstance(value, str) or not value:
            continue
        keys = {("path", os.path.abspath(value))}
        identity = output_guard.identity_of(value)
        if identity is not None:
            keys.add(("file", identity))
        option = "--" + name.replace("_", "-")
        for key in keys:
            if key in seen:
                raise UsageError(
                    f"{option} '{value}' is the same file as {seen[key]}",
                    path=value,
                    hint="give each output its own path",
                )
        for key in keys:
            seen[key] = f"{option} '{value}'"


__all__ = ["main", "build_parser", "EXIT_BAD_INPUT"]
