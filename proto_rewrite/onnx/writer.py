"""Write a model (skeleton + lazy initializers) as protobuf: streaming, or in memory.

Both give the canonical serialization, the bytes ``ModelProto.SerializeToString()`` gives for the
same model: fields in number order, the graph's initializers where protobuf puts them.

Streaming (:func:`write_model`): the skeleton is serialized with a placeholder initializer that
marks where the initializers go, then each initializer record follows. An untouched inline
initializer stored canonically is copied from the input file as it is, field header included,
so a run of untouched initializers is one copy (:class:`~proto_rewrite.filecopy.RangeWriter`:
file to file, never read). A changed one is written as a header plus its data, produced block by
block; a block that is a view of an input (a reshaped kernel) is copied too, a computed one (a
transposed kernel) is written, and the source's pages are dropped once it is done. Nothing holds
the whole model in memory.

In memory (:func:`serialize_model`, :func:`serialize_data`): the whole ModelProto, every
initializer filled, serialized by protobuf; the data file assembled in memory. The reference,
and the fallback when the input was read into memory.

External data: the tensors chosen go to one data file beside the model. When each of them is an
unchanged range of one source data file (a reshaped kernel counts: the same bytes) and together
they fill at least half of it, that file is copied as it is and the offsets kept; otherwise they
are laid out anew, offsets aligned to :data:`ALIGN` bytes with zero padding. Their headers name
the file (``onnx.external_data_helper``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import onnx
from onnx import TensorProto
from onnx.external_data_helper import set_external_data

from proto_rewrite.filecopy import CopyStats, RangeWriter, Span, file_span
from proto_rewrite.onnx.tensors import DerivedTensor, StoredTensor, split_before
from proto_rewrite.wire import GRAPH_INITIALIZER, MODEL_GRAPH, PROTOBUF_LIMIT, TENSOR_RAW_DATA, iter_fields, len_header

ALIGN = 64
EXTERNAL_THRESHOLD = 1024  # bytes: smaller tensors stay inline (onnx's default size_threshold)


def plan_external(tensors, skeleton_size: int, source_external: bool, *, limit: int | None = None) -> set[str]:
    """Names of the initializers to write as external data (empty: everything inline): the
    source's external ones, else, when the model would reach ``limit`` bytes (default: protobuf's 2 GB),
    every tensor of at least :data:`EXTERNAL_THRESHOLD` bytes."""
    if source_external:
        return {t.name for t in tensors if t.is_external}
    total = skeleton_size + sum(t.nbytes + 64 for t in tensors)
    if total < (PROTOBUF_LIMIT if limit is None else limit):
        return set()
    return {t.name for t in tensors if t.nbytes >= EXTERNAL_THRESHOLD}


@dataclass
class ExternalLayout:
    """Where each external tensor goes in the output data file."""

    offsets: dict[str, int] = field(default_factory=dict)
    copy_of: Span | None = None  # the whole source data file, copied as it is (offsets kept)


def external_layout(tensors, external: set[str]) -> ExternalLayout:
    """The source data file as it is, when every external tensor is an unchanged range of it;
    else a new layout. Both write paths use this, so they agree byte for byte."""
    chosen = [t for t in tensors if t.name in external]
    if not chosen:
        return ExternalLayout()
    kept = _unchanged_ranges(chosen)
    if kept is not None and 2 * sum(t.nbytes for t in chosen) >= len(kept[0]):  # not mostly dead bytes
        source, offsets = kept
        return ExternalLayout(offsets, Span(source, 0, len(source)))
    offsets, offset = {}, 0
    for tensor in chosen:
        offset = -(-offset // ALIGN) * ALIGN
        offsets[tensor.name] = offset
        offset += tensor.nbytes
    return ExternalLayout(offsets)


def _unchanged_ranges(chosen) -> tuple[object, dict[str, int]] | None:
    """(source file, offsets) when each tensor's data is a range of the same source data file."""
    source, offsets = None, {}
    for tensor in sorted(chosen, key=lambda t: not isinstance(t, StoredTensor)):  # cheap checks first
        if not tensor.is_external:
            return None
        if tensor.nbytes == 0:
            offsets[tensor.name] = 0
            continue
        span = _data_range(tensor)
        if span is None or (source is not None and span.source is not source):
            return None
        source = span.source
        offsets[tensor.name] = span.offset
    return None if source is None else (source, offsets)


def _data_range(tensor) -> Span | None:
    """The range of an input file a tensor's data is, when it is those bytes unchanged (stored,
    or reshaped); stops at the first block that is not (at most one block is computed)."""
    merged = None
    for chunk in tensor.data_chunks():
        span = file_span(chunk)
        if span is None:
            return None
        if merged is None:
            merged = span
        elif span.source is merged.source and span.offset == merged.end:
            merged = Span(span.source, merged.offset, merged.length + span.length)
        else:
            return None
    return merged


# ---------------------------------------------------------------------------------------------
# Streaming


@dataclass
class _Piece:
    """One initializer record: its value's ``length`` and bytes (``chunks``), or the whole field
    as it is in an input file (``framed``)."""

    length: int
    chunks: Callable[[], Iterable]
    framed: Span | None = None
    done: Callable[[], None] | None = None  # called once written: drops a read source's pages

    def write(self, writer: RangeWriter) -> None:
        if self.framed is not None:
            writer.copy(self.framed)
        else:
            writer.write(len_header(GRAPH_INITIALIZER, self.length))
            for chunk in self.chunks():
                writer.write(chunk)
        if self.done is not None:
            self.done()


def write_model(
    skeleton: onnx.ModelProto,
    tensors: list,
    handle,
    *,
    external: set[str] = frozenset(),
    data_handle=None,
    data_location: str | None = None,
    layout: ExternalLayout | None = None,
) -> CopyStats:
    """Write the model to ``handle`` (and the external tensors to ``data_handle``), streaming."""
    layout = layout if layout is not None else external_layout(tensors, external)
    pieces = [_piece(tensor, external, layout, data_location) for tensor in tensors]
    records = sum(len(len_header(GRAPH_INITIALIZER, p.length)) + p.length for p in pieces)
    prefix, suffix = _frame(skeleton, records)
    writer = RangeWriter(handle)
    writer.write(prefix)
    for piece in pieces:
        piece.write(writer)
    writer.write(suffix)
    stats = writer.finish()
    if data_handle is not None:
        data_writer = RangeWriter(data_handle)
        for chunk in _data_chunks(tensors, external, layout, release=True):
            data_writer.write(chunk)
        stats.add(data_writer.finish())
    return stats


def _frame(skeleton: onnx.ModelProto, records_length: int) -> tuple[bytes, bytes]:
    """The serialized skeleton before and after the initializer records, with the graph's
    length counting ``records_length`` bytes of them."""
    skeleton.graph.initializer.add()  # an empty marker: the skeleton has no other initializer
    try:
        model_bytes = skeleton.SerializeToString()
    finally:
        del skeleton.graph.initializer[-1]
    graph = next(r for r in iter_fields(model_bytes) if r.number == MODEL_GRAPH)
    place = next(r for r in iter_fields(model_bytes, graph.value_start, graph.end) if r.number == GRAPH_INITIALIZER)
    graph_length = graph.end - graph.value_start - (place.end - place.start) + records_length
    prefix = (
        model_bytes[: graph.start]
        + len_header(MODEL_GRAPH, graph_length)
        + model_bytes[graph.value_start : place.start]
    )
    return prefix, model_bytes[place.end :]


def _piece(tensor, external: set[str], layout: ExternalLayout, data_location: str | None) -> _Piece:
    if tensor.name in external:
        header = _external_header(tensor, data_location, layout.offsets[tensor.name])
        return _Piece(len(header), lambda: [header])
    record = tensor.record()
    if record is not None:
        if tensor.is_canonical():
            return _Piece(record.nbytes, lambda: [record], framed=_framed(record))
        length, parts = tensor.canonical_record()
        return _Piece(length, lambda: parts)
    head, tail = split_before(_inline_header(tensor).SerializeToString(), TENSOR_RAW_DATA)
    head += len_header(TENSOR_RAW_DATA, tensor.nbytes)
    return _Piece(
        len(head) + tensor.nbytes + len(tail),
        lambda: itertools.chain([head], tensor.data_chunks(), [tail]),
        done=tensor.release if isinstance(tensor, DerivedTensor) else None,
    )


def _framed(record: memoryview) -> Span | None:
    """The initializer field around ``record`` in its input file, when the file holds exactly the
    field header this writer would write (so a run of untouched initializers is one range)."""
    span = file_span(record)
    if span is None:
        return None
    header = len_header(GRAPH_INITIALIZER, span.length)
    start = span.offset - len(header)
    if start < 0 or memoryview(span.source)[start : span.offset] != header:
        return None
    return Span(span.source, start, len(header) + span.length)


# ---------------------------------------------------------------------------------------------
# In memory


def serialize_model(
    skeleton: onnx.ModelProto,
    tensors: list,
    *,
    external: set[str] = frozenset(),
    data_location: str | None = None,
    layout: ExternalLayout | None = None,
) -> bytes:
    """The whole model as one ModelProto serialized by protobuf (external tensors as headers)."""
    layout = layout if layout is not None else external_layout(tensors, external)
    proto = onnx.ModelProto()
    proto.CopyFrom(skeleton)
    initializers = proto.graph.initializer
    for tensor in tensors:
        if tensor.name in external:
            initializers.add().ParseFromString(_external_header(tensor, data_location, layout.offsets[tensor.name]))
        elif tensor.record() is not None:
            initializers.add().ParseFromString(bytes(tensor.record()))
        else:
            full = initializers.add()
            full.CopyFrom(_inline_header(tensor))
            full.raw_data = b"".join(tensor.data_chunks())
    return proto.SerializeToString()


def serialize_data(tensors: list, external: set[str], layout: ExternalLayout) -> bytes:
    """The external data file, in memory."""
    return b"".join(_data_chunks(tensors, external, layout))


# ---------------------------------------------------------------------------------------------
# Shared


def _data_chunks(tensors, external: set[str], layout: ExternalLayout, release: bool = False) -> Iterator:
    if layout.copy_of is not None:
        span = layout.copy_of
        yield memoryview(span.source)[span.offset : span.end]
        return
    position = 0
    for tensor in tensors:
        if tensor.name not in external:
            continue
        offset = layout.offsets[tensor.name]
        yield b"\0" * (offset - position)
        yield from tensor.data_chunks()
        position = offset + tensor.nbytes
        if release and isinstance(tensor, DerivedTensor):
            tensor.release()


def _inline_header(tensor) -> TensorProto:
    """A changed tensor's header, to be followed by its data as ``raw_data``."""
    header = TensorProto()
    header.CopyFrom(tensor.header)
    _clear_data(header)
    del header.external_data[:]
    header.ClearField("data_location")
    return header


def _external_header(tensor, location: str, offset: int) -> bytes:
    header = TensorProto()
    header.CopyFrom(tensor.header)
    _clear_data(header)
    header.raw_data = b""  # set_external_data wants a tensor that has raw_data
    set_external_data(header, location, offset, tensor.nbytes)
    header.ClearField("raw_data")
    return header.SerializeToString()


_DATA_FIELDS = ("float_data", "int32_data", "string_data", "int64_data", "raw_data", "double_data", "uint64_data")


def _clear_data(tensor: TensorProto) -> None:
    for name in _DATA_FIELDS:
        tensor.ClearField(name)
