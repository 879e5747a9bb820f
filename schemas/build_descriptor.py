"""Compile schemas/caffe.proto into the descriptor set the package ships.

    python schemas/build_descriptor.py          # rewrite proto_rewrite/caffe/caffe_descriptor.pb
    python schemas/build_descriptor.py --check  # exit 1 if the committed file is out of date

Needs grpcio-tools (part of the ``test`` extra), which bundles protoc.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO = ROOT / "schemas" / "caffe.proto"
DESCRIPTOR = ROOT / "proto_rewrite" / "caffe" / "caffe_descriptor.pb"


def compile_descriptor(proto: Path = PROTO) -> bytes:
    """Serialized FileDescriptorSet of ``proto`` (no source info), as protoc writes it."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "caffe.pb"
        code = protoc.main(["protoc", f"-I{proto.parent}", f"--descriptor_set_out={out}", str(proto)])
        if code != 0:
            raise RuntimeError(f"protoc failed on {proto} (exit {code})")
        return out.read_bytes()


def same_descriptor(a: bytes, b: bytes) -> bool:
    """Equal as descriptors (protoc versions may order bytes differently)."""
    from google.protobuf import descriptor_pb2

    return descriptor_pb2.FileDescriptorSet.FromString(a) == descriptor_pb2.FileDescriptorSet.FromString(b)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    built = compile_descriptor()
    if args.check:
        same = DESCRIPTOR.is_file() and same_descriptor(DESCRIPTOR.read_bytes(), built)
        print("up to date" if same else f"{DESCRIPTOR} is out of date: run python schemas/build_descriptor.py")
        return 0 if same else 1
    DESCRIPTOR.write_bytes(built)
    print(f"wrote {DESCRIPTOR} ({len(built)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
