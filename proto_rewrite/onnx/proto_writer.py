"""Write an ONNX model built in memory (the Caffe exporter's) with the one ONNX writer.

The exporter holds a ``ModelProto`` whose large tensors may still be numpy arrays (views of the
caffemodel). Both functions here turn it into the writer's model, a skeleton plus initializers
(:class:`~proto_rewrite.onnx.tensors.StoredTensor` for the tensors the proto holds,
:class:`~proto_rewrite.onnx.tensors.DerivedTensor` for the arrays, streamed from their own
memory), and write it with :func:`proto_rewrite.onnx.model.save_onnx`: atomically, the canonical
serialization (the bytes ``onnx.save_model`` writes), and over protobuf's 2 GB limit with every
tensor of 1 KiB or more in ``<name>.data`` beside it. A failure leaves nothing behind; the proto
and the arrays are not changed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx

from proto_rewrite.errors import OutputError
from proto_rewrite.filecopy import file_span, release
from proto_rewrite.onnx.model import OnnxModel, save_onnx
from proto_rewrite.onnx.tensors import DerivedTensor, StoredTensor
from proto_rewrite.wire import PROTOBUF_LIMIT, is_repeated


def write_onnx(model: onnx.ModelProto, path: str | os.PathLike, *, size_limit: int | None = None) -> list[Path]:
    """Write a complete ModelProto; returns the files written (the model, and its data file if
    any). ``size_limit``: the size from which tensors go to external data (default: protobuf's
    2 GB limit)."""
    return write_export(model, {}, path, size_limit=size_limit)


def write_export(
    proto: onnx.ModelProto,
    deferred: dict[str, np.ndarray],
    path: str | os.PathLike,
    *,
    size_limit: int | None = None,
) -> list[Path]:
    """Write ``proto`` whose initializers named in ``deferred`` get their bytes from those arrays."""
    tensors = [_tensor(tensor, deferred.get(tensor.name)) for tensor in proto.graph.initializer]
    by_name = {tensor.name: tensor for tensor in tensors}
    if len(by_name) != len(tensors):
        names = [tensor.name for tensor in tensors]
        twice = next(name for name in names if names.count(name) > 1)  # only on this error path
        raise OutputError(
            f"cannot write '{path}': two initializers are named '{twice}'",
            path=path,
            hint="give every initializer of the model its own name",
        )
    skeleton = _skeleton(proto)
    if skeleton.ByteSize() >= PROTOBUF_LIMIT:
        raise OutputError(
            f"cannot write '{path}': the model is over 2 GB even without its initializers",
            path=path,
            hint="the graph itself (its nodes, their attribute tensors) is too large for protobuf",
        )
    model = OnnxModel(skeleton, by_name)
    report = save_onnx(model, path, external_from=size_limit)
    return [Path(written) for written in report.paths]


def _tensor(tensor: onnx.TensorProto, array: np.ndarray | None):
    if array is None:
        return StoredTensor.from_proto(tensor)
    return DerivedTensor(
        tensor.name,
        tuple(tensor.dims),
        tensor.data_type,
        lambda: [array],  # DerivedTensor writes it little-endian, from the array's own memory
        on_written=lambda: release(file_span(array)),  # a view of a mapped input: its pages leave this process
    )


def _skeleton(proto: onnx.ModelProto) -> onnx.ModelProto:
    """``proto`` without its graph's initializers, built field by field (copying the whole
    message first would copy every tensor's bytes)."""
    graph = onnx.GraphProto()
    _copy_fields(proto.graph, graph, skip="initializer")
    skeleton = onnx.ModelProto()
    _copy_fields(proto, skeleton, skip="graph")
    skeleton.graph.CopyFrom(graph)
    return skeleton


def _copy_fields(source, target, *, skip: str) -> None:
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if is_repeated(field):
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)
