"""Which format a model file is in, from its name: ``.onnx`` (any case) is ONNX, anything else a
Caffe prototxt. The one rule every command, the API and the output guard use (standard library
only, so the CLI can import it before parsing its arguments)."""

from __future__ import annotations

import os

ONNX, CAFFE = "onnx", "caffe"


def is_onnx_path(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(".onnx")


def model_format(path: str | os.PathLike) -> str:
    """``"onnx"`` or ``"caffe"``."""
    return ONNX if is_onnx_path(path) else CAFFE
