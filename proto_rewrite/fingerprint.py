"""A model's fingerprint: what a plan records of the model it was made from.

The fingerprint is a BLAKE2b digest of the model's structure (the ONNX graph without its
initializers' data; the Caffe net as deterministic protobuf) and of each weight's name, type,
shape and data. The data is sampled so the digest stays cheap on large models while streaming:
weights up to ``FULL_BYTES`` are hashed whole, larger ones by the first ``WINDOW_BYTES`` of every
``STEP_BYTES`` (and their last bytes), reading a small part of the mapped file. It tells another
model, another version of the same model or a changed weight apart; it is not a cryptographic
seal against someone who edits the unsampled bytes on purpose.
"""

from __future__ import annotations

import hashlib

import numpy as np

FULL_BYTES = 1 << 20
STEP_BYTES = 1 << 20
WINDOW_BYTES = 4096
PREFIX = "blake2b-sampled:"


def _sampled(digest, data: memoryview) -> None:
    size = data.nbytes
    digest.update(size.to_bytes(8, "little"))
    if size <= FULL_BYTES:
        digest.update(data)
        return
    for start in range(0, size, STEP_BYTES):
        digest.update(data[start:start + WINDOW_BYTES])
    digest.update(data[size - WINDOW_BYTES:])


def _bytes_view(chunks) -> memoryview:
    parts = [memoryview(chunk).cast("B") for chunk in chunks]
    if len(parts) == 1:
        return parts[0]
    return memoryview(b"".join(parts))


def onnx_fingerprint(model) -> str:
    """The fingerprint of an :class:`~proto_rewrite.onnx.model.OnnxModel`."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(model.proto.SerializeToString(deterministic=True))
    for name in sorted(model.initializers):
        tensor = model.initializers[name]
        digest.update(f"{name}|{tensor.data_type}|{list(tensor.dims)}|".encode())
        span = getattr(tensor, "_raw_span", None)
        found = span() if span is not None else None
        if found is not None:
            buffer, start, end = found
            _sampled(digest, memoryview(buffer)[start:end])
        else:
            _sampled(digest, _bytes_view(tensor.data_chunks()))
    return PREFIX + digest.hexdigest()


def caffe_fingerprint(model) -> str:
    """The fingerprint of a :class:`~proto_rewrite.caffe.model.CaffeModel`."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(model.net.SerializeToString(deterministic=True))
    for name in sorted(model.weights):
        for index, blob in enumerate(model.weights[name]):
            array = np.asarray(blob)
            digest.update(f"{name}|{index}|{array.dtype.str}|{list(array.shape)}|".encode())
            flat = array if array.flags.c_contiguous else np.ascontiguousarray(array)
            _sampled(digest, memoryview(flat.reshape(-1).view(np.uint8)))
    return PREFIX + digest.hexdigest()
