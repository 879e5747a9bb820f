"""An ONNX model in memory, and the one way in (``load_onnx``) and out (``save_onnx``).

The model file is memory-mapped; its skeleton (everything but the graph's initializers) is
parsed, the initializers are :class:`~proto_rewrite.onnx.tensors.StoredTensor` objects whose data
stays in the file (or in the external data files beside it) until read. Saving streams: each
untouched initializer is copied file to file as the bytes it was read from, so a model loaded and
saved unchanged is byte-identical to what ``onnx.save`` writes for it, at the speed of a copy.
When the input could not be mapped (a pipe) it is read into memory, and saved by the in-memory
path (protobuf serializes the whole model); the bytes are the same.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from proto_rewrite.diagnostics import Diagnostic
from proto_rewrite.errors import InputFileError, Location, OutputError
from proto_rewrite.filecopy import CopyStats, WriteReport, in_memory_reason, read_into_memory
from proto_rewrite.fileio import OutputFiles
from proto_rewrite.onnx.reader import split_model
from proto_rewrite.onnx.tensors import StoredTensor, check_tensor, map_external, map_file
from proto_rewrite.onnx.writer import external_layout, plan_external, serialize_data, serialize_model, write_model
from proto_rewrite.wire import is_repeated


@dataclass
class OnnxModel:
    proto: onnx.ModelProto  # the model without its graph's initializers: they are in ``initializers``
    initializers: dict  # name -> StoredTensor | DerivedTensor, in file order
    path: str | None = None
    base_dir: str | None = None  # where external data files are looked for
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def graph(self) -> onnx.GraphProto:
        return self.proto.graph

    @property
    def opset(self) -> int | None:
        """The version of the default ("ai.onnx") operator set, None when not imported."""
        for entry in self.proto.opset_import:
            if entry.domain in ("", "ai.onnx"):
                return entry.version
        return None

    @property
    def has_external_data(self) -> bool:
        return any(t.is_external for t in self.initializers.values())

    def external_data_files(self) -> list[str]:
        files = []
        for tensor in self.initializers.values():
            if tensor.is_external and isinstance(tensor, StoredTensor):
                location = str(tensor.external_info()[0])
                if location not in files:
                    files.append(location)
        return files

    def inline_size(self) -> int:
        """About how many bytes the model takes with every initializer inline (``to_bytes``)."""
        return self.proto.ByteSize() + sum(tensor.nbytes + 64 for tensor in self.initializers.values())

    def to_proto_external(self) -> onnx.ModelProto:
        """The model as one ModelProto whose external initializers stay references to their files
        (relative to ``base_dir``): for a model too large to inline (protobuf's 2 GB limit)."""
        proto = onnx.ModelProto()
        proto.CopyFrom(self.proto)
        for tensor in self.initializers.values():
            if tensor.is_external and isinstance(tensor, StoredTensor):
                proto.graph.initializer.append(tensor.header)
            else:
                proto.graph.initializer.append(tensor.to_tensor_proto())
        return proto

    def to_bytes(self) -> bytes:
        """The whole model serialized, every initializer inline (external data read in)."""
        buffer = io.BytesIO()
        write_model(self.proto, list(self.initializers.values()), buffer)
        return buffer.getvalue()

    def to_proto(self) -> onnx.ModelProto:
        """The whole model as one ModelProto, every initializer inline (a copy of everything)."""
        return onnx.ModelProto.FromString(self.to_bytes())

    @classmethod
    def from_proto(cls, proto: onnx.ModelProto, *, path: str | None = None, base_dir: str | None = None) -> OnnxModel:
        """A model built in memory (external data, if any, is looked for in ``base_dir``)."""
        data = proto.SerializeToString()
        skeleton, tensors = split_model(memoryview(data), path=path, base_dir=base_dir)
        model = cls(skeleton, {t.name: t for t in tensors}, path, base_dir)
        check_structure(model, tensors)
        return model


def load_onnx(path: str | os.PathLike, *, streaming: bool | None = None) -> OnnxModel:
    """Load an ONNX model (and find its external data beside it); typed errors for bad input.

    The files are memory-mapped (``streaming`` None or True), or read into memory (False, or
    when a file cannot be mapped): the model is then saved by the in-memory path.
    """
    path = os.fspath(path)
    if path.endswith((".prototxt", ".caffemodel")):
        raise InputFileError(
            "a Caffe file was given where an ONNX model is expected",
            path=path,
            hint="ONNX models are .onnx files; Caffe models are read from their .prototxt",
        )
    if streaming is False:
        with read_into_memory():
            return _load(path)
    return _load(path)


def _load(path: str) -> OnnxModel:
    buffer = map_file(path, "ONNX model")
    base_dir = os.path.dirname(os.path.abspath(path))
    skeleton, tensors = split_model(buffer, path=path, base_dir=base_dir)
    _check_versions(skeleton, path)
    notes = _densify_sparse(skeleton, tensors, path, base_dir)
    model = OnnxModel(skeleton, {t.name: t for t in tensors}, path, base_dir)
    model.diagnostics.extend(notes)
    check_structure(model, tensors)
    return model


# The versions proto-rewrite supports (README, "ONNX support"): opsets 7 to the newest this onnx
# knows, IR versions 3 (the first with opset imports) to the newest this onnx knows.
MIN_OPSET = 7
MIN_IR_VERSION = 3


def _check_versions(proto: onnx.ModelProto, path) -> None:
    """Refuse a model outside the supported opset / IR version range (onnxruntime could not load
    what the conversion would write)."""
    newest_ir = onnx.IR_VERSION
    if not MIN_IR_VERSION <= proto.ir_version <= newest_ir:
        raise InputFileError(
            f"the model's IR version {proto.ir_version} is outside the range proto-rewrite supports "
            f"({MIN_IR_VERSION} to {newest_ir}, what onnx {onnx.__version__} knows)",
            path=path,
            hint="re-export the model with a current exporter"
            if proto.ir_version < MIN_IR_VERSION
            else "the model is newer than this onnx (or corrupt): upgrade onnx and onnxruntime, or export it "
            "with an older IR version",
        )
    newest = onnx.defs.onnx_opset_version()
    for entry in proto.opset_import:
        if entry.domain in ("", "ai.onnx") and not MIN_OPSET <= entry.version <= newest:
            raise InputFileError(
                f"the model imports ONNX opset {entry.version}, outside the range proto-rewrite supports "
                f"({MIN_OPSET} to {newest}, the newest onnx {onnx.__version__} knows)",
                path=path,
                hint=(
                    "convert it first: onnx.version_converter.convert_version(model, 13)"
                    if entry.version < MIN_OPSET
                    else "the model is newer than this onnx (or corrupt): upgrade onnx and onnxruntime, or export "
                    "it at a lower opset"
                ),
            )


def _densify_sparse(proto: onnx.ModelProto, tensors: list, path, base_dir) -> list[Diagnostic]:
    """Replace each of the graph's sparse initializers by the dense initializer it stands for
    (onnxruntime does the same), after a size check; returns a note per tensor."""
    import numpy as np
    from onnx import numpy_helper

    from proto_rewrite.limits import check_tensor_size

    graph = proto.graph
    if not len(graph.sparse_initializer):
        return []
    notes = []
    for sparse in graph.sparse_initializer:
        name = sparse.values.name
        dims = tuple(int(d) for d in sparse.dims)
        where = f"sparse initializer '{name}'"
        try:
            values = numpy_helper.to_array(sparse.values, base_dir or "")
            indices = numpy_helper.to_array(sparse.indices, base_dir or "").astype(np.int64)
            check_tensor_size(dims, values.dtype.itemsize, where, path=path, layer=name)
            dense = np.zeros(int(np.prod(dims, dtype=object)), dtype=values.dtype)
            if indices.ndim == 2:
                indices = np.ravel_multi_index(tuple(indices.T), dims)
            if indices.shape != values.reshape(-1).shape:
                raise ValueError(f"{indices.size} indices for {values.size} values")
            if indices.size and (indices.min() < 0 or indices.max() >= dense.size):
                raise ValueError(f"an index is outside the tensor's {dense.size} values")
            dense[indices] = values.reshape(-1)
        except InputFileError:
            raise
        except Exception as err:  # onnx and numpy raise several types for a malformed sparse tensor
            raise InputFileError(
                f"{where} cannot be read: {err}", path=path, layer=name, hint="the model is corrupt; export it again"
            ) from err
        tensor = numpy_helper.from_array(dense.reshape(dims), name)
        tensors.append(StoredTensor.from_proto(tensor, base_dir))
        notes.append(
            Diagnostic(
                "note",
                f"{where} ({values.size} of {dense.size} values set) is written back dense",
                Location(path, layer=name),
            )
        )
    del graph.sparse_initializer[:]
    return notes


def save_onnx(
    model: OnnxModel,
    out_path: str | os.PathLike,
    outputs: OutputFiles | None = None,
    *,
    streaming: bool | None = None,
    external_from: int | None = None,
) -> WriteReport:
    """Write the model atomically; external data goes to ``<name>.data`` beside it when the model
    came with external data or would not fit in one protobuf (2 GB). Byte-deterministic.

    ``streaming``: None (default) streams (untouched bytes copied file to file) unless the
    model's data was read into memory, then the in-memory path runs; True / False force one.
    Both give the same bytes. With ``outputs``, the files join that all-or-nothing group (the
    caller commits). ``external_from``: the size from which a model without external data is
    written with its tensors as external data (default: protobuf's 2 GB limit). Returns how the files were
    written.
    """
    target = Path(out_path)
    tensors = list(model.initializers.values())
    external = plan_external(tensors, model.proto.ByteSize(), model.has_external_data, limit=external_from)
    data_name = f"{target.name}.data"
    reason = None
    if streaming is None:
        reason = in_memory_reason(buffer for tensor in tensors for buffer in _buffers(tensor))
        streaming = reason is None
    elif not streaming:
        reason = "the in-memory path was asked for"
    paths = [str(target)] + ([str(target.parent / data_name)] if external else [])
    report = WriteReport(paths, streaming, reason)
    if outputs is None:
        with OutputFiles() as files:
            report.stats = _write(model, tensors, target, files, external, data_name, streaming)
    else:
        report.stats = _write(model, tensors, target, outputs, external, data_name, streaming)
    return report


def _buffers(tensor) -> list:
    """The input buffers a tensor's data comes from."""
    stored = tensor if isinstance(tensor, StoredTensor) else getattr(tensor, "source", None)
    if not isinstance(stored, StoredTensor):
        return []
    return [buffer for buffer in (stored._buffer, stored._external) if buffer is not None]


def _write(
    model, tensors, target: Path, files: OutputFiles, external: set[str], data_name: str, streaming: bool
) -> CopyStats:
    try:
        layout = external_layout(tensors, external)
        if not streaming:
            data = serialize_data(tensors, external, layout) if external else None
            body = serialize_model(model.proto, tensors, external=external, data_location=data_name, layout=layout)
            if data is not None:
                with files.open(target.parent / data_name) as handle:
                    handle.write(data)
            with files.open(target) as handle:
                handle.write(body)
            return CopyStats(written=len(body) + (len(data) if data is not None else 0))
        data_handle = files.open(target.parent / data_name) if external else None
        try:
            with files.open(target) as handle:
                return write_model(
                    model.proto,
                    tensors,
                    handle,
                    external=external,
                    data_handle=data_handle,
                    data_location=data_name,
                    layout=layout,
                )
        finally:
            if data_handle is not None:
                data_handle.close()
    except OSError as err:
        raise OutputError(
            f"cannot write '{target}': {err.strerror or err}",
            path=target,
            hint="check the folder's permissions and free space",
        ) from err


def check_structure(model: OnnxModel, tensors: list[StoredTensor]) -> None:
    """Errors a model cannot be worked on with, each naming the node or initializer."""
    path = model.path
    _check_text(model.proto, path)
    for tensor in tensors:
        _check_text(tensor.header, path)
    seen = set()
    for tensor in tensors:
        if tensor.name in seen:
            raise InputFileError(
                f"two initializers are named '{tensor.name}'",
                path=path,
                layer=tensor.name,
                hint="the model is corrupt; export it again",
            )
        seen.add(tensor.name)
        check_tensor(tensor, path)
    map_external(tensors)
    graph = model.graph
    inputs = [vi.name for vi in graph.input]
    twice = sorted({name for name in inputs if inputs.count(name) > 1})
    if twice:
        raise InputFileError(
            f"the graph lists the input '{twice[0]}' twice",
            path=path,
            layer=twice[0],
            hint="graph inputs are fed by name, so each must be unique; the model is corrupt",
        )
    defined = set(seen) | set(inputs) | {""}
    for node in graph.node:
        label = node.name or (node.output[0] if node.output else node.op_type)
        for name in node.input:
            if name not in defined:
                raise InputFileError(
                    f"node '{label}' ({node.op_type}) reads '{name}', which no input, initializer or earlier "
                    "node defines",
                    path=path,
                    layer=label,
                    hint="the model is incomplete, or its nodes are not in topological order (onnx.checker "
                    "says the same); export it again",
                )
        for name in node.output:
            if name and name in defined:
                raise InputFileError(
                    f"node '{label}' ({node.op_type}) writes '{name}', which is already defined",
                    path=path,
                    layer=label,
                    hint="every tensor has one producer in ONNX; the model is corrupt",
                )
            defined.add(name)
    for output in graph.output:
        if output.name not in defined:
            raise InputFileError(
                f"graph output '{output.name}' is not produced by any node",
                path=path,
                layer=output.name,
                hint="the model is incomplete; export it again",
            )
    if model.opset is None and any(node.domain in ("", "ai.onnx") for node in graph.node):
        raise InputFileError(
            "the model does not import the default ONNX operator set",
            path=path,
            hint="the model is corrupt; export it again",
        )
    _checker_notes(model)


def _check_text(message, path) -> None:
    """Refuse a string field that is not UTF-8 text (protobuf hands such a value over as bytes,
    which no name may be)."""
    for descriptor, value in message.ListFields():
        items = value if is_repeated(descriptor) else (value,)
        if descriptor.type == descriptor.TYPE_MESSAGE:
            for item in items:
                _check_text(item, path)
        elif descriptor.type == descriptor.TYPE_STRING:
            for item in items:
                if isinstance(item, bytes):
                    raise InputFileError(
                        f"the model's {descriptor.full_name} {item!r} is not UTF-8 text",
                        path=path,
                        hint="the file is corrupt; copy or export it again",
                    )


def _checker_notes(model: OnnxModel) -> None:
    """onnx.checker's opinion, as a warning: the tool can still work on a model it dislikes."""
    from proto_rewrite.onnx.shapes import checkable_model

    try:
        onnx.checker.check_model(checkable_model(model))
    except Exception as err:  # noqa: BLE001 - onnx raises several types; any of them is a note
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        model.diagnostics.append(
            Diagnostic(
                "warning",
                f"onnx.checker: {first}",
                Location(path=model.path),
                "the rewrite still runs; the output keeps whatever the checker dislikes in the input",
            )
        )
