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
import os

import numpy as np

FULL_BYTES = 1 << 20
STEP_BYTES = 1 << 20
WINDOW_BYTES = 4096
PREFIX = "blake2b-sampled:"


def _windows(size: int):
    """(offset, length) of the bytes sampled from data of ``size`` bytes."""
    if size <= FULL_BYTES:
        return [(0, size)]
    return [(start, WINDOW_BYTES) for start in range(0, size, STEP_BYTES)] + [(size - WINDOW_BYTES, WINDOW_BYTES)]


def _sampled(digest, data) -> None:
    """Hash the sampled windows of ``data`` (an array or memoryview). Data mapped from an input
    file is read with pread: touching a mapping would map whole (huge) pages into the process."""
    from proto_rewrite.filecopy import MappedFile, file_span

    view = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else None
    size = data.nbytes
    digest.update(size.to_bytes(8, "little"))
    span = file_span(data)
    if span is not None and isinstance(span.source, MappedFile) and size > FULL_BYTES:
        for offset, length in _windows(size):
            digest.update(os.pread(span.source.fd, length, span.offset + offset))
        return
    if view is None:
        view = memoryview(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
    for offset, length in _windows(size):
        digest.update(view[offset : offset + length])


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
            _sampled(digest, np.frombuffer(buffer, np.uint8, count=end - start, offset=start))
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
            _sampled(digest, array)
    return PREFIX + digest.hexdigest()
