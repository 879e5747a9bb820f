"""One module per layer family; importing them registers their converters."""

from proto_rewrite.caffe.onnx_export.layers import (  # noqa: F401
    activation,
    conv,
    normalization,
    pooling,
    ssd,
    tensor,
)
