"""Entry point: parse the command line, run a subcommand, map errors to exit codes.

Exit codes: 0 ok; 1 a check failed or differences were found; 2 bad usage or bad input;
3 internal error (a bug: reported with a traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import traceback

from proto_rewrite import __version__
from proto_rewrite.cli import convert_cmd, diff_cmd, export_cmd, init_weights_cmd, inspect_cmd, validate_cmd
from proto_rewrite.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, ProtoRewriteError

COMMANDS = (convert_cmd, validate_cmd, diff_cmd, export_cmd, inspect_cmd, init_weights_cmd)

EPILOG = "exit codes: 0 ok, 1 check failed or differences found, 2 bad usage or bad input, 3 internal error"


class Console:
    """Where the CLI writes: results on stdout, diagnostics and errors on stderr."""

    def __init__(self, stdout, stderr, verbose: int = 0, quiet: bool = False) -> None:
        self.stdout, self.stderr = stdout, stderr
        self.verbose, self.quiet = verbose, quiet

    def out(self, text: str) -> None:
        self.stdout.write(text)

    def info(self, text: str, level: int = 1) -> None:
        if self.verbose >= level and not self.quiet:
            self.stderr.write(text.rstrip("\n") + "\n")

    def diagnostics(self, items) -> None:
        if self.quiet:
            return
        for item in items:
            if item.level == "warning" or self.verbose:
                self.stderr.write(f"{item}\n")

    def error(self, text: str) -> None:
        self.stderr.write(text.rstrip("\n") + "\n")


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
    try:
        return args.run(args, console)
    except ProtoRewriteError as err:
        console.error(f"error: {err}")
        if getattr(args, "format", "text") == "json":
            console.out(json.dumps(err.to_dict(), indent=2) + "\n")
        return err.exit_code
    except KeyboardInterrupt:
        console.error("interrupted")
        return 130
    except Exception:  # noqa: BLE001 - anything else is a bug in proto-rewrite
        console.error(traceback.format_exc())
        console.error("internal error: this is a bug in proto-rewrite; please report it with the traceback above")
        return EXIT_INTERNAL


__all__ = ["main", "build_parser", "EXIT_BAD_INPUT"]
