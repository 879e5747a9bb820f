"""The Caffe protobuf schema: descriptor pools and their message classes, one object per schema.

``schemas/caffe.proto`` (BVLC Caffe plus the common forks) is compiled once into a serialized
``FileDescriptorSet`` that ships in the package (``caffe_descriptor.pb``). Building the classes
from it, instead of shipping protoc gencode, keeps the package working with every protobuf
runtime from 4.25 to 7.x: gencode from a recent protoc refuses older runtimes.

Each schema lives in a private descriptor pool, so it never clashes with another package that
registers its own ``caffe.proto`` in protobuf's default pool, nor with another schema: a process
can read models of two Caffe forks side by side. :func:`bundled_schema` is the shipped one (built
on first use); :func:`load_schema` reads a fork's compiled schema (``protoc
--descriptor_set_out=fork.pb caffe.proto``; ``load(caffe_schema=...)``, the CLI's
``--caffe-schema``). Code that holds a message finds its schema with :func:`schema_of`.

Rebuild the descriptor after editing the .proto with ``python schemas/build_descriptor.py``.
"""

from __future__ import annotations

import functools
import os
from importlib import resources

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from proto_rewrite.errors import InputFileError, UsageError

DESCRIPTOR_RESOURCE = "caffe_descriptor.pb"
PACKAGE = "caffe"
REQUIRED_MESSAGES = (
    "NetParameter",
    "LayerParameter",
    "V1LayerParameter",
    "V0LayerParameter",
    "BlobProto",
    "BlobShape",
    "ParamSpec",
    "NetState",
    "NetStateRule",
)
_COMPILE_HINT = (
    "compile the fork's caffe.proto with: python -m grpc_tools.protoc -I DIR "
    "--descriptor_set_out=fork.pb DIR/caffe.proto"
)


class CaffeSchema:
    """One Caffe schema: its private descriptor pool and the message classes of its ``caffe``
    package. ``path`` is the fork's descriptor set, None for the bundled schema."""

    def __init__(self, file_set: descriptor_pb2.FileDescriptorSet, path: str | None = None) -> None:
        self.path = path
        self.file_set = file_set
        self.pool = descriptor_pool.DescriptorPool()
        for file_proto in file_set.file:
            self.pool.Add(file_proto)
        self.NetParameter = self.message_class("NetParameter")
        self.LayerParameter = self.message_class("LayerParameter")
        self.V1LayerParameter = self.message_class("V1LayerParameter")
        self.V0LayerParameter = self.message_class("V0LayerParameter")
        self.BlobProto = self.message_class("BlobProto")
        self.BlobShape = self.message_class("BlobShape")
        self.ParamSpec = self.message_class("ParamSpec")
        self.NetState = self.message_class("NetState")
        self.NetStateRule = self.message_class("NetStateRule")
        _BY_POOL[id(self.pool)] = self

    def __repr__(self) -> str:
        return f"CaffeSchema({self.path or 'bundled'})"

    def message_class(self, name: str) -> type:
        """The message class for ``caffe.<name>``, e.g. ``message_class("NetParameter")``."""
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))

    def message_names(self) -> list[str]:
        """Every message name of the ``caffe`` package in the schema, nested ones included."""
        return sorted(_messages(self.file_set))

    def enum_value(self, enum_name: str, value: str) -> int:
        """The number of ``value`` in the enum ``caffe.<enum_name>`` (e.g. ``Phase``, ``TEST``)."""
        return self.pool.FindEnumTypeByName(f"{PACKAGE}.{enum_name}").values_by_name[value].number


# id(pool) -> the schema built on it; schemas are kept for the process's life (a handful at most).
_BY_POOL: dict[int, CaffeSchema] = {}


def schema_of(message) -> CaffeSchema:
    """The schema a Caffe message (a net, a layer, a blob) was built from."""
    found = _BY_POOL.get(id(message.DESCRIPTOR.file.pool))
    if found is None:
        raise UsageError(
            f"a {message.DESCRIPTOR.full_name} that no proto-rewrite Caffe schema made",
            hint="load Caffe models with proto_rewrite.load (or parse them with a CaffeSchema's classes)",
        )
    return found


def _bundled_bytes() -> bytes:
    return resources.files(__package__).joinpath(DESCRIPTOR_RESOURCE).read_bytes()


@functools.lru_cache(maxsize=1)
def bundled_schema() -> CaffeSchema:
    """The schema shipped with proto-rewrite (BVLC Caffe and the common forks)."""
    return CaffeSchema(descriptor_pb2.FileDescriptorSet.FromString(_bundled_bytes()))


def resolve_schema(given: str | os.PathLike | CaffeSchema | None) -> CaffeSchema:
    """A schema from what an option holds: None for the bundled one, a path, or a schema."""
    if given is None:
        return bundled_schema()
    if isinstance(given, CaffeSchema):
        return given
    return load_schema(given)


def load_schema(path: str | os.PathLike) -> CaffeSchema:
    """A fork's schema from its compiled descriptor set, checked against Caffe's (the same file,
    unchanged since, gives the same schema object)."""
    from proto_rewrite.input_guard import require_regular_file

    path = os.path.abspath(os.fspath(path))
    info = require_regular_file(path, "the Caffe schema")
    key = (path, info.st_ino, info.st_size, info.st_mtime_ns) if info is not None else None
    if key is not None and key in _LOADED:
        return _LOADED[key]
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as err:
        raise InputFileError(
            f"cannot read the Caffe schema: {err.strerror}",
            path=path,
            hint="check the caffe_schema path",
            options=("caffe_schema",),
        ) from err
    schema = _build_custom(data, path)
    if key is not None:
        _LOADED[key] = schema
    return schema


_LOADED: dict[tuple, CaffeSchema] = {}


def _build_custom(data: bytes, path: str) -> CaffeSchema:
    try:
        file_set = descriptor_pb2.FileDescriptorSet.FromString(data)
        _check_against_bundled(file_set, path)
        _complete_from_bundled(file_set, path)
        schema = CaffeSchema(file_set, path)
        for name in REQUIRED_MESSAGES:
            schema.pool.FindMessageTypeByName(f"{PACKAGE}.{name}")
    except (DecodeError, TypeError, KeyError) as err:
        raise InputFileError(
            f"not a compiled Caffe schema (a descriptor set with package 'caffe' and {', '.join(REQUIRED_MESSAGES)}): {err}",
            path=path,
            hint=_COMPILE_HINT,
        ) from err
    return schema


def _complete_from_bundled(file_set, path: str) -> None:
    """Give a fork's messages the fields of Caffe's that they lack (an older fork has no
    InnerProductParameter.transpose, say), with Caffe's numbers and types, where the number is
    free: every field proto-rewrite reads then exists, at its default when the fork's files never
    set it."""
    bundled = _messages(bundled_schema().file_set)
    custom = _messages(file_set)
    types = {f".{PACKAGE}.{name}" for name in custom}
    for file_proto in file_set.file:
        if file_proto.package == PACKAGE:
            types |= {f".{PACKAGE}.{enum.name}" for enum in file_proto.enum_type}
            types |= {
                f".{PACKAGE}.{name}.{enum.name}"
                for name, message in _messages(descriptor_pb2.FileDescriptorSet(file=[file_proto])).items()
                for enum in message.enum_type
            }
    for name, message in custom.items():
        reference = bundled.get(name)
        if reference is None:
            continue
        names = {field.name for field in message.field}
        numbers = {field.number: field.name for field in message.field}
        ranges = [(r.start, r.end) for r in (*message.extension_range, *message.reserved_range)]
        for field in reference.field:
            if field.name not in names and field.number in numbers:
                raise InputFileError(
                    f"not a usable Caffe schema: field number {field.number} of caffe.{name} is "
                    f"'{numbers[field.number]}' here but '{field.name}' in Caffe's schema (Caffe's files would be "
                    "misread)",
                    path=path,
                    hint="compile the fork's own caffe.proto; " + _COMPILE_HINT,
                )
            if (
                field.name in names
                or field.HasField("oneof_index")
                or any(start <= field.number < end for start, end in ranges)
                or (field.type_name and field.type_name not in types)
            ):
                continue
            message.field.add().CopyFrom(field)


# The fields every part of proto-rewrite reads, whatever the layer types: a schema must have them.
CORE_FIELDS = {
    "NetParameter": ("name", "layer", "layers", "input", "input_shape", "input_dim", "state"),
    "LayerParameter": ("name", "type", "bottom", "top", "phase", "blobs", "include", "exclude", "param"),
    "V1LayerParameter": ("name", "type", "bottom", "top", "blobs", "include", "exclude"),
    "V0LayerParameter": ("name", "type"),
    "BlobProto": ("shape", "data", "double_data", "num", "channels", "height", "width"),
    "BlobShape": ("dim",),
    "NetState": ("phase", "level", "stage"),
    "NetStateRule": ("phase", "min_level", "max_level", "stage", "not_stage"),
}


def _messages(file_set) -> dict:
    """Full name (without the package) -> DescriptorProto, nested messages included, of package caffe."""
    found = {}

    def collect(prefix, messages):
        for message in messages:
            found[prefix + message.name] = message
            collect(prefix + message.name + ".", message.nested_type)

    for file_proto in file_set.file:
        if file_proto.package == PACKAGE:
            collect("", file_proto.message_type)
    return found


def _check_against_bundled(file_set, path: str) -> None:
    """A fork's schema extends BVLC's: refuse one whose messages are hollow (a message of the
    bundled schema without any of its fields), that lacks a core field, or that gives a field of the
    bundled schema another number, type or label (every reader would misread the files)."""
    bundled = _messages(bundled_schema().file_set)
    custom = _messages(file_set)

    def refuse(message: str, hint: str = _COMPILE_HINT):
        raise InputFileError(f"not a usable Caffe schema: {message}", path=path, hint=hint)

    for name, fields in CORE_FIELDS.items():
        have = {field.name for field in custom[name].field}
        missing = [field for field in fields if field not in have]
        if missing:
            refuse(
                f"message caffe.{name} lacks the field{'s' * (len(missing) > 1)} {', '.join(missing)}"
                + (" (it is hollow: no fields at all)" if not have else "")
            )
    for name, message in custom.items():
        reference = bundled.get(name)
        if reference is None:
            continue
        if reference.field and not message.field:
            refuse(f"message caffe.{name} is hollow: it has none of the {len(reference.field)} fields of Caffe's")
        known = {field.name: field for field in reference.field}
        for field in message.field:
            expected = known.get(field.name)
            if expected is None:
                continue
            if (field.number, field.type, field.label) != (expected.number, expected.type, expected.label) or (
                field.type_name.lstrip(".") != expected.type_name.lstrip(".")
            ):
                refuse(
                    f"field caffe.{name}.{field.name} is number {field.number} of type "
                    f"{descriptor_pb2.FieldDescriptorProto.Type.Name(field.type)} here, but number "
                    f"{expected.number} of type {descriptor_pb2.FieldDescriptorProto.Type.Name(expected.type)} "
                    "in Caffe's schema",
                    hint="compile the fork's own caffe.proto; " + _COMPILE_HINT,
                )
