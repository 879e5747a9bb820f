"""A loaded Caffe model as the graph view (inspect and diff): one node per layer of the (upgraded,
V2) net.

Attributes are the fields set in the layer's ``*_param`` messages, under their own names
(``num_output``, ``weight_filler``...), plus ``param``, ``loss_weight`` and ``propagate_down``
when set. Convolutions and poolings get their geometry normalised whatever form the file used
(``kernel_size: 3`` or ``kernel_h: 3 kernel_w: 3``): ``kernel``, ``stride``, ``pad`` (and
``dilation``, ``group`` for convolutions) as one number per spatial axis, defaults filled in.
Without a caffemodel the weights get the shapes the layer's parameters imply, and no values.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import text_format
from google.protobuf.descriptor import FieldDescriptor

from proto_rewrite.caffe.blob_shapes import expected_blobs
from proto_rewrite.caffe.layer_params import conv_params, input_rank, pool_params
from proto_rewrite.caffe.model import CaffeModel
from proto_rewrite.caffe.prototxt import format_net_text
from proto_rewrite.graph_view import Graph, Node, Tensor, Weight
from proto_rewrite.wire import is_repeated

# Meaning of each blob, by layer type (Caffe's LayerSetUp order).
BLOB_ROLES = {
    "Convolution": ("weight", "bias"),
    "Deconvolution": ("weight", "bias"),
    "InnerProduct": ("weight", "bias"),
    "Embed": ("weight", "bias"),
    "BatchNorm": ("mean", "variance", "scale_factor"),
    "Scale": ("scale", "bias"),
    "Bias": ("bias",),
    "PReLU": ("slope",),
    "Normalize": ("scale",),
}
CONV_TYPES = ("Convolution", "Deconvolution")
SKIPPED_FIELDS = frozenset(("name", "type", "bottom", "top", "blobs", "include", "exclude", "phase"))
LAYER_LEVEL = ("param", "loss_weight", "propagate_down")
CONV_GEOMETRY = frozenset(
    (
        "kernel_size",
        "kernel_h",
        "kernel_w",
        "stride",
        "stride_h",
        "stride_w",
        "pad",
        "pad_h",
        "pad_w",
        "dilation",
        "group",
    )
)
POOL_GEOMETRY = frozenset(
    ("kernel_size", "kernel_h", "kernel_w", "stride", "stride_h", "stride_w", "pad", "pad_h", "pad_w")
)


def caffe_graph(model: CaffeModel, shapes=None) -> Graph:
    """``shapes``: the net's inferred shapes (``NetShapes``), default the model's own."""
    shapes = shapes or model.shapes
    nodes = []
    inputs = []
    for layer in model.net.layer:
        bottoms = list(shapes.bottoms.get(layer.name, [])) if shapes else []
        tops = list(shapes.tops.get(layer.name, [])) if shapes else []
        nodes.append(
            Node(
                layer.name,
                layer.type,
                attributes(layer, bottoms),
                list(layer.bottom),
                list(layer.top),
                _weights(model, layer, bottoms),
                bottoms,
                tops,
                model.layer_lines.get(layer.name),
            )
        )
        if layer.type == "Input":  # the shapes the Input layer declares
            inputs += [Tensor(top, tops[k] if k < len(tops) else None) for k, top in enumerate(layer.top)]
    consumed = {bottom for layer in model.net.layer for bottom in layer.bottom}
    outputs = [
        Tensor(top, _shape(shapes, top))
        for layer in model.net.layer
        if layer.type != "Input"
        for top in layer.top
        if top not in consumed
    ]
    net = model.net
    return Graph(
        "caffe",
        model.prototxt_path or "",
        model.weights_path,
        nodes,
        inputs,
        _unique(outputs),
        has_weights=model.weights_path is not None or bool(model.weights),
        diagnostics=list(model.diagnostics),
        normalized_text=lambda: format_net_text(net),
        source_format=model.source_format,
        upgrades=list(model.upgrades),
        excluded_layers=list(model.excluded_layers),
    )


def _shape(shapes, blob):
    return None if shapes is None else shapes.blobs.get(blob)


def _unique(tensors: list[Tensor]) -> list[Tensor]:
    seen, unique = set(), []
    for tensor in tensors:
        if tensor.name not in seen:
            seen.add(tensor.name)
            unique.append(tensor)
    return unique


# ---------------------------------------------------------------------------------------------
# Attributes


def attributes(layer, bottom_shapes=()) -> dict[str, object]:
    found: dict[str, object] = {}
    for field, value in layer.ListFields():
        if field.name in SKIPPED_FIELDS:
            continue
        if field.name in LAYER_LEVEL:
            found[field.name] = _value(field, value)
        elif field.message_type is not None and field.name.endswith("_param"):
            geometry = _geometry_fields(layer.type, field.name)
            for inner, inner_value in value.ListFields():
                if inner.name in geometry:
                    continue
                key = inner.name if inner.name not in found else f"{field.name}.{inner.name}"
                found[key] = _value(inner, inner_value)
    if layer.type in CONV_TYPES:
        found.update(_conv_geometry(layer.convolution_param, bottom_shapes))
    elif layer.type == "Pooling":
        found.update(_pool_geometry(layer.pooling_param))
    return found


def _geometry_fields(layer_type: str, param_name: str) -> frozenset:
    if layer_type in CONV_TYPES and param_name == "convolution_param":
        return CONV_GEOMETRY
    if layer_type == "Pooling" and param_name == "pooling_param":
        return POOL_GEOMETRY
    return frozenset()


def _value(field, value):
    if is_repeated(field):
        return [_scalar(field, item) for item in value]
    return _scalar(field, value)


def _scalar(field, value):
    if field.message_type is not None:
        return text_format.MessageToString(value, as_one_line=True)
    if field.enum_type is not None:
        return field.enum_type.values_by_number[value].name if value in field.enum_type.values_by_number else value
    if field.cpp_type == FieldDescriptor.CPPTYPE_FLOAT:
        return float(str(np.float32(value)))  # the shortest form that reads back as this float32
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def _conv_geometry(param, bottom_shapes) -> dict[str, object]:
    conv = conv_params(param, input_rank(bottom_shapes))
    return {
        "kernel": list(conv.kernel),
        "stride": list(conv.stride),
        "pad": list(conv.pad),
        "dilation": list(conv.dilation),
        "group": conv.group,
    }


def _pool_geometry(param) -> dict[str, object]:
    pool = pool_params(param)
    geometry = {"stride": list(pool.stride), "pad": list(pool.pad)}
    if pool.kernel is not None:
        geometry = {"kernel": list(pool.kernel), **geometry}
    return geometry


# ---------------------------------------------------------------------------------------------
# Weights


def _role(layer_type: str, index: int) -> str:
    roles = BLOB_ROLES.get(layer_type, ())
    return roles[index] if index < len(roles) else f"blob {index}"


def _weights(model: CaffeModel, layer, bottom_shapes) -> list[Weight]:
    arrays = model.weights.get(layer.name)
    if arrays is not None:
        return [
            Weight(_role(layer.type, i), f"{layer.name}[{i}]", tuple(a.shape), str(a.dtype), _loader(a), own_name=False)
            for i, a in enumerate(arrays)
        ]
    expected = expected_blobs(layer, bottom_shapes) or []
    return [
        Weight(
            _role(layer.type, i), f"{layer.name}[{i}]", None if shape is None else tuple(shape), None, own_name=False
        )
        for i, shape in enumerate(expected)
    ]


def _loader(array: np.ndarray):
    return lambda: array
