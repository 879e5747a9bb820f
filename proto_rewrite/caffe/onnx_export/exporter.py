"""Caffe net -> ONNX model with Caffe's semantics, layer by layer.

The walk: check every layer can be converted (Python layers are refused by name, never
imported), infer Caffe's blob shapes for the export's input shapes, find which dimensions vary
with a dynamic batch or size (by inferring the shapes again at another size and comparing),
plan the value names (``naming``), then run each layer's converter. Weights become
initializers built in place in the model (one copy of the bytes); the result passes
``onnx.checker.check_model(full_check=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from proto_rewrite import __version__
from proto_rewrite.caffe.onnx_export import layers  # noqa: F401 - registers the converters
from proto_rewrite.caffe.onnx_export.context import CONVERTERS, LayerContext
from proto_rewrite.caffe.onnx_export.errors import ExportError, UnsupportedLayerError
from proto_rewrite.caffe.onnx_export.naming import name_values
from proto_rewrite.caffe.shapes import infer_shapes
from proto_rewrite.errors import NetStructureError, UsageError
from proto_rewrite.onnx.graph_builder import Graph, little_endian_bytes
from proto_rewrite.onnx.proto_writer import write_export

MIN_OPSET = 11
DEFAULT_OPSET = 17
#: Caffe layer types that are graph inputs (their tops), given a shape.
SOURCE_TYPES = frozenset(
    {"Input", "Data", "ImageData", "WindowData", "HDF5Data", "AnnotatedData", "MemoryData", "VideoData"}
)
#: Types dropped from an inference graph: they compute nothing there.
SKIPPED_TYPES = frozenset({"Silence"})
#: Training-only types: refused with a hint to export the deploy net.
TRAINING_TYPES = frozenset(
    {
        "Accuracy",
        "ContrastiveLoss",
        "EuclideanLoss",
        "HingeLoss",
        "InfogainLoss",
        "MultinomialLogisticLoss",
        "SigmoidCrossEntropyLoss",
        "SoftmaxWithLoss",
        "SmoothL1Loss",
        "MultiBoxLoss",
        "DetectionEvaluate",
    }
)


def supported_layer_types() -> frozenset[str]:
    return frozenset(CONVERTERS) | SOURCE_TYPES | SKIPPED_TYPES


def max_opset() -> int:
    return onnx.defs.onnx_opset_version()


@dataclass
class OnnxExport:
    """An exported model whose large tensors are still numpy arrays (views of the caffemodel):
    ``proto``'s initializers named in ``deferred`` have their type and dims but no data yet."""

    proto: onnx.ModelProto
    deferred: dict[str, np.ndarray]

    def materialize(self) -> onnx.ModelProto:
        """The complete ModelProto (each deferred tensor's bytes copied in once)."""
        tensors = {t.name: t for t in self.proto.graph.initializer if t.name in self.deferred}
        for name, array in self.deferred.items():
            tensors[name].raw_data = little_endian_bytes(array)
        self.deferred = {}
        return self.proto

    def write(self, path, *, size_limit: int | None = None) -> list:
        """Write the model, streaming the deferred arrays to the file (no copy of the weights);
        external data (``path.data``) from ``size_limit`` bytes. Returns the files written."""
        return write_export(self.proto, self.deferred, path, size_limit=size_limit)


def export_onnx(
    model,
    *,
    opset: int | None = None,
    dynamic_batch: bool = False,
    dynamic_size: bool = False,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> onnx.ModelProto:
    """The ONNX model of a :class:`~proto_rewrite.caffe.model.CaffeModel` with its weights.

    ``opset``: the ONNX opset (default ``DEFAULT_OPSET``; from ``MIN_OPSET`` to what the installed
    onnx knows). ``dynamic_batch`` / ``dynamic_size``: leave the batch / the spatial size of the
    inputs free in the model. ``input_shapes``: input name -> dims, replacing the declared shapes.
    Every layer with learnable blobs needs its weights in ``model.weights``.
    """
    return build_onnx(
        model, opset=opset, dynamic_batch=dynamic_batch, dynamic_size=dynamic_size, input_shapes=input_shapes
    ).materialize()


def build_onnx(
    model,
    *,
    opset: int | None = None,
    dynamic_batch: bool = False,
    dynamic_size: bool = False,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
) -> OnnxExport:
    """As :func:`export_onnx`, with the large tensors left as arrays: for writing a file without
    copying the weights in memory (``OnnxExport.write``)."""
    opset = _check_opset(opset)
    net, path, lines = model.net, model.prototxt_path, model.layer_lines
    _check_layer_types(net, path, lines)
    shapes = infer_shapes(net, input_shapes, path=path, lines=lines)
    sources = [index for index, layer in enumerate(net.layer) if not layer.bottom]
    _check_shapes_known(net, shapes, sources, path, lines)
    masks = _dynamic_masks(net, shapes, sources, dynamic_batch, dynamic_size, path, lines)

    names = name_values(net, set(sources), _is_identity)
    proto = onnx.ModelProto()
    graph = Graph(opset, reserved=names.all_values(), proto=proto.graph)
    batch = _batch_size(net, shapes, sources)
    inputs = _graph_inputs(net, shapes, sources, masks, names)
    shared: dict[str, str] = {}
    unknown_dims: dict[str, dict[int, str]] = {}
    for index, layer in enumerate(net.layer):
        if index in sources or index in names.aliased or layer.type in SKIPPED_TYPES:
            continue
        for value in names.outputs[index]:
            graph.claim(value)
        ctx = LayerContext(
            layer=layer,
            graph=graph,
            inputs=names.inputs[index],
            outputs=names.outputs[index],
            in_shapes=[tuple(s) for s in shapes.bottoms[layer.name]],
            out_shapes=[tuple(s) for s in shapes.tops[layer.name]],
            in_dynamic=masks.bottoms[layer.name],
            weights=list(model.weights.get(layer.name, [])),
            shared=shared,
            path=path,
            line=lines.get(layer.name),
        )
        CONVERTERS[layer.type](ctx)
        for top, dims in ctx.unknown_dims.items():
            unknown_dims[ctx.outputs[top]] = dims
    outputs = _graph_outputs(net, shapes, masks, names, batch, unknown_dims)
    proto.graph.name = net.name or "caffe_net"
    proto.graph.input.extend(inputs)
    proto.graph.output.extend(outputs)
    proto.opset_import.append(helper.make_opsetid("", opset))
    proto.ir_version = helper.find_min_ir_version_for([proto.opset_import[0]])
    proto.producer_name = "proto-rewrite"
    proto.producer_version = __version__
    if path is not None:
        proto.doc_string = f"Exported from the Caffe net {os.path.basename(os.fspath(path))} by proto-rewrite."
    return OnnxExport(proto, graph.deferred)


# ---------------------------------------------------------------------------------------------
# Checks before the walk


def _check_opset(opset: int | None) -> int:
    if opset is None:
        return min(DEFAULT_OPSET, max_opset())
    if not MIN_OPSET <= opset <= max_opset():
        raise UsageError(
            f"opset {opset} is not supported",
            hint=f"use an opset from {MIN_OPSET} to {max_opset()} (the newest the installed onnx "
            f"{onnx.__version__} knows); the default is {DEFAULT_OPSET}",
        )
    return opset


def _check_layer_types(net, path, lines) -> None:
    """Every layer can be converted; otherwise an error naming the first that cannot (and the others)."""
    refused = []
    for layer in net.layer:
        if layer.type in CONVERTERS or layer.type in SKIPPED_TYPES:
            continue
        if not layer.bottom and layer.type in SOURCE_TYPES:
            continue
        refused.append(layer)
    if not refused:
        return
    first = refused[0]
    others = [f"'{layer.name}' ({layer.type})" for layer in refused[1:]]
    also = ""
    if others:
        also = f"; {len(others)} more cannot either: {', '.join(others[:8])}{' ...' if len(others) > 8 else ''}"
    if first.type == "Python":
        module = first.python_param.module if first.HasField("python_param") else ""
        what = f" (module '{module}')" if module else ""
        message = (
            f"Python layer{what}: its code is not part of the net, and proto-rewrite never imports it, "
            f"so it cannot be exported"
        )
        hint = "replace the layer by standard Caffe layers that compute the same thing, or cut the net before it"
    elif first.type in TRAINING_TYPES:
        message = f"'{first.type}' is a training layer"
        hint = "export the deploy prototxt (without loss and accuracy layers)"
    elif not first.bottom:
        message = f"'{first.type}' layers cannot be graph inputs"
        hint = "declare the net's inputs with an Input layer (or input/input_shape)"
    else:
        message = f"layer type '{first.type}' cannot be exported to ONNX"
        hint = f"the exporter converts: {', '.join(sorted(CONVERTERS))}"
    raise UnsupportedLayerError(
        message + also, layer_type=first.type, path=path, line=lines.get(first.name), layer=first.name, hint=hint
    )


def _check_shapes_known(net, shapes, sources, path, lines) -> None:
    for index in sources:
        layer = net.layer[index]
        for top, shape in zip(layer.top, shapes.tops[layer.name]):
            if shape is None:
                raise ExportError(
                    f"the shape of input '{top}' is not known",
                    path=path,
                    line=lines.get(layer.name),
                    layer=layer.name,
                    hint="give its shape (N, C, H, W) in input_shapes",
                    options=("input_shapes",),
                )
    for layer in net.layer:
        tops = shapes.tops.get(layer.name, [])
        if any(shape is None for shape in tops):
            notes = "; ".join(str(d) for d in shapes.diagnostics)
            raise ExportError(
                f"the output shapes of this {layer.type} layer are not known",
                path=path,
                line=lines.get(layer.name),
                layer=layer.name,
                hint=notes or None,
                options=tuple(dict.fromkeys(o for d in shapes.diagnostics for o in d.options)),
            )


def _is_identity(layer) -> bool:
    if layer.type == "Dropout":
        param = layer.dropout_param
        scale_train = getattr(param, "scale_train", True)
        return scale_train or param.dropout_ratio == 0
    return False


# ---------------------------------------------------------------------------------------------
# Dynamic dimensions: the shapes inferred again at another batch / size; what changed is dynamic


class _Masks:
    def __init__(self) -> None:
        self.bottoms: dict[str, list[tuple]] = {}
        self.tops: dict[str, list[tuple]] = {}
        self.batch_tops: dict[str, list[tuple]] = {}  # dims that follow the batch exactly


def _dynamic_masks(net, shapes, sources, dynamic_batch, dynamic_size, path, lines) -> _Masks:
    masks = _Masks()
    for layer in net.layer:
        masks.bottoms[layer.name] = [(False,) * len(s) for s in shapes.bottoms[layer.name]]
        masks.tops[layer.name] = [(False,) * len(s) for s in shapes.tops[layer.name]]
        masks.batch_tops[layer.name] = [(False,) * len(s) for s in shapes.tops[layer.name]]
    declared = {top: shapes.blobs[top] for index in sources for top in net.layer[index].top}
    probes = []
    if dynamic_batch:
        probes.append(("batch", {name: (shape[0] + 1, *shape[1:]) for name, shape in declared.items() if shape}))
    if dynamic_size:
        probe = {
            name: (*shape[:2], *(2 * d + 1 for d in shape[2:])) for name, shape in declared.items() if len(shape) >= 3
        }
        if not probe:
            raise UsageError(
                "dynamic_size: the net has no input with spatial axes (N, C, H, ...)", options=("dynamic_size",)
            )
        probes.append(("size", probe))
    for kind, probe in probes:
        try:
            other = infer_shapes(net, probe, path=path, lines=lines)
        except NetStructureError as err:
            raise ExportError(
                f"the {kind} cannot be dynamic: with another input {kind} the net is not valid: {err.message}",
                path=err.location.path,
                line=err.location.line,
                layer=err.location.layer,
                hint=f"export without dynamic_{kind}, at the {kind} you need (input_shapes)",
                options=(f"dynamic_{kind}", "input_shapes"),
            ) from err
        for layer in net.layer:
            for table, ours, theirs in (
                (masks.bottoms, shapes.bottoms, other.bottoms),
                (masks.tops, shapes.tops, other.tops),
            ):
                table[layer.name] = [
                    _changed(mask, s1, s2)
                    for mask, s1, s2 in zip(table[layer.name], ours[layer.name], theirs[layer.name])
                ]
            if kind == "batch":
                first = next(iter(probe.values()))[0]
                base = first - 1
                masks.batch_tops[layer.name] = [
                    tuple(a == base and b == first for a, b in zip(s1, s2))
                    for s1, s2 in zip(shapes.tops[layer.name], other.tops[layer.name])
                ]
    return masks


def _changed(mask: tuple, shape: tuple, other: tuple | None) -> tuple:
    if other is None:
        return (True,) * len(shape)
    return tuple(known or a != b for known, a, b in zip(mask, shape, other))


# ---------------------------------------------------------------------------------------------
# Graph inputs and outputs


def _batch_size(net, shapes, sources) -> int | None:
    for index in sources:
        for top in net.layer[index].top:
            shape = shapes.blobs.get(top)
            if shape:
                return shape[0]
    return None


def _graph_inputs(net, shapes, sources, masks: _Masks, names) -> list:
    inputs = []
    sized = [
        top
        for index in sources
        for top, mask in zip(net.layer[index].top, masks.tops[net.layer[index].name])
        if any(mask[2:])
    ]
    for index in sources:
        layer = net.layer[index]
        for top, value, shape, mask in zip(
            layer.top, names.outputs[index], shapes.tops[layer.name], masks.tops[layer.name]
        ):
            dims = []
            for axis, (dim, dynamic) in enumerate(zip(shape, mask)):
                if not dynamic:
                    dims.append(dim)
                elif axis == 0:
                    dims.append("N")
                elif len(shape) == 4 and axis >= 2:
                    letter = "HW"[axis - 2]
                    dims.append(letter if len(sized) == 1 else f"{top}_{letter}")
                else:
                    dims.append(f"{top}_d{axis}")
            inputs.append(helper.make_tensor_value_info(value, TensorProto.FLOAT, dims))
    return inputs


def _graph_outputs(net, shapes, masks: _Masks, names, batch, unknown_dims) -> list:
    outputs = []
    net_layers = list(net.layer)
    for blob, value, index in names.graph_outputs:
        layer = net_layers[index]
        top = list(layer.top).index(blob)
        shape = shapes.tops[layer.name][top]
        mask = masks.tops[layer.name][top]
        follows_batch = masks.batch_tops[layer.name][top]
        unknown = unknown_dims.get(value, {})
        dims = []
        for axis, dim in enumerate(shape):
            if axis in unknown:
                dims.append(unknown[axis])
            elif follows_batch[axis]:
                dims.append("N")
            elif mask[axis]:
                dims.append(None)
            else:
                dims.append(dim)
        outputs.append(helper.make_tensor_value_info(value, TensorProto.FLOAT, dims))
    if not outputs:
        raise ExportError("the net has no outputs: every blob is consumed by a later layer")
    return outputs


__all__ = [
    "DEFAULT_OPSET",
    "MIN_OPSET",
    "OnnxExport",
    "build_onnx",
    "export_onnx",
    "max_opset",
    "supported_layer_types",
]
