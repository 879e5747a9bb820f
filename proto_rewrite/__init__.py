"""proto-rewrite: turn the fully-connected layers of Caffe and ONNX networks into convolutions.

An FC layer over a C x H x W feature map is an H x W convolution with C input channels; the
FC layers after it are 1 x 1 convolutions. The rewritten net computes the same numbers at the
original input size and a map of scores, one per crop position, on a larger input.
"""

__version__ = "0.1.0"

# The API (proto_rewrite.api), imported on first use so that ``import proto_rewrite`` stays cheap
# (the CLI's --help loads neither numpy nor onnx) and never fails.
API_NAMES = (
    "load",
    "plan",
    "apply",
    "save",
    "validate",
    "diff",
    "convert",
    "inspect",
    "export",
    "init_weights",
    "RewritePlan",
    "ConvertOptions",
    "ConvertResult",
)
__all__ = ["__version__", *API_NAMES]


def __getattr__(name: str):
    if name in API_NAMES:
        from proto_rewrite import api

        return getattr(api, name)
    raise AttributeError(f"module 'proto_rewrite' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
