"""Which learnable blobs a Caffe layer has, and their shapes, from its parameters.

``expected_blobs(layer, bottom_shapes)`` returns one expected shape per blob, where a shape is a
tuple of ints with ``None`` for a dimension that depends on an unknown input shape, or ``None``
for the whole shape when even its rank is unknown. It returns ``None`` for layer types whose
blobs this module does not know (the caller then accepts what the weights file holds).

The rules follow each layer's LayerSetUp in BVLC Caffe (conv_layer, deconv_layer,
inner_product_layer, batch_norm_layer, scale_layer, bias_layer, prelu_layer, embed_layer,
parameter_layer), and SSD's normalize_layer.
"""

from __future__ import annotations

from collections.abc import Sequence

from proto_rewrite.caffe.layer_params import conv_params, input_rank
from proto_rewrite.shape_text import tuple_text

Shape = tuple  # tuple[int | None, ...]

# BVLC layer types that never have learnable blobs.
_NO_BLOBS = frozenset(
    """AbsVal Accuracy ArgMax BatchReindex BNLL Clip Concat ContrastiveLoss Crop Data DummyData
    Dropout Eltwise ELU EuclideanLoss Exp Filter Flatten HDF5Data HDF5Output HingeLoss Im2col
    ImageData InfogainLoss Input Log LRN MemoryData MultinomialLogisticLoss MVN Pooling Power
    ReLU Reduction Reshape Sigmoid SigmoidCrossEntropyLoss Silence Slice Softmax SoftmaxWithLoss
    Split SPP Swish TanH Threshold Tile WindowData Permute PriorBox DetectionOutput
    DetectionEvaluate MultiBoxLoss AnnotatedData""".split()
)


def _channels(bottom_shapes, axis: int = 1):
    if not bottom_shapes or bottom_shapes[0] is None:
        return None
    shape = bottom_shapes[0]
    axis = axis + len(shape) if axis < 0 else axis
    return shape[axis] if 0 <= axis < len(shape) else None


def _div(value, by: int):
    return None if value is None else value // by


def _kernel(conv_param, bottom_shapes) -> tuple[int, ...]:
    return conv_params(conv_param, input_rank(bottom_shapes)).kernel


def _convolution(layer, bottom_shapes):
    param = layer.convolution_param
    channels = _channels(bottom_shapes, param.axis)
    weight = (param.num_output, _div(channels, param.group), *_kernel(param, bottom_shapes))
    return [weight, (param.num_output,)] if param.bias_term else [weight]


def _deconvolution(layer, bottom_shapes):
    param = layer.convolution_param
    channels = _channels(bottom_shapes, param.axis)
    weight = (channels, param.num_output // max(param.group, 1), *_kernel(param, bottom_shapes))
    return [weight, (param.num_output,)] if param.bias_term else [weight]


def _inner_product(layer, bottom_shapes):
    param = layer.inner_product_param
    inputs = None
    if bottom_shapes and bottom_shapes[0] is not None and all(d is not None for d in bottom_shapes[0]):
        shape = bottom_shapes[0]
        axis = param.axis + len(shape) if param.axis < 0 else param.axis
        inputs = 1
        for dim in shape[axis:]:
            inputs *= dim
    weight = (inputs, param.num_output) if param.transpose else (param.num_output, inputs)
    return [weight, (param.num_output,)] if param.bias_term else [weight]


def _batch_norm(layer, bottom_shapes):
    channels = _channels(bottom_shapes)
    return [(channels,), (channels,), (1,)]


def _scale_shape(param, bottom_shapes):
    """Shape of a Scale/Bias layer's learned blob: the bottom's dims [axis, axis+num_axes)."""
    if param.num_axes == -1:
        if not bottom_shapes or bottom_shapes[0] is None:
            return None
        shape = bottom_shapes[0]
        axis = param.axis + len(shape) if param.axis < 0 else param.axis
        return tuple(shape[axis:])
    if not bottom_shapes or bottom_shapes[0] is None:
        return (None,) * param.num_axes
    shape = bottom_shapes[0]
    axis = param.axis + len(shape) if param.axis < 0 else param.axis
    return tuple(shape[axis : axis + param.num_axes])


def _scale(layer, bottom_shapes):
    param = layer.scale_param
    if len(layer.bottom) > 1:  # the scale is the second input; a bias has that input's shape
        if not param.bias_term:
            return []
        known = bottom_shapes is not None and len(bottom_shapes) > 1 and bottom_shapes[1] is not None
        return [tuple(bottom_shapes[1]) if known else None]
    blobs = [_scale_shape(param, bottom_shapes)]
    if param.bias_term:
        blobs.append(_scale_shape(param, bottom_shapes))
    return blobs


def _bias(layer, bottom_shapes):
    return [] if len(layer.bottom) > 1 else [_scale_shape(layer.bias_param, bottom_shapes)]


def _prelu(layer, bottom_shapes):
    return [()] if layer.prelu_param.channel_shared else [(_channels(bottom_shapes),)]


def _embed(layer, bottom_shapes):
    param = layer.embed_param
    weight = (param.input_dim, param.num_output)
    return [weight, (param.num_output,)] if param.bias_term else [weight]


def _parameter(layer, bottom_shapes):
    return [tuple(layer.parameter_param.shape.dim)]


def _normalize(layer, bottom_shapes):
    # SSD's Normalize (normalize_layer.cpp): one scale, shared (a 0-D blob, like PReLU's) or per channel.
    return [()] if layer.norm_param.channel_shared else [(_channels(bottom_shapes),)]


_RULES = {
    "Convolution": _convolution,
    "Deconvolution": _deconvolution,
    "InnerProduct": _inner_product,
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "Bias": _bias,
    "PReLU": _prelu,
    "Embed": _embed,
    "Parameter": _parameter,
    "Normalize": _normalize,
}


def expected_blobs(layer, bottom_shapes: Sequence[Shape | None] | None = None) -> list[Shape | None] | None:
    """Expected blob shapes of a V2 layer, or None when the layer type's blobs are not known."""
    rule = _RULES.get(layer.type)
    if rule is not None:
        return rule(layer, bottom_shapes)
    if layer.type in _NO_BLOBS:
        return []
    return None


def shape_matches(expected: Shape | None, actual: Sequence[int]) -> bool:
    if expected is None:
        return True
    return len(expected) == len(actual) and all(e is None or e == a for e, a in zip(expected, actual))


def resolve_legacy_shape(expected: Shape | None, legacy: Sequence[int]) -> tuple[int, ...] | None:
    """The shape a legacy 4-D blob (num, channels, height, width) stands for, given the shape the
    layer expects; None when they are incompatible. As in Caffe, a blob of rank r <= 4 is stored
    with 4 - r leading ones."""
    if expected is None:
        return tuple(legacy)
    rank = len(expected)
    if rank > 4 or any(dim != 1 for dim in legacy[: 4 - rank]):
        return None
    candidate = tuple(legacy[4 - rank :])
    return candidate if shape_matches(expected, candidate) else None


def format_shape(shape: Shape | None) -> str:
    return tuple_text(shape, unknown="(any)")
