"""A small ONNX graph builder: unique names, deduplicated initializers, opset-aware helpers.

Knows nothing about the format it is built from (the Caffe exporter uses it). Every value name
it hands out is unique among the names reserved up front (a Caffe net's blob names) and those it
made; constants with equal bytes are stored once.
Tensors of ``DEFERRED_BYTES`` or more are *deferred*: the initializer holds the name, type and
dims, and the numpy array (a view of the caffemodel, not a copy) is kept in ``deferred`` until
the model is materialised (``raw_data`` filled) or streamed to a file.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence

import numpy as np
from onnx import GraphProto, TensorProto, helper

INT64 = TensorProto.INT64
FLOAT = TensorProto.FLOAT

_SMALL_CONSTANT = 1 << 20  # bytes: constants up to this size are shared by value
DEFERRED_BYTES = 1024


def little_endian(array: np.ndarray) -> np.ndarray:
    """The array as ONNX's raw_data stores it (little-endian, C order): ``array`` itself when it
    already is, else a copy."""
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and sys.byteorder == "big"):
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array)


def little_endian_bytes(array: np.ndarray) -> bytes:
    """The array's bytes as ONNX's raw_data stores them."""
    return little_endian(array).tobytes()


class Graph:
    """Builds into ``proto`` (a GraphProto, typically ``model.graph``): tensors are created in
    place, so the weights are never copied from one message into another."""

    def __init__(self, opset: int, reserved: Iterable[str] = (), proto: GraphProto | None = None) -> None:
        self.opset = opset
        self.proto = proto if proto is not None else GraphProto()
        self._values: set[str] = set(reserved)
        self._node_names: set[str] = set()
        self._node_suffix: dict[str, int] = {}
        self._constants: dict[tuple, str] = {}
        self._shapes: dict[str, str] = {}
        self._arrays: dict[int, tuple[np.ndarray, str]] = {}
        self.deferred: dict[str, np.ndarray] = {}  # initializer name -> its data, not yet in the proto

    # -- names ----------------------------------------------------------------------------------

    def fresh(self, base: str) -> str:
        """A value name not used yet: ``base``, else ``base#2``, ``base#3``..."""
        name, count = base, 1
        while name in self._values:
            count += 1
            name = f"{base}#{count}"
        self._values.add(name)
        return name

    def claim(self, name: str) -> str:
        """Mark a planned (reserved) name as produced; it must be produced only once."""
        self._values.add(name)
        return name

    def _node_name(self, base: str) -> str:
        # The next suffix to try is remembered per base: a layer that makes 10 000 nodes (a Split
        # of 10 000 tops) would otherwise retry every earlier suffix for each new one.
        count = self._node_suffix.get(base, 1)
        name = base if count == 1 else f"{base}#{count}"
        while name in self._node_names:
            count += 1
            name = f"{base}#{count}"
        self._node_suffix[base] = count
        self._node_names.add(name)
        return name

    # -- nodes ----------------------------------------------------------------------------------

    def add(self, op: str, inputs: Sequence[str], outputs: Sequence[str], *, name: str, **attrs) -> list[str]:
        attrs = {key: value for key, value in attrs.items() if value is not None}
        node = helper.make_node(op, list(inputs), list(outputs), name=self._node_name(name), **attrs)
        self.proto.node.append(node)
        return list(outputs)

    def op(self, op: str, inputs: Sequence[str], *, name: str, out: str | None = None, **attrs) -> str:
        """One node with one output (``out``, or a fresh name from the node's name)."""
        output = out if out is not None else self.fresh(name)
        self.add(op, inputs, [output], name=name, **attrs)
        return output

    # -- constants and weights ------------------------------------------------------------------

    def weight(self, array: np.ndarray, name: str) -> str:
        """An initializer holding ``array`` (float32); the same array object is stored once."""
        known = self._arrays.get(id(array))
        if known is not None and known[0] is array:
            return known[1]
        data = array if array.dtype == np.float32 else array.astype(np.float32)
        tensor_name = self.fresh(name)
        self._add_tensor(data, tensor_name)
        self._arrays[id(array)] = (array, tensor_name)
        return tensor_name

    def const(self, values, dtype, name: str) -> str:
        """A constant initializer; small constants with the same dtype, shape and bytes are shared."""
        array = np.asarray(values, dtype=dtype)
        key = None
        if array.nbytes <= _SMALL_CONSTANT:
            key = (array.dtype.str, array.shape, array.tobytes())
            if key in self._constants:
                return self._constants[key]
        tensor_name = self.fresh(name)
        self._add_tensor(array, tensor_name)
        if key is not None:
            self._constants[key] = tensor_name
        return tensor_name

    def _add_tensor(self, array: np.ndarray, name: str) -> None:
        """A new initializer of ``self.proto``; a large one is deferred (no bytes copied yet)."""
        tensor = self.proto.initializer.add()
        tensor.name = name
        tensor.data_type = helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        if array.nbytes >= DEFERRED_BYTES:
            self.deferred[name] = np.ascontiguousarray(array)
        else:
            tensor.raw_data = little_endian_bytes(array)

    @property
    def initializers(self):
        return self.proto.initializer

    def ints(self, values: Sequence[int], name: str) -> str:
        return self.const(list(values), np.int64, name)

    def floats(self, values, name: str) -> str:
        return self.const(values, np.float32, name)

    # -- opset-aware helpers --------------------------------------------------------------------

    def shape_of(self, x: str, name: str) -> str:
        if x not in self._shapes:
            self._shapes[x] = self.op("Shape", [x], name=f"{name}/shape")
        return self._shapes[x]

    def dims_of(self, x: str, axes: Sequence[int], name: str) -> str:
        """1-D int64 tensor of ``x``'s dims at ``axes``, read at run time."""
        return self.op(
            "Gather", [self.shape_of(x, name), self.ints(list(axes), f"{name}/axes")], name=f"{name}/dims", axis=0
        )

    def unsqueeze(self, x: str, axes: Sequence[int], *, name: str, out: str | None = None) -> str:
        if self.opset >= 13:
            return self.op("Unsqueeze", [x, self.ints(axes, f"{name}/axes")], name=name, out=out)
        return self.op("Unsqueeze", [x], name=name, out=out, axes=list(axes))

    def squeeze(self, x: str, axes: Sequence[int], *, name: str, out: str | None = None) -> str:
        if self.opset >= 13:
            return self.op("Squeeze", [x, self.ints(axes, f"{name}/axes")], name=name, out=out)
        return self.op("Squeeze", [x], name=name, out=out, axes=list(axes))

    def reduce(
        self, op: str, x: str, axes: Sequence[int], *, name: str, keepdims: bool = True, out: str | None = None
    ) -> str:
        """ReduceSum / ReduceMean / ReduceMax over ``axes`` (non-empty)."""
        axes_as_input = self.opset >= (13 if op == "ReduceSum" else 18)
        if axes_as_input:
            return self.op(op, [x, self.ints(axes, f"{name}/axes")], name=name, out=out, keepdims=int(keepdims))
        return self.op(op, [x], name=name, out=out, axes=list(axes), keepdims=int(keepdims))

    def split(self, x: str, sizes: Sequence[int], axis: int, outputs: Sequence[str], *, name: str) -> list[str]:
        if self.opset >= 13:
            return self.add("Split", [x, self.ints(sizes, f"{name}/sizes")], outputs, name=name, axis=axis)
        return self.add("Split", [x], outputs, name=name, axis=axis, split=list(sizes))

    def slice(self, x: str, starts, ends, axes: Sequence[int], *, name: str, out: str | None = None) -> str:
        """``starts``/``ends``: lists of ints, or names of 1-D int64 tensors."""
        starts = starts if isinstance(starts, str) else self.ints(starts, f"{name}/starts")
        ends = ends if isinstance(ends, str) else self.ints(ends, f"{name}/ends")
        return self.op("Slice", [x, starts, ends, self.ints(axes, f"{name}/axes")], name=name, out=out)

    def pad(self, x: str, pads: Sequence[int], value: float, *, name: str, out: str | None = None) -> str:
        """Constant padding; ``pads`` as ONNX orders them (all begins, then all ends)."""
        return self.op(
            "Pad",
            [x, self.ints(pads, f"{name}/pads"), self.floats(value, f"{name}/value")],
            name=name,
            out=out,
            mode="constant",
        )
