"""Write a built ONNX model (a ``ModelProto``, its large tensors possibly still numpy arrays)
atomically; over protobuf's 2 GB limit, with its tensors as external data.

The Caffe exporter writes with it. It is not :mod:`proto_rewrite.onnx.writer` (the converter's
writer of a loaded model's lazy tensors), which writes the canonical serialization with 64-byte
aligned external data: the exported files keep their own layout (the graph after the model's
other fields, external data 4 KiB aligned), so their bytes stay what they were.

Both writers write ``path`` (and, for a large model, ``path.data`` beside it) through temporary
files renamed into place once everything is written: a failure leaves nothing behind.

* ``write_onnx(model, path)``: a complete ModelProto. Under the limit the file is what
  ``onnx.save_model`` writes. Over it, every tensor of at least 1 KiB goes to ``<name>.data``
  (4 KiB aligned), recorded with ``onnx.external_data_helper.set_external_data`` as
  ``onnx.save_model(..., save_as_external_data=True)`` does; those tensors of ``model`` then
  point to the file (their bytes are moved out of the message, as onnx's own helper does).
* ``write_export(proto, deferred, path)``: a ModelProto whose large tensors are still numpy
  arrays (``deferred``: name -> array). The arrays are streamed to the file from their own
  memory, so writing costs no copy of the weights: the protobuf encoding is assembled by hand
  around them (a tensor's ``raw_data`` field appended to its other fields, the initializers
  appended to the graph's other fields; protobuf readers accept fields in any order).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx.external_data_helper import set_external_data

from proto_rewrite.errors import OutputError
from proto_rewrite.filecopy import file_span, release
from proto_rewrite.fileio import OutputFiles
from proto_rewrite.onnx.graph_builder import little_endian
from proto_rewrite.onnx.writer import EXTERNAL_THRESHOLD
from proto_rewrite.wire import (
    GRAPH_INITIALIZER,
    MODEL_GRAPH,
    PROTOBUF_LIMIT,
    TENSOR_RAW_DATA,
    len_header,
)

ALIGNMENT = 4096
ESTIMATE_MARGIN = 64 << 20  # bytes added to the tensor data for everything else in a model


def write_onnx(model, path: str | os.PathLike, *, size_limit: int = PROTOBUF_LIMIT) -> list[Path]:
    """Write ``model``; returns the files written (the model, and its data file if any).
    ``size_limit``: serialized size from which tensors go to external data."""
    target = Path(path)
    with OutputFiles() as outputs:
        if _estimated_size(model) < size_limit:
            data = model.SerializeToString()
            with outputs.open(target) as handle:
                handle.write(data)
            return [target]
        data_path = target.with_name(target.name + ".data")
        moved = 0
        with outputs.open(data_path) as handle:
            offset = 0
            for tensor in _tensors(model.graph):
                if not tensor.HasField("raw_data") or len(tensor.raw_data) < EXTERNAL_THRESHOLD:
                    continue
                raw = tensor.raw_data
                padding = -offset % ALIGNMENT
                handle.write(b"\0" * padding)
                offset += padding
                handle.write(raw)
                set_external_data(tensor, data_path.name, offset, len(raw))
                tensor.ClearField("raw_data")
                offset += len(raw)
                moved += 1
        if model.ByteSize() >= PROTOBUF_LIMIT:
            raise OutputError(
                f"cannot write '{target}': the model is over 2 GB even without its tensors",
                path=target,
                hint="the graph itself is too large for protobuf",
            )
        data = model.SerializeToString()
        with outputs.open(target) as handle:
            handle.write(data)
    return [target, data_path] if moved else [target]


def _estimated_size(model) -> int:
    """The serialized size, from the tensors' dims (ByteSize() costs as much as serializing)."""
    data = 0
    for tensor in _tensors(model.graph):
        count = 1
        for dim in tensor.dims:
            count *= dim
        data += count * onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    return data + ESTIMATE_MARGIN


def _tensors(graph):
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            for sub in attribute.graphs:
                yield from _tensors(sub)
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)


# ---------------------------------------------------------------------------------------------
# Streaming: the deferred arrays go from their memory to the file


def _buffer(array: np.ndarray):
    return memoryview(little_endian(array)).cast("B")


def _heads(proto):
    """The model without its graph, and the graph without its initializers (small messages)."""
    model_head = onnx.ModelProto()
    model_head.CopyFrom(proto)
    model_head.ClearField("graph")
    graph_head = onnx.GraphProto()
    graph_head.CopyFrom(proto.graph)
    graph_head.ClearField("initializer")
    return model_head, graph_head


def write_export(
    proto, deferred: dict[str, np.ndarray], path: str | os.PathLike, *, size_limit: int = PROTOBUF_LIMIT
) -> list[Path]:
    """Write ``proto`` whose initializers named in ``deferred`` get their bytes from those
    arrays; neither ``proto`` nor the arrays are changed."""
    target = Path(path)
    model_head, graph_head = _heads(proto)
    pieces = []  # per initializer: (encoded fields without raw_data, array or None)
    for tensor in proto.graph.initializer:
        pieces.append((tensor.SerializeToString(), deferred.get(tensor.name)))
    data_bytes = sum(array.nbytes for _, array in pieces if array is not None)
    head_bytes = model_head.ByteSize() + graph_head.ByteSize() + sum(len(fields) for fields, _ in pieces)
    with OutputFiles() as outputs:
        if head_bytes + data_bytes + 64 * (len(pieces) + 2) < size_limit:
            with outputs.open(target) as handle:
                _stream(handle, model_head, graph_head, pieces)
            return [target]
        data_path = target.with_name(target.name + ".data")
        external = onnx.GraphProto()
        with outputs.open(data_path) as handle:
            offset = 0
            for tensor, (_, array) in zip(proto.graph.initializer, pieces):
                copy = external.initializer.add()
                copy.CopyFrom(tensor)
                if array is None:
                    continue
                padding = -offset % ALIGNMENT
                handle.write(b"\0" * padding)
                offset += padding
                handle.write(_buffer(array))
                release(file_span(array))  # a view of a mapped input: its pages leave this process
                copy.data_location = onnx.TensorProto.EXTERNAL
                for key, value in (
                    ("location", data_path.name),
                    ("offset", str(offset)),
                    ("length", str(array.nbytes)),
                ):
                    entry = copy.external_data.add()
                    entry.key, entry.value = key, value
                offset += array.nbytes
        graph_head.initializer.extend(external.initializer)
        model_head.graph.CopyFrom(graph_head)
        with outputs.open(target) as handle:
            handle.write(model_head.SerializeToString())
    return [target, data_path]


def _stream(handle, model_head, graph_head, pieces) -> None:
    tensors = []
    for fields, array in pieces:
        length = len(fields)
        if array is not None:
            length += len(len_header(TENSOR_RAW_DATA, array.nbytes)) + array.nbytes
        tensors.append((length, fields, array))
    graph_bytes = graph_head.SerializeToString()
    graph_length = len(graph_bytes) + sum(len(len_header(GRAPH_INITIALIZER, n)) + n for n, _, _ in tensors)
    handle.write(model_head.SerializeToString())
    handle.write(len_header(MODEL_GRAPH, graph_length))
    handle.write(graph_bytes)
    for length, fields, array in tensors:
        handle.write(len_header(GRAPH_INITIALIZER, length))
        handle.write(fields)
        if array is not None:
            handle.write(len_header(TENSOR_RAW_DATA, array.nbytes))
            handle.write(_buffer(array))
            release(file_span(array))  # a view of a mapped input: its pages leave this process
