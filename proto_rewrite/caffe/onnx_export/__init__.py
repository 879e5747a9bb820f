"""Caffe -> ONNX export with Caffe's exact semantics.

``export_onnx(model)`` converts a :class:`~proto_rewrite.caffe.model.CaffeModel` (net and
weights) into an ``onnx.ModelProto``; ``write_onnx(model_proto, path)`` writes it atomically,
with external data when it is over 2 GB. ``build_onnx(model).write(path)`` does both without
copying the weights in memory (they are streamed from the caffemodel's arrays to the file).
One module per layer family in ``layers/``.
"""

from proto_rewrite.caffe.onnx_export.errors import ExportError, UnsupportedLayerError
from proto_rewrite.caffe.onnx_export.exporter import (
    DEFAULT_OPSET,
    MIN_OPSET,
    OnnxExport,
    build_onnx,
    export_onnx,
    max_opset,
    supported_layer_types,
)
from proto_rewrite.onnx.proto_writer import write_export, write_onnx

__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "ExportError",
    "OnnxExport",
    "UnsupportedLayerError",
    "build_onnx",
    "export_onnx",
    "max_opset",
    "supported_layer_types",
    "write_export",
    "write_onnx",
]
