"""Initializers, lazily: the bytes stay where they are until something needs them.

A :class:`StoredTensor` is an initializer as it is in the model file (or in its external data
file): its small header (name, dims, data type, external data fields) is parsed, its data is not.
Written back untouched, it is the same bytes (:meth:`StoredTensor.record`), which the writer
copies file to file. Reading it (:meth:`~StoredTensor.array`) gives a read-only numpy view of the
memory-mapped file (or of the file read into memory, when it could not be mapped).

A :class:`DerivedTensor` is an initializer the rewrite changes: a source tensor, new dims and a
function that produces the new data block by block, when the model is written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from onnx import TensorProto, numpy_helper
from onnx.external_data_helper import uses_external_data

from proto_rewrite.errors import InputFileError
from proto_rewrite.filecopy import Span, file_span, open_input, release
from proto_rewrite.wire import LEN, TENSOR_RAW_DATA, iter_fields, len_header

CHUNK_BYTES = 16 * 2**20

# data type -> little-endian numpy dtype of its raw_data (bfloat16 and the float8s as raw bits)
_RAW_DTYPES = {
    TensorProto.FLOAT: "<f4",
    TensorProto.DOUBLE: "<f8",
    TensorProto.FLOAT16: "<f2",
    TensorProto.BFLOAT16: "<u2",
    TensorProto.INT8: "i1",
    TensorProto.UINT8: "u1",
    TensorProto.INT16: "<i2",
    TensorProto.UINT16: "<u2",
    TensorProto.INT32: "<i4",
    TensorProto.UINT32: "<u4",
    TensorProto.INT64: "<i8",
    TensorProto.UINT64: "<u8",
    TensorProto.BOOL: "?",
    TensorProto.COMPLEX64: "<c8",
    TensorProto.COMPLEX128: "<c16",
}
for _name in ("FLOAT8E4M3FN", "FLOAT8E4M3FNUZ", "FLOAT8E5M2", "FLOAT8E5M2FNUZ"):
    if hasattr(TensorProto, _name):
        _RAW_DTYPES[getattr(TensorProto, _name)] = "u1"

FLOAT_TYPES = {TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.DOUBLE: "float64"}


_NAMES = {
    TensorProto.FLOAT: "float32",
    TensorProto.DOUBLE: "float64",
    TensorProto.FLOAT16: "float16",
    TensorProto.BFLOAT16: "bfloat16",
    TensorProto.INT8: "int8",
    TensorProto.UINT8: "uint8",
    TensorProto.INT16: "int16",
    TensorProto.UINT16: "uint16",
    TensorProto.INT32: "int32",
    TensorProto.UINT32: "uint32",
    TensorProto.INT64: "int64",
    TensorProto.UINT64: "uint64",
    TensorProto.BOOL: "bool",
    TensorProto.STRING: "string",
    TensorProto.COMPLEX64: "complex64",
    TensorProto.COMPLEX128: "complex128",
}


def dtype_name(data_type: int) -> str:
    """``float32``, ``float16``, ``int64``... for a TensorProto data type."""
    if data_type in _NAMES:
        return _NAMES[data_type]
    try:
        return TensorProto.DataType.Name(data_type).lower()
    except ValueError:
        return f"type {data_type}"


def raw_dtype(data_type: int) -> np.dtype | None:
    raw = _RAW_DTYPES.get(data_type)
    return None if raw is None else np.dtype(raw)


class StoredTensor:
    """An initializer as stored: parsed header, data left in ``buffer`` or the external file."""

    def __init__(
        self, header: TensorProto, buffer, record: tuple[int, int], raw: tuple[int, int] | None, base_dir: str | None
    ) -> None:
        self.header = header  # every field but raw_data
        self._buffer = buffer
        self._record = record
        self._raw = raw
        self.base_dir = base_dir
        self._external = None  # the mapped external data file
        self._canonical = None

    @classmethod
    def from_record(cls, buffer, start: int, end: int, base_dir: str | None) -> StoredTensor:
        raw = None
        for field in iter_fields(buffer, start, end):
            if field.number == TENSOR_RAW_DATA and field.wire_type == LEN:
                raw = (field.start, field.value_start, field.end)
        head = bytes(buffer[start:end]) if raw is None else bytes(buffer[start : raw[0]]) + bytes(buffer[raw[2] : end])
        header = TensorProto.FromString(head)
        return cls(header, buffer, (start, end), None if raw is None else (raw[1], raw[2]), base_dir)

    @classmethod
    def from_proto(cls, tensor: TensorProto, base_dir: str | None = None) -> StoredTensor:
        data = tensor.SerializeToString()
        return cls.from_record(memoryview(data), 0, len(data), base_dir)

    # -- what it is
    @property
    def name(self) -> str:
        return self.header.name

    @property
    def dims(self) -> tuple[int, ...]:
        return tuple(self.header.dims)

    @property
    def data_type(self) -> int:
        return self.header.data_type

    @property
    def numel(self) -> int:
        return math.prod(self.dims)

    @property
    def is_external(self) -> bool:
        return uses_external_data(self.header)

    @property
    def nbytes(self) -> int:
        """Length of the data as raw little-endian bytes."""
        dtype = raw_dtype(self.data_type)
        if dtype is None:
            return len(self.to_tensor_proto().SerializeToString())
        return self.numel * dtype.itemsize

    def record(self) -> memoryview | None:
        """The serialized TensorProto exactly as read, when it holds its data inline."""
        if self.is_external:
            return None
        return memoryview(self._buffer)[self._record[0] : self._record[1]]

    def canonical_parts(self) -> tuple[bytes, bytes]:
        """The header as protobuf serializes it, split where ``raw_data`` goes."""
        header = self.header
        if header.HasField("raw_data"):  # a second raw_data field: the last one is the tensor's
            header = TensorProto()
            header.CopyFrom(self.header)
            header.ClearField("raw_data")
        return split_before(header.SerializeToString(), TENSOR_RAW_DATA)

    def is_canonical(self) -> bool:
        """True when :meth:`record` holds the bytes protobuf would serialize for this tensor (fields
        in number order, each once): those can be copied as they are."""
        if self._canonical is None:
            head, tail = self.canonical_parts()
            buffer = memoryview(self._buffer)
            start, end = self._record
            if self._raw is None:
                self._canonical = buffer[start:end] == head + tail
            else:
                raw_start, raw_end = self._raw
                head += len_header(TENSOR_RAW_DATA, raw_end - raw_start)
                self._canonical = buffer[start:raw_start] == head and buffer[raw_end:end] == tail
        return self._canonical

    def canonical_record(self) -> tuple[int, list]:
        """(length, parts) of the record as protobuf would serialize it: the header's bytes, and
        the raw data as a view of where it is."""
        head, tail = self.canonical_parts()
        if self._raw is None:
            return len(head) + len(tail), [head, tail]
        raw = memoryview(self._buffer)[self._raw[0] : self._raw[1]]
        head += len_header(TENSOR_RAW_DATA, raw.nbytes)
        return len(head) + raw.nbytes + len(tail), [head, raw, tail]

    def data_span(self) -> Span | None:
        """Where the raw data is in an input file (model or external data), without reading it."""
        span = self._raw_span()
        if span is None or span[1] == span[2]:
            return None
        buffer, start, end = span
        return file_span(memoryview(buffer)[start:end])

    def release(self) -> None:
        """Drop the data's mapped pages from this process's memory, once read (say, to transpose)."""
        release(self.data_span())

    # -- its data
    def external_info(self) -> tuple[Path, int, int | None]:
        info = {entry.key: entry.value for entry in self.header.external_data}
        location = info.get("location", "")
        path = Path(self.base_dir or ".") / location
        return path, int(info.get("offset", 0) or 0), (int(info["length"]) if info.get("length") else None)

    def _raw_span(self):
        """(buffer, start, end) of the raw little-endian data, inline or in the mapped external file."""
        if self.is_external:
            if self.raw_dtype is None:
                return None
            _, offset, _ = self.external_info()
            if self._external is None:
                if self.nbytes == 0:
                    return (b"", 0, 0)
                self._external = map_file(self.external_info()[0], "external data file")
            return (self._external, offset, offset + self.nbytes)
        if self._raw is not None:
            return (self._buffer, self._raw[0], self._raw[1])
        return None

    @property
    def raw_dtype(self) -> np.dtype | None:
        return raw_dtype(self.data_type)

    def array(self) -> np.ndarray:
        """The values, read-only; a view of the mapped file when stored as raw bytes."""
        dtype = self.raw_dtype
        span = self._raw_span()
        if span is None or self.data_type == TensorProto.BFLOAT16:
            return numpy_helper.to_array(self.to_tensor_proto())
        buffer, start, end = span
        view = np.frombuffer(buffer, dtype=dtype, count=(end - start) // dtype.itemsize, offset=start)
        return view.reshape(self.dims)

    def data_chunks(self) -> Iterator[memoryview | bytes]:
        """The data as raw little-endian bytes, a block at a time."""
        span = self._raw_span()
        if span is not None:
            buffer, start, end = span
            view = memoryview(buffer)
            for pos in range(start, end, CHUNK_BYTES):
                yield view[pos : min(end, pos + CHUNK_BYTES)]
            return
        array = numpy_helper.to_array(self.header)
        yield np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()

    def to_tensor_proto(self) -> TensorProto:
        """The whole tensor in memory, external data read in (a copy: for small tensors)."""
        if self.is_external:
            tensor = TensorProto()
            tensor.CopyFrom(self.header)
            del tensor.external_data[:]
            tensor.data_location = TensorProto.DEFAULT
            tensor.raw_data = b"".join(bytes(chunk) for chunk in self.data_chunks())
            return tensor
        start, end = self._record
        return TensorProto.FromString(bytes(memoryview(self._buffer)[start:end]))


class DerivedTensor:
    """An initializer made from another one by the rewrite; its data is produced when written."""

    def __init__(
        self,
        name: str,
        dims: tuple[int, ...],
        data_type: int,
        make_blocks: Callable[[], Iterator],
        *,
        external: bool = False,
        source: StoredTensor | None = None,
        on_written: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.dims = tuple(int(d) for d in dims)
        self.data_type = data_type
        self._make_blocks = make_blocks
        self.is_external = external
        self.source = source
        self._on_written = on_written

    def release(self) -> None:
        """Called by the writer once the data is written: the source's pages leave this process
        (a stored source's, and what ``on_written`` drops)."""
        if self.source is not None:
            self.source.release()
        if self._on_written is not None:
            self._on_written()

    @property
    def numel(self) -> int:
        return math.prod(self.dims)

    @property
    def nbytes(self) -> int:
        return self.numel * raw_dtype(self.data_type).itemsize

    @property
    def header(self) -> TensorProto:
        tensor = TensorProto(name=self.name, dims=self.dims, data_type=self.data_type)
        if self.source is not None:
            if self.source.header.HasField("doc_string"):
                tensor.doc_string = self.source.header.doc_string
            tensor.metadata_props.extend(getattr(self.source.header, "metadata_props", []))
        return tensor

    def record(self) -> None:
        return None

    def data_chunks(self) -> Iterator[memoryview | bytes]:
        expected = self.nbytes
        written = 0
        dtype = raw_dtype(self.data_type)
        for block in self._make_blocks():
            if isinstance(block, np.ndarray):
                block = np.ascontiguousarray(block, dtype=dtype)
                block = memoryview(block).cast("B")
            written += len(block)
            yield block
        if written != expected:
            raise AssertionError(f"{self.name}: produced {written} bytes, expected {expected}")

    def array(self) -> np.ndarray:
        data = b"".join(bytes(chunk) for chunk in self.data_chunks())
        return np.frombuffer(data, dtype=raw_dtype(self.data_type)).reshape(self.dims)

    def to_tensor_proto(self) -> TensorProto:
        tensor = self.header
        tensor.raw_data = b"".join(bytes(chunk) for chunk in self.data_chunks())
        return tensor


def map_file(path: str | os.PathLike, what: str) -> memoryview:
    """The whole file, memory-mapped read-only (read into memory when it cannot be mapped), with
    typed errors for the usual problems."""
    buffer = open_input(path, what)
    if not buffer.nbytes:
        raise InputFileError(
            f"the {what} is empty (0 bytes)",
            path=path,
            hint="the file was probably not written completely; copy it again",
        )
    return buffer


def split_before(message: bytes, number: int) -> tuple[bytes, bytes]:
    """Split a canonical serialization (fields in number order) before its first field numbered
    above ``number``."""
    for record in iter_fields(message):
        if record.number > number:
            return message[: record.start], message[record.start :]
    return message, b""


# data type -> (typed field holding the values when there is no raw_data, values per element)
_TYPED_FIELDS = {
    TensorProto.FLOAT: ("float_data", 1),
    TensorProto.COMPLEX64: ("float_data", 2),
    TensorProto.DOUBLE: ("double_data", 1),
    TensorProto.COMPLEX128: ("double_data", 2),
    TensorProto.INT64: ("int64_data", 1),
    TensorProto.UINT32: ("uint64_data", 1),
    TensorProto.UINT64: ("uint64_data", 1),
    TensorProto.STRING: ("string_data", 1),
    **{
        t: ("int32_data", 1)
        for t in (
            TensorProto.INT32,
            TensorProto.INT16,
            TensorProto.INT8,
            TensorProto.UINT16,
            TensorProto.UINT8,
            TensorProto.BOOL,
            TensorProto.FLOAT16,
            TensorProto.BFLOAT16,
        )
    },
}


def map_external(tensors: list[StoredTensor]) -> None:
    """Map each external data file once (so the data stays readable even if the file is replaced)."""
    mapped: dict[Path, memoryview] = {}
    for tensor in tensors:
        if not tensor.is_external or tensor.raw_dtype is None or tensor.nbytes == 0:
            continue
        path = tensor.external_info()[0].resolve()
        if path not in mapped:
            mapped[path] = map_file(path, "external data file")
        tensor._external = mapped[path]


MAX_RANK = 32  # numpy's limit on dimensions


def _check_external_fields(tensor: StoredTensor, path) -> str:
    """The location of an external tensor, after checking that offset and length are byte counts."""
    entries = {entry.key: entry.value for entry in tensor.header.external_data}
    location = entries.get("location", "")
    if "\x00" in location:
        raise InputFileError(
            f"initializer '{tensor.name}' names external data with a NUL character",
            path=path,
            layer=tensor.name,
            hint="the model is corrupt; export it again",
        )
    for key in ("offset", "length"):
        value = entries.get(key)
        if value and not (value.isascii() and value.isdigit()):
            raise InputFileError(
                f"initializer '{tensor.name}' has external data {key} '{value}', not a number of bytes",
                path=path,
                layer=tensor.name,
                hint="the model is corrupt; export it again",
            )
    return location


def check_tensor(tensor: StoredTensor, path) -> None:
    """Raise :class:`InputFileError` when a tensor's data does not fill its shape."""
    if tensor.data_type == TensorProto.UNDEFINED:
        raise InputFileError(
            f"initializer '{tensor.name}' has no data type",
            path=path,
            layer=tensor.name,
            hint="the model is corrupt; export it again",
        )
    if tensor.data_type not in TensorProto.DataType.values():
        raise InputFileError(
            f"initializer '{tensor.name}' has data type {tensor.data_type}, which ONNX does not define",
            path=path,
            layer=tensor.name,
            hint="the model is corrupt, or needs a newer onnx than the one installed",
        )
    if any(d < 0 for d in tensor.dims):
        raise InputFileError(
            f"initializer '{tensor.name}' has a negative dimension {list(tensor.dims)}",
            path=path,
            layer=tensor.name,
            hint="the model is corrupt; export it again",
        )
    if len(tensor.dims) > MAX_RANK:
        raise InputFileError(
            f"initializer '{tensor.name}' has {len(tensor.dims)} dimensions",
            path=path,
            layer=tensor.name,
            hint="the model is corrupt; export it again",
        )
    dtype = raw_dtype(tensor.data_type)
    if tensor.is_external:
        location = _check_external_fields(tensor, path)
        data_path, offset, length = tensor.external_info()
        base = Path(tensor.base_dir or ".").resolve()
        if (
            not location
            or os.path.isabs(location)
            or ".." in Path(location).parts
            or not data_path.resolve().is_relative_to(base)
        ):
            raise InputFileError(
                f"initializer '{tensor.name}' names external data '{location}' outside the model's folder",
                path=path,
                layer=tensor.name,
                hint="external data files must sit beside the model (a relative location "
                "without '..', not a link to elsewhere)",
            )
        if not data_path.is_file():
            raise InputFileError(
                f"external data file '{location}' of initializer '{tensor.name}' not found",
                path=data_path,
                layer=tensor.name,
                hint="copy the data file into the model's folder, beside the .onnx file",
            )
        needed = tensor.nbytes if dtype is not None else (length or 0)
        if length is not None and dtype is not None and length != needed:
            raise InputFileError(
                f"initializer '{tensor.name}' has {length} bytes of external data but its "
                f"shape {list(tensor.dims)} needs {needed}",
                path=data_path,
                layer=tensor.name,
                hint="the model and its data file do not belong together",
            )
        if offset + needed > data_path.stat().st_size:
            raise InputFileError(
                f"external data of initializer '{tensor.name}' runs past the end of "
                f"'{location}' (offset {offset} + {needed} bytes)",
                path=data_path,
                layer=tensor.name,
                hint="the data file is truncated; copy it again",
            )
        return
    field, per_element = _TYPED_FIELDS.get(tensor.data_type, (None, 1))
    if tensor._raw is None and field is not None:
        count = len(getattr(tensor.header, field))
        if count != tensor.numel * per_element:
            raise InputFileError(
                f"initializer '{tensor.name}' has {count} values in {field} but its shape "
                f"{list(tensor.dims)} needs {tensor.numel * per_element}",
                path=path,
                layer=tensor.name,
                hint="the model is corrupt; export it again",
            )
        return
    if tensor._raw is not None and dtype is not None:
        start, end = tensor._raw
        if end - start != tensor.nbytes:
            raise InputFileError(
                f"initializer '{tensor.name}' has {end - start} bytes of data but its shape "
                f"{list(tensor.dims)} ({dtype_name(tensor.data_type)}) needs {tensor.nbytes}",
                path=path,
                layer=tensor.name,
                hint="the model is corrupt; export it again",
            )
