"""The Caffe protobuf schema, as message classes built at import time.

``schemas/caffe.proto`` (BVLC Caffe plus the common forks) is compiled once into a serialized
``FileDescriptorSet`` that ships in the package (``caffe_descriptor.pb``). Building the classes
from it at import time, instead of shipping protoc gencode, keeps the package working with every
protobuf runtime from 4.25 to 7.x: gencode from a recent protoc refuses older runtimes.

The classes live in a private descriptor pool, so they never clash with another package that
registers its own ``caffe.proto`` in protobuf's default pool.

Rebuild the descriptor after editing the .proto with ``python schemas/build_descriptor.py``.

A model from a fork this schema does not cover can be read with that fork's schema: compile its
caffe.proto to a descriptor set (``protoc --descriptor_set_out=fork.pb caffe.proto``) and name
it in the environment variable ``PROTO_REWRITE_CAFFE_SCHEMA`` (the CLI's ``--caffe-schema``)
before this module is first imported.
"""

from __future__ import annotations

import os
from importlib import resources

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from proto_rewrite.errors import InputFileError

DESCRIPTOR_RESOURCE = "caffe_descriptor.pb"
PACKAGE = "caffe"
SCHEMA_ENV = "PROTO_REWRITE_CAFFE_SCHEMA"
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

# The custom schema file in use, or None for the bundled one.
CUSTOM_SCHEMA_PATH = os.path.abspath(os.environ[SCHEMA_ENV]) if os.environ.get(SCHEMA_ENV) else None


def _descriptor_bytes() -> bytes:
    if CUSTOM_SCHEMA_PATH is None:
        return resources.files(__package__).joinpath(DESCRIPTOR_RESOURCE).read_bytes()
    from proto_rewrite.input_guard import require_regular_file

    require_regular_file(CUSTOM_SCHEMA_PATH, "the Caffe schema")
    try:
        with open(CUSTOM_SCHEMA_PATH, "rb") as handle:
            return handle.read()
    except OSError as err:
        raise InputFileError(
            f"cannot read the Caffe schema: {err.strerror}",
            path=CUSTOM_SCHEMA_PATH,
            hint=f"check the --caffe-schema path (or {SCHEMA_ENV})",
        ) from err


def _load_pool() -> tuple[descriptor_pool.DescriptorPool, object]:
    data = _descriptor_bytes()
    pool = descriptor_pool.DescriptorPool()
    try:
        file_set = descriptor_pb2.FileDescriptorSet.FromString(data)
        if CUSTOM_SCHEMA_PATH is not None:
            _check_against_bundled(file_set)
            _complete_from_bundled(file_set)
        for file_proto in file_set.file:
            pool.Add(file_proto)
        for name in REQUIRED_MESSAGES:
            pool.FindMessageTypeByName(f"{PACKAGE}.{name}")
    except (DecodeError, TypeError, KeyError) as err:
        raise InputFileError(
            f"not a compiled Caffe schema (a descriptor set with package 'caffe' and {', '.join(REQUIRED_MESSAGES)}): {err}",
            path=CUSTOM_SCHEMA_PATH,
            hint=_COMPILE_HINT,
        ) from err
    return pool, file_set


def _complete_from_bundled(file_set) -> None:
    """Give a fork's messages the fields of Caffe's that they lack (an older fork has no
    InnerProductParameter.transpose, say), with Caffe's numbers and types, where the number is
    free: every field proto-rewrite reads then exists, at its default when the fork's files never
    set it."""
    bundled = _messages(
        descriptor_pb2.FileDescriptorSet.FromString(
            resources.files(__package__).joinpath(DESCRIPTOR_RESOURCE).read_bytes()
        )
    )
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
                    path=CUSTOM_SCHEMA_PATH,
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


def _check_against_bundled(file_set) -> None:
    """A fork's schema extends BVLC's: refuse one whose messages are hollow (a message of the
    bundled schema without any of its fields), that lacks a core field, or that gives a field of the
    bundled schema another number, type or label (every reader would misread the files)."""
    bundled = _messages(
        descriptor_pb2.FileDescriptorSet.FromString(
            resources.files(__package__).joinpath(DESCRIPTOR_RESOURCE).read_bytes()
        )
    )
    custom = _messages(file_set)

    def refuse(message: str, hint: str = _COMPILE_HINT):
        raise InputFileError(f"not a usable Caffe schema: {message}", path=CUSTOM_SCHEMA_PATH, hint=hint)

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


POOL, _FILE_SET = _load_pool()


def message_class(name: str) -> type:
    """The message class for ``caffe.<name>``, e.g. ``message_class("NetParameter")``."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


def message_names() -> list[str]:
    """Every message name of the ``caffe`` package in the schema, nested ones included."""
    names = []

    def collect(prefix, messages):
        for message in messages:
            names.append(prefix + message.name)
            collect(prefix + message.name + ".", message.nested_type)

    for file_proto in _FILE_SET.file:
        if file_proto.package == PACKAGE:
            collect("", file_proto.message_type)
    return sorted(names)


NetParameter = message_class("NetParameter")
LayerParameter = message_class("LayerParameter")
V1LayerParameter = message_class("V1LayerParameter")
V0LayerParameter = message_class("V0LayerParameter")
BlobProto = message_class("BlobProto")
BlobShape = message_class("BlobShape")
ParamSpec = message_class("ParamSpec")
NetState = message_class("NetState")
NetStateRule = message_class("NetStateRule")
