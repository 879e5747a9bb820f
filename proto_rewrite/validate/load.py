"""Models for validation as onnx.ModelProto: ONNX files as they are, Caffe nets exported."""

from __future__ import annotations

from pathlib import Path

from proto_rewrite.errors import InputFileError


def is_onnx(path) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def load_for_validation(path, weights=None, console=None, *, any_size: bool = False):
    """The model at ``path`` as an onnx.ModelProto (Caffe: exported, with its weights).
    ``any_size``: a Caffe net is exported with a free batch and, when it has no layer that fixes
    its input size (InnerProduct, PriorBox), free height and width too (for the dense check)."""
    if is_onnx(path):
        return _load_onnx(path)
    from proto_rewrite.caffe.model import AUTO, load_caffe
    from proto_rewrite.caffe.onnx_export import export_onnx

    model = load_caffe(path, weights or AUTO)
    if console is not None:
        console.diagnostics(model.diagnostics)
    if not model.weights_path:
        raise InputFileError("a Caffe model without weights cannot be validated", path=path,
                             hint="pass its .caffemodel (--weights-a / --weights-b), or put <stem>.caffemodel beside it")
    if not any_size:
        return export_onnx(model)
    fixed = any(layer.type in ("InnerProduct", "PriorBox") for layer in model.net.layer)
    return export_onnx(model, dynamic_batch=True, dynamic_size=not fixed)


def _load_onnx(path):
    import onnx
    from google.protobuf.message import DecodeError

    try:
        return onnx.load(str(path))
    except FileNotFoundError as err:
        raise InputFileError("model not found", path=path, hint="check the path") from err
    except (DecodeError, ValueError, OSError) as err:
        raise InputFileError(f"not a readable ONNX model: {err}", path=path,
                             hint="the file is truncated, corrupt or not ONNX") from err
