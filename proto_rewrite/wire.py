"""Just enough of the protobuf wire format to walk a message without parsing it (both formats use it).

The caffemodel reader uses this to find the weight payloads (packed floats, by far the largest
part of a file) and hand them to numpy as views, while the small remainder of each message is
parsed by protobuf as usual. Nothing here knows about Caffe.

The protobuf facts the readers and writers share are defined here once: the largest message
protobuf serializes (:data:`PROTOBUF_LIMIT`), the numbers of the ONNX fields that the streaming
reader and both ONNX writers walk or write without parsing, and :func:`is_repeated` (a field
descriptor's cardinality, in every protobuf version).
"""

from __future__ import annotations

from dataclasses import dataclass

VARINT = 0
I64 = 1
LEN = 2
SGROUP = 3
EGROUP = 4
I32 = 5

_MAX_VARINT_BYTES = 10

PROTOBUF_LIMIT = 2**31 - 1  # bytes: a protobuf message cannot be larger (serialized in one piece)

# Field numbers of onnx.proto
MODEL_GRAPH = 7  # ModelProto.graph
GRAPH_INITIALIZER = 5  # GraphProto.initializer
TENSOR_RAW_DATA = 9  # TensorProto.raw_data


def is_repeated(field) -> bool:
    """Whether a protobuf ``FieldDescriptor`` is repeated: protobuf 7 dropped ``label``, 4.x has
    no ``is_repeated``."""
    repeated = getattr(field, "is_repeated", None)
    return bool(repeated) if repeated is not None else field.label == field.LABEL_REPEATED


class WireFormatError(ValueError):
    """The bytes are not a valid protobuf message. ``offset`` is where reading failed."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at byte {offset}")
        self.offset = offset


@dataclass(frozen=True)
class Field:
    """One field record of a message: ``buf[start:end]`` is the whole record (tag included),
    ``buf[value_start:end]`` its value (for LEN fields, the payload without the length)."""

    number: int
    wire_type: int
    start: int
    value_start: int
    end: int


def read_varint(buf, pos: int, end: int) -> tuple[int, int]:
    """Decode the varint at ``buf[pos]``; return (value, position after it)."""
    result = 0
    shift = 0
    limit = min(end, pos + _MAX_VARINT_BYTES)
    start = pos
    while pos < limit:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    if pos >= end:
        raise WireFormatError("truncated varint", start)
    raise WireFormatError("varint longer than 10 bytes", start)


def iter_fields(buf, start: int = 0, end: int | None = None):
    """Yield a :class:`Field` for every record of the message in ``buf[start:end]``."""
    if end is None:
        end = len(buf)
    pos = start
    while pos < end:
        record_start = pos
        tag, pos = read_varint(buf, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise WireFormatError("field number 0", record_start)
        if wire_type == VARINT:
            _, value_end = read_varint(buf, pos, end)
            value_start = pos
        elif wire_type == I64:
            value_start, value_end = pos, pos + 8
        elif wire_type == I32:
            value_start, value_end = pos, pos + 4
        elif wire_type == LEN:
            length, value_start = read_varint(buf, pos, end)
            value_end = value_start + length
        else:
            raise WireFormatError(f"unsupported wire type {wire_type} (field {number})", record_start)
        if value_end > end:
            raise WireFormatError(f"field {number} runs past the end of its message", record_start)
        yield Field(number, wire_type, record_start, value_start, value_end)
        pos = value_end


def encode_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("negative varint")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def len_header(number: int, length: int) -> bytes:
    """Tag and length prefix of a length-delimited field."""
    return encode_varint((number << 3) | LEN) + encode_varint(length)
