"""Split a serialized ModelProto into its skeleton (parsed) and its initializers (left in place).

The skeleton is the model with its graph's ``initializer`` records cut out: nodes, inputs,
outputs, attributes, metadata. It is small and parsed by protobuf as usual. Each initializer
becomes a :class:`~proto_rewrite.onnx.tensors.StoredTensor` whose data stays in ``buffer`` (the
mapped file: the writer copies untouched records from it file to file).

A graph stored in several records (legal protobuf, never written by onnx) is parsed whole
instead and its canonical serialization, held in memory, is split: the model is then written by
the in-memory path.
"""

from __future__ import annotations

import onnx
from google.protobuf.message import DecodeError

from proto_rewrite.errors import InputFileError
from proto_rewrite.filecopy import in_memory_file
from proto_rewrite.onnx.tensors import StoredTensor
from proto_rewrite.wire import GRAPH_INITIALIZER, LEN, MODEL_GRAPH, WireFormatError, iter_fields, len_header


def split_model(
    buffer, *, path=None, base_dir: str | None = None, _merged: bool = False
) -> tuple[onnx.ModelProto, list[StoredTensor]]:
    """Parse ``buffer`` (bytes, or a memoryview of a mapped file) into skeleton and initializers.
    ``_merged``: the buffer is protobuf's own serialization of a model read whole."""
    try:
        records = list(iter_fields(buffer))
        graphs = [r for r in records if r.number == MODEL_GRAPH]
        if not graphs:
            raise InputFileError(
                "the file holds no graph: it is not an ONNX model", path=path, hint=_hint_for_bad_bytes(buffer)
            )
        wrong = next((r for r in graphs if r.wire_type != LEN), None)
        if wrong is not None:
            raise InputFileError(
                f"not a valid ONNX model: its graph field has wire type {wrong.wire_type} at byte "
                f"{wrong.start}, not a message",
                path=path,
                hint=_hint_for_bad_bytes(buffer),
            )
        if len(graphs) != 1:
            if _merged:
                raise InputFileError(
                    "not a valid ONNX model: its graph records cannot be merged",
                    path=path,
                    hint=_hint_for_bad_bytes(buffer),
                )
            # The graph is split over several records: let protobuf merge them, then split the
            # canonical serialization (in memory; the in-memory writer takes it from there).
            whole = _parse(bytes(buffer), path, buffer)
            data = in_memory_file(
                whole.SerializeToString(),
                path or "",
                "the graph is stored in several records, so the model was parsed whole",
            )
            return split_model(memoryview(data), path=path, base_dir=base_dir, _merged=True)
        graph = graphs[0]
        kept = bytearray()
        tensors = []
        for record in iter_fields(buffer, graph.value_start, graph.end):
            if record.number == GRAPH_INITIALIZER and record.wire_type == LEN:
                tensors.append(StoredTensor.from_record(buffer, record.value_start, record.end, base_dir))
            else:
                kept += buffer[record.start : record.end]
    except WireFormatError as err:
        raise InputFileError(f"not a valid ONNX model: {err}", path=path, hint=_hint_for_bad_bytes(buffer)) from err
    except DecodeError as err:
        raise InputFileError(
            f"not a valid ONNX model: an initializer cannot be parsed ({err})",
            path=path,
            hint=_hint_for_bad_bytes(buffer),
        ) from err
    skeleton = bytearray(buffer[: graph.start])
    skeleton += len_header(MODEL_GRAPH, len(kept))
    skeleton += kept
    skeleton += buffer[graph.end :]
    model = _parse(bytes(skeleton), path, buffer)
    if not model.ir_version:
        raise InputFileError(
            "the file has no ONNX IR version: it is not an ONNX model", path=path, hint=_hint_for_bad_bytes(buffer)
        )
    return model, tensors


def _parse(data: bytes, path, original) -> onnx.ModelProto:
    try:
        return onnx.ModelProto.FromString(data)
    except DecodeError as err:
        raise InputFileError(f"not a valid ONNX model: {err}", path=path, hint=_hint_for_bad_bytes(original)) from err


def _hint_for_bad_bytes(buffer) -> str:
    head = bytes(buffer[:256])
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return (
            "this looks like a text file; an ONNX model is a binary .onnx file (a Caffe .prototxt is "
            "read as a Caffe model)"
        )
    if head[:2] == b"PK":
        return "this looks like a zip archive; extract the .onnx file from it first"
    return "the file is truncated or corrupt, or not an ONNX model; copy or export it again"
