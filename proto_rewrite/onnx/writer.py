"""Write a model (skeleton + lazy initializers) as protobuf, streaming, one tensor at a time.

The output is the canonical serialization, the bytes ``ModelProto.SerializeToString()`` gives
for the same model: fields in number order, the graph's initializers between its ``name`` and
its ``doc_string``. An untouched inline initializer is copied as the very bytes it was read from;
a changed one is written as a header plus its data, produced block by block. Nothing holds the
whole model in memory.

With external data, the tensors chosen go to one data file beside the model (offsets aligned to
:data:`ALIGN` bytes, zero padding), their headers name it (``onnx.external_data_helper``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import onnx
from onnx import TensorProto
from onnx.external_data_helper import set_external_data

from proto_rewrite.wire import iter_fields, len_header
from proto_rewrite.onnx.reader import GRAPH_INITIALIZER, MODEL_GRAPH
from proto_rewrite.onnx.tensors import TENSOR_RAW_DATA

PROTOBUF_LIMIT = 2**31 - 1  # a protobuf message cannot be larger
ALIGN = 64
EXTERNAL_THRESHOLD = 1024  # bytes: smaller tensors stay inline (onnx's default size_threshold)


@dataclass
class _Piece:
    """One initializer record: ``head`` + (data field + data) + ``tail``, or ``whole``."""

    length: int
    whole: memoryview | None = None
    head: bytes = b""
    data_header: bytes = b""
    tensor: object = None  # the tensor whose data_chunks() go inline after data_header
    tail: bytes = b""

    def chunks(self) -> Iterator:
        if self.whole is not None:
            yield self.whole
            return
        yield self.head
        if self.data_header:
            yield self.data_header
            yield from self.tensor.data_chunks()
        yield self.tail


def plan_external(tensors, skeleton_size: int, source_external: bool) -> set[str]:
    """Names of the initializers to write as external data (empty: everything inline)."""
    if source_external:
        return {t.name for t in tensors if t.is_external}
    total = skeleton_size + sum(t.nbytes + 64 for t in tensors)
    if total < PROTOBUF_LIMIT:
        return set()
    return {t.name for t in tensors if t.nbytes >= EXTERNAL_THRESHOLD}


def write_model(skeleton: onnx.ModelProto, tensors: list, handle, *, external: set[str] = frozenset(),
                data_handle=None, data_location: str | None = None) -> None:
    """Write the model to ``handle`` (and the external tensors to ``data_handle``)."""
    pieces = []
    offset = 0
    data_plan = []
    for tensor in tensors:
        if tensor.name in external:
            offset = -(-offset // ALIGN) * ALIGN
            header = TensorProto()
            header.CopyFrom(tensor.header)
            _clear_data(header)
            header.raw_data = b""  # set_external_data wants a tensor that has raw_data
            set_external_data(header, data_location, offset, tensor.nbytes)
            header.ClearField("raw_data")
            data_plan.append((offset, tensor))
            offset += tensor.nbytes
            whole = memoryview(header.SerializeToString())
            pieces.append(_Piece(len(whole), whole=whole))
            continue
        record = tensor.record()
        if record is not None:
            pieces.append(_Piece(len(record), whole=record))
            continue
        header = TensorProto()
        header.CopyFrom(tensor.header)
        _clear_data(header)
        del header.external_data[:]
        header.ClearField("data_location")
        head, tail = _split_at(header.SerializeToString(), TENSOR_RAW_DATA)
        data_header = len_header(TENSOR_RAW_DATA, tensor.nbytes)
        length = len(head) + len(data_header) + tensor.nbytes + len(tail)
        pieces.append(_Piece(length, head=head, data_header=data_header, tensor=tensor, tail=tail))

    if not skeleton.HasField("graph"):
        skeleton.graph.SetInParent()
    model_bytes = skeleton.SerializeToString()
    graph = next(r for r in iter_fields(model_bytes) if r.number == MODEL_GRAPH)
    graph_head, graph_tail = _split_at(model_bytes[graph.value_start:graph.end], GRAPH_INITIALIZER)
    records_length = sum(len(len_header(GRAPH_INITIALIZER, p.length)) + p.length for p in pieces)
    handle.write(model_bytes[:graph.start])
    handle.write(len_header(MODEL_GRAPH, len(graph_head) + records_length + len(graph_tail)))
    handle.write(graph_head)
    for piece in pieces:
        handle.write(len_header(GRAPH_INITIALIZER, piece.length))
        for chunk in piece.chunks():
            handle.write(chunk)
    handle.write(graph_tail)
    handle.write(model_bytes[graph.end:])

    position = 0
    for offset, tensor in data_plan:
        data_handle.write(b"\0" * (offset - position))
        for chunk in tensor.data_chunks():
            data_handle.write(chunk)
        position = offset + tensor.nbytes


def _split_at(message: bytes, number: int) -> tuple[bytes, bytes]:
    """Split a canonical serialization before its first field numbered above ``number``."""
    for record in iter_fields(message):
        if record.number > number:
            return message[:record.start], message[record.start:]
    return message, b""


_DATA_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "raw_data", "double_data", "uint64_data")


def _clear_data(tensor: TensorProto) -> None:
    for name in _DATA_FIELDS:
        tensor.ClearField(name)
