"""Models for validation as onnx.ModelProto: ONNX files as they are, Caffe nets exported."""

from __future__ import annotations

import os

from proto_rewrite.errors import InputFileError
from proto_rewrite.formats import is_onnx_path as is_onnx


def load_for_validation(
    path, weights=None, console=None, *, any_size: bool = False, allow_nonfinite: bool = False, caffe_schema=None
):
    """The model at ``path`` as an onnx.ModelProto (Caffe: exported, with its weights, read with
    ``caffe_schema``: a fork's compiled schema, None for the bundled one).
    ``any_size``: a Caffe net is exported with a free batch and, when it has no layer that fixes
    its input size (InnerProduct, PriorBox), free height and width too (for the dense check).
    Weights holding NaN or Inf are refused unless ``allow_nonfinite``."""
    from proto_rewrite.nonfinite import check_caffe_weights, check_onnx_weights

    if is_onnx(path):
        return _load_onnx(path, check=None if allow_nonfinite else check_onnx_weights)
    from proto_rewrite.caffe.model import AUTO, load_caffe
    from proto_rewrite.caffe.onnx_export import export_onnx

    model = load_caffe(path, weights or AUTO, schema=caffe_schema)
    if console is not None:
        console.diagnostics(model.diagnostics)
    if not model.weights_path:
        raise InputFileError(
            "a Caffe model without weights cannot be validated",
            path=path,
            hint="pass its .caffemodel (weights_a / weights_b), or put <stem>.caffemodel beside it",
            options=("weights_a", "weights_b"),
        )
    if not allow_nonfinite:
        check_caffe_weights(model)
    if not any_size:
        return export_onnx(model)
    fixed = any(layer.type in ("InnerProduct", "PriorBox") for layer in model.net.layer)
    return export_onnx(model, dynamic_batch=True, dynamic_size=not fixed)


def _load_onnx(path, check=None):
    """Through proto-rewrite's loader: the same structure and external-data checks as every
    other command (external data is read only from the model's folder)."""
    from proto_rewrite.onnx.model import load_onnx
    from proto_rewrite.validation.runtime import INLINE_LIMIT, keep_external

    model = load_onnx(path)
    if check is not None:
        check(model)
    if model.has_external_data and model.inline_size() > INLINE_LIMIT:
        # Too large for one message: the weights stay in their files, onnxruntime reads them there.
        proto = model.to_proto_external()
        keep_external(proto, os.path.abspath(model.base_dir or os.path.dirname(os.fspath(path)) or "."))
        return proto
    return model.to_proto()
