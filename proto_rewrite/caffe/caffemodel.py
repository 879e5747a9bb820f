"""Read and write ``.caffemodel`` files (binary NetParameter with weight blobs).

Reading never copies the weights: the file is memory-mapped (:func:`proto_rewrite.filecopy.open_input`),
the wire format is walked to find each blob's packed ``data`` payload, and numpy views are made
over those bytes (read-only). Only the small rest of each layer message (names, parameters, blob
shapes) is parsed by protobuf. V2 (``layer``), V1 (``layers``) and V0 (``layers { layer { blobs } }``)
files are read; blob shapes may be ``shape`` or the legacy num/channels/height/width. A file that
cannot be mapped (a pipe) is read into memory instead.

Writing gives the bytes protobuf's deterministic serialization of the whole NetParameter gives,
two ways. Streaming (the default): the small messages are serialized, each blob's data goes
out as it is; a blob that is a view of a mapped caffemodel, reshaped or not, is copied file to
file (:class:`~proto_rewrite.filecopy.RangeWriter`) and never read. In memory (when the weights
were read into memory, or when asked): the NetParameter is built with its blobs filled and
serialized by protobuf.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from google.protobuf.message import DecodeError

from proto_rewrite.caffe.schema import CaffeSchema, bundled_schema, resolve_schema
from proto_rewrite.errors import CaffemodelError, OutputError
from proto_rewrite.filecopy import CopyStats, RangeWriter, WriteReport, in_memory_reason, open_input
from proto_rewrite.fileio import OutputFiles, atomic_output
from proto_rewrite.wire import I32, I64, LEN, PROTOBUF_LIMIT, WireFormatError, iter_fields, len_header


def _number(message: str, name: str) -> int:
    """A field number of Caffe's schema (a fork keeps them: :mod:`~proto_rewrite.caffe.schema`
    refuses one that renumbers a field of Caffe's)."""
    return bundled_schema().message_class(message).DESCRIPTOR.fields_by_name[name].number


NET_LAYER = _number("NetParameter", "layer")
NET_LAYERS_V1 = _number("NetParameter", "layers")
LAYER_BLOBS = _number("LayerParameter", "blobs")
V1_BLOBS = _number("V1LayerParameter", "blobs")
V1_NESTED_V0 = _number("V1LayerParameter", "layer")
V0_BLOBS = _number("V0LayerParameter", "blobs")
BLOB_DATA = _number("BlobProto", "data")
BLOB_DIFF = _number("BlobProto", "diff")
BLOB_DOUBLE_DATA = _number("BlobProto", "double_data")
BLOB_DOUBLE_DIFF = _number("BlobProto", "double_diff")
BLOB_SHAPE = _number("BlobProto", "shape")

MAX_RANK = 32  # numpy's limit on dimensions (Caffe's is 32 too)
_STORABLE_DTYPES = {np.dtype("float32"): (BLOB_DATA, "<f4"), np.dtype("float64"): (BLOB_DOUBLE_DATA, "<f8")}


@dataclass
class StoredBlob:
    """One weight blob as stored. ``legacy_shape`` is True when the file gave
    num/channels/height/width instead of ``shape`` (old files pad every blob to 4-D)."""

    values: np.ndarray
    legacy_shape: bool = False


@dataclass
class StoredLayer:
    """A layer of the caffemodel: its name and type as stored, and its blobs."""

    name: str
    type: str
    blobs: list[StoredBlob] = field(default_factory=list)


@dataclass
class Caffemodel:
    path: str
    net: object  # NetParameter without blobs, as stored (not upgraded)
    layers: list[StoredLayer]
    dropped_diffs: int = 0  # blobs that also carried gradients (diff), which are not kept


def read_caffemodel(path: str | os.PathLike, schema: CaffeSchema | None = None) -> Caffemodel:
    """Read a caffemodel with ``schema`` (default: the bundled one); raise :class:`CaffemodelError`
    naming the file when it is not one."""
    schema = resolve_schema(schema)
    buffer = _map_file(path)
    try:
        return _parse(path, buffer, schema)
    except WireFormatError as err:
        raise CaffemodelError(
            f"not a valid caffemodel: {err}",
            path=path,
            hint=_hint_for_bad_bytes(buffer),
            options=("weights",),
        ) from err


def _map_file(path) -> memoryview:
    buffer = open_input(path, "weights file", missing_hint="check the caffemodel's path")
    if not buffer.nbytes:
        raise CaffemodelError(
            "the caffemodel is empty (0 bytes)",
            path=path,
            hint="the file was probably not written completely; copy it again",
        )
    return buffer


def _hint_for_bad_bytes(buffer: memoryview) -> str:
    head = bytes(buffer[:256])
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "this looks like a text file (a prototxt?); pass the .prototxt as the model and the binary .caffemodel with weights"
    return "the file is truncated or corrupt; copy or download it again"


def _parse(path, buffer: memoryview, schema: CaffeSchema) -> Caffemodel:
    skeleton = bytearray()
    layer_blobs_v2: list[list[StoredBlob]] = []
    layer_blobs_v1: list[list[StoredBlob]] = []
    dropped = [0]
    for record in iter_fields(buffer):
        if record.number == NET_LAYER and record.wire_type == LEN:
            layer_bytes, blobs = _split_layer(buffer, record, {LAYER_BLOBS: None}, schema, dropped)
            layer_blobs_v2.append(blobs)
        elif record.number == NET_LAYERS_V1 and record.wire_type == LEN:
            layer_bytes, blobs = _split_layer(buffer, record, {V1_BLOBS: None, V1_NESTED_V0: V0_BLOBS}, schema, dropped)
            layer_blobs_v1.append(blobs)
        else:
            skeleton += buffer[record.start : record.end]
            continue
        skeleton += len_header(record.number, len(layer_bytes))
        skeleton += layer_bytes
    try:
        net = schema.NetParameter.FromString(bytes(skeleton))
    except DecodeError as err:
        raise CaffemodelError(
            f"not a valid caffemodel: {err}", path=path, hint=_hint_for_bad_bytes(buffer), options=("weights",)
        ) from err
    if not net.layer and not net.layers:
        raise CaffemodelError(
            "the file holds no layers: it is not a caffemodel",
            path=path,
            hint=_hint_for_bad_bytes(buffer),
            options=("weights",),
        )
    layers = [StoredLayer(layer.name, layer.type, blobs) for layer, blobs in zip(net.layer, layer_blobs_v2)]
    for layer, blobs in zip(net.layers, layer_blobs_v1):
        name = layer.name or layer.layer.name
        kind = schema.V1LayerParameter.LayerType.Name(layer.type) if layer.HasField("type") else layer.layer.type
        layers.append(StoredLayer(name, kind, blobs))
    _check_blob_counts(path, layers)
    return Caffemodel(os.fspath(path), net, layers, dropped[0])


def _split_layer(
    buffer, record, blob_fields: Mapping[int, int | None], schema: CaffeSchema, dropped
) -> tuple[bytes, list[StoredBlob]]:
    """Separate a layer message into its bytes without blobs and the blobs themselves.

    ``blob_fields`` maps a field number either to None (the field is a BlobProto) or to the blob
    field number inside a nested message (V1's nested V0 layer)."""
    kept = bytearray()
    blobs: list[StoredBlob] = []
    for part in iter_fields(buffer, record.value_start, record.end):
        nested_blob_field = blob_fields.get(part.number, 0)
        if part.wire_type == LEN and nested_blob_field is None:
            blobs.append(_read_blob(buffer, part, schema, dropped))
        elif part.wire_type == LEN and nested_blob_field:
            inner, inner_blobs = _split_layer(buffer, part, {nested_blob_field: None}, schema, dropped)
            blobs.extend(inner_blobs)
            kept += len_header(part.number, len(inner)) + inner
        else:
            kept += buffer[part.start : part.end]
    return bytes(kept), blobs


def _read_blob(buffer, record, schema: CaffeSchema, dropped) -> StoredBlob:
    rest = bytearray()
    pieces: dict[int, list[np.ndarray]] = {BLOB_DATA: [], BLOB_DOUBLE_DATA: []}
    had_diff = False
    for part in _blob_fields(buffer, record.value_start, record.end, pieces):
        if part.number in pieces:
            dtype = "<f4" if part.number == BLOB_DATA else "<f8"
            pieces[part.number].append(_packed_values(buffer, part, dtype))
        elif part.number in (BLOB_DIFF, BLOB_DOUBLE_DIFF):
            had_diff = True
        else:
            rest += buffer[part.start : part.end]
    dropped[0] += had_diff
    try:
        meta = schema.BlobProto.FromString(bytes(rest))
    except DecodeError as err:
        raise WireFormatError(f"bad blob header ({err})", record.start) from err
    floats, doubles = pieces[BLOB_DATA], pieces[BLOB_DOUBLE_DATA]
    if floats and doubles:
        raise WireFormatError("blob holds both float and double data", record.start)
    chunks = doubles or floats
    values = chunks[0] if len(chunks) == 1 else (np.concatenate(chunks) if chunks else np.zeros(0, "<f4"))
    legacy = any(meta.HasField(name) for name in ("num", "channels", "height", "width"))
    shape = (meta.num, meta.channels, meta.height, meta.width) if legacy else tuple(meta.shape.dim)
    if any(d < 0 for d in shape) or len(shape) > MAX_RANK:
        raise WireFormatError(f"blob shape {list(shape)[: MAX_RANK + 1]} is not a shape", record.start)
    expected = math.prod(shape)  # Python integers: a hostile shape cannot overflow to a small count
    if values.size != expected:
        raise WireFormatError(
            f"blob has {values.size} values but its shape {list(shape)} needs {expected}", record.start
        )
    return StoredBlob(values.reshape(shape), legacy)


# Unpacked values (one tag per value: legal protobuf, written by some tools): the tag byte of
# ``data`` (field 5, fixed32) or ``double_data`` (field 8, fixed64), then the value.
_UNPACKED = {(BLOB_DATA << 3) | I32: (BLOB_DATA, "<f4"), (BLOB_DOUBLE_DATA << 3) | I64: (BLOB_DOUBLE_DATA, "<f8")}
_RUN_CHUNK = 1 << 20  # records looked at per numpy step


def _blob_fields(buffer, start: int, end: int, pieces: dict[int, list[np.ndarray]]):
    """The fields of a blob message, except runs of unpacked values: those are decoded in bulk
    (numpy over the bytes: tag byte + value, repeated) and appended to ``pieces`` directly."""
    pos = start
    while pos < end:
        run = _UNPACKED.get(buffer[pos])
        if run is not None:
            number, dtype = run
            width = 1 + np.dtype(dtype).itemsize
            count = _unpacked_run(buffer, pos, end, buffer[pos], width)
            if count > 1:
                records = np.frombuffer(buffer, np.uint8, count=count * width, offset=pos).reshape(count, width)
                pieces[number].append(np.ascontiguousarray(records[:, 1:]).view(dtype).reshape(-1))
                pos += count * width
                continue
        part = next(iter_fields(buffer, pos, end))
        yield part
        pos = part.end


def _unpacked_run(buffer, pos: int, end: int, tag: int, width: int) -> int:
    """How many consecutive ``width``-byte records starting at ``pos`` begin with ``tag``."""
    count = 0
    while True:
        available = min((end - pos) // width - count, _RUN_CHUNK)
        if available <= 0:
            return count
        tags = np.frombuffer(buffer, np.uint8, count=available * width, offset=pos + count * width)[::width]
        different = np.flatnonzero(tags != tag)
        if different.size:
            return count + int(different[0])
        count += available


def _packed_values(buffer, part, dtype: str) -> np.ndarray:
    width = np.dtype(dtype).itemsize
    if part.wire_type == LEN:
        length = part.end - part.value_start
        if length % width:
            raise WireFormatError(
                f"packed data of {length} bytes is not a whole number of {width}-byte values", part.start
            )
        return np.frombuffer(buffer, dtype=dtype, count=length // width, offset=part.value_start)
    if part.wire_type == (I32 if width == 4 else I64):
        return np.frombuffer(buffer, dtype=dtype, count=1, offset=part.value_start)
    raise WireFormatError(f"blob values have wire type {part.wire_type}", part.start)


def _check_blob_counts(path, layers: list[StoredLayer]) -> None:
    seen: dict[str, int] = {}
    for index, layer in enumerate(layers):
        if layer.name in seen and layer.blobs and layers[seen[layer.name]].blobs:
            raise CaffemodelError(
                f"two layers with weights share the name '{layer.name}' (layers {seen[layer.name]} and {index})",
                path=path,
                layer=layer.name,
                hint="weights are matched to the prototxt by layer name; rename one of them",
            )
        seen.setdefault(layer.name, index)


# ---------------------------------------------------------------------------------------------
# Writing


def write_caffemodel(
    path: str | os.PathLike,
    net,
    weights: Mapping[str, Sequence[np.ndarray]],
    outputs: OutputFiles | None = None,
    *,
    streaming: bool | None = None,
) -> WriteReport:
    """Write ``net`` (V2 NetParameter; any blobs in it are ignored) with ``weights`` (layer name
    -> arrays) as a binary caffemodel. Arrays must be float32 or float64. The file appears
    atomically: on its own, or when ``outputs`` is committed.

    ``streaming``: None (default) streams unless some weights were read into memory (their
    input could not be mapped): then the in-memory path runs. True / False force one path.
    Both give the same bytes.
    """
    layer_names = {layer.name for layer in net.layer}
    unknown = sorted(set(weights) - layer_names)
    if unknown:
        raise CaffemodelError(
            f"weights given for layers the net does not have: {', '.join(unknown)}",
            path=path,
            hint="weights are matched to layers by name",
        )
    if net.layers:
        raise CaffemodelError("cannot write V1 'layers'; upgrade the net first", path=path)
    lazy = getattr(weights, "lazy", False)  # drawn on access (random weights): one layer in memory at a time
    encoded = (
        _Encoded(path, weights)
        if lazy
        else {name: [_encode_blob(path, name, array) for array in arrays] for name, arrays in weights.items()}
    )
    reason = None
    if streaming is None:
        reason = None if lazy else in_memory_reason(array for arrays in weights.values() for array in arrays)
        streaming = reason is None
    elif not streaming:
        reason = "the in-memory path was asked for"
    report = WriteReport([os.fspath(path)], streaming, reason)
    try:
        with outputs.open(path) if outputs is not None else atomic_output(path) as out:
            report.stats = (_write_streaming if streaming else _write_in_memory)(out, net, encoded)
    except OSError as err:
        raise OutputError(
            f"cannot write '{path}': {err.strerror or err}",
            path=path,
            hint="check the folder's permissions and free space",
        ) from err
    return report


class _Encoded:
    """The encoded blobs of a lazy weights mapping, made when the writer asks for a layer's."""

    def __init__(self, path, weights) -> None:
        self._path, self._weights = path, weights

    def get(self, name: str, default):
        if name not in self._weights:
            return default
        return [_encode_blob(self._path, name, array) for array in self._weights[name]]


def _write_streaming(out, net, encoded: dict[str, list[list]]) -> CopyStats:
    header = type(net)()
    header.CopyFrom(net)
    del header.layer[:]
    before, after = _split_at(header.SerializeToString(deterministic=True), NET_LAYER)
    writer = RangeWriter(out)
    writer.write(before)
    for layer in net.layer:
        _write_layer(writer, layer, encoded.get(layer.name, []))
    writer.write(after)
    return writer.finish()


def _write_layer(out: RangeWriter, layer, blobs: list[list]) -> None:
    bare = type(layer)()
    bare.CopyFrom(layer)
    del bare.blobs[:]
    before, after = _split_at(bare.SerializeToString(deterministic=True), LAYER_BLOBS)
    blob_total = sum(_blob_record_length(parts) for parts in blobs)
    out.write(len_header(NET_LAYER, len(before) + blob_total + len(after)))
    out.write(before)
    for parts in blobs:
        payload = sum(len(part) for part in parts)
        out.write(len_header(LAYER_BLOBS, payload))
        for part in parts:
            out.write(part)
    out.write(after)


def _write_in_memory(out, net, encoded: dict[str, list[list]]) -> CopyStats:
    """The whole NetParameter, blobs filled, serialized by protobuf (per layer past 2 GB, the
    most one protobuf message can hold: the bytes are the same)."""
    full = type(net)()
    full.CopyFrom(net)
    for layer in full.layer:
        del layer.blobs[:]
        for parts in encoded.get(layer.name, []):
            layer.blobs.add().MergeFromString(b"".join(parts))
    if full.ByteSize() <= PROTOBUF_LIMIT:
        data = full.SerializeToString(deterministic=True)
        out.write(data)
        return CopyStats(written=len(data))
    layers = list(full.layer)
    del full.layer[:]
    before, after = _split_at(full.SerializeToString(deterministic=True), NET_LAYER)
    out.write(before)
    written = len(before) + len(after)
    for layer in layers:
        data = layer.SerializeToString(deterministic=True)
        out.write(len_header(NET_LAYER, len(data)))
        out.write(data)
        written += len(len_header(NET_LAYER, len(data))) + len(data)
    out.write(after)
    return CopyStats(written=written)


def _blob_record_length(parts) -> int:
    payload = sum(len(part) for part in parts)
    return len(len_header(LAYER_BLOBS, payload)) + payload


def _encode_blob(path, layer_name: str, array: np.ndarray) -> list:
    """The pieces of one BlobProto, fields in number order: data (5) or double_data (8), shape (7)."""
    array = np.asarray(array)
    if array.dtype not in _STORABLE_DTYPES:
        raise CaffemodelError(
            f"a blob of layer '{layer_name}' has dtype {array.dtype}; Caffe stores float32 or float64",
            path=path,
            layer=layer_name,
            hint="convert the array explicitly before saving",
        )
    number, wire_dtype = _STORABLE_DTYPES[array.dtype]
    values = np.ascontiguousarray(array, dtype=wire_dtype).reshape(-1)
    shape = bundled_schema().BlobShape(dim=list(array.shape)).SerializeToString(deterministic=True)
    records = [(BLOB_SHAPE, [len_header(BLOB_SHAPE, len(shape)) + shape])]
    if values.size:
        data = memoryview(values).cast("B")
        records.append((number, [len_header(number, data.nbytes), data]))
    return [part for _, parts in sorted(records, key=lambda record: record[0]) for part in parts]


def _split_at(serialized: bytes, number: int) -> tuple[bytes, bytes]:
    """Split a deterministic serialization (fields in number order) before the first field whose
    number is greater than ``number``."""
    for record in iter_fields(serialized):
        if record.number > number:
            return serialized[: record.start], serialized[record.start :]
    return serialized, b""
