"""The ``proto-rewrite`` command line: a thin layer over the library."""

from proto_rewrite.cli.main import main

__all__ = ["main"]
