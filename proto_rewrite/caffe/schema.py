"""The Caffe protobuf schema, as message classes built at import time.

``schemas/caffe.proto`` (BVLC Caffe plus the common forks) is compiled once into a serialized
``FileDescriptorSet`` that ships in the package (``caffe_descriptor.pb``). Building the classes
from it at import time, instead of shipping protoc gencode, keeps the package working with every
protobuf runtime from 4.25 to 7.x: gencode from a recent protoc refuses older runtimes.

The classes live in a private descriptor pool, so they never clash with another package that
registers its own ``caffe.proto`` in protobuf's default pool.

Rebuild the descriptor after editing the .proto with ``python schemas/build_descriptor.py``.
"""

from __future__ import annotations

from importlib import resources

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

DESCRIPTOR_RESOURCE = "caffe_descriptor.pb"
PACKAGE = "caffe"


def _load_pool() -> descriptor_pool.DescriptorPool:
    data = resources.files(__package__).joinpath(DESCRIPTOR_RESOURCE).read_bytes()
    file_set = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for file_proto in file_set.file:
        pool.Add(file_proto)
    return pool


POOL = _load_pool()


def message_class(name: str) -> type:
    """The message class for ``caffe.<name>``, e.g. ``message_class("NetParameter")``."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


def message_names() -> list[str]:
    """Every top-level message name in the schema."""
    file_desc = POOL.FindFileByName("caffe.proto")
    return sorted(file_desc.message_types_by_name)


NetParameter = message_class("NetParameter")
LayerParameter = message_class("LayerParameter")
V1LayerParameter = message_class("V1LayerParameter")
V0LayerParameter = message_class("V0LayerParameter")
BlobProto = message_class("BlobProto")
BlobShape = message_class("BlobShape")
ParamSpec = message_class("ParamSpec")
NetState = message_class("NetState")
NetStateRule = message_class("NetStateRule")
