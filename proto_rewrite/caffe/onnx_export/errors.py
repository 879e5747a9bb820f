"""Errors of the Caffe -> ONNX export (user errors: shown without a traceback)."""

from __future__ import annotations

from proto_rewrite.errors import ProtoRewriteError


class ExportError(ProtoRewriteError):
    """A net that cannot be exported as asked (a parameter ONNX cannot express, a size that
    cannot be dynamic, a missing weight...)."""


class UnsupportedLayerError(ExportError):
    """A layer type the exporter does not convert (Python layers among them: never imported)."""

    def __init__(self, message: str, *, layer_type: str, **where) -> None:
        super().__init__(message, **where)
        self.layer_type = layer_type

    def to_dict(self) -> dict:
        return {**super().to_dict(), "layer_type": self.layer_type}
