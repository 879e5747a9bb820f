"""ONNX value names for the blobs of a Caffe net.

ONNX values are written once; a Caffe blob is rewritten by every in-place layer. The names:

* the value a blob holds at the end of the net (what Caffe's blob holds after a forward pass)
  is named after the blob: ``conv1`` is conv1 after its in-place ReLU;
* each earlier value of the blob is ``BLOB@LAYER``, the blob as LAYER wrote it: ``conv1@conv1``
  is the convolution's output before ReLU, as OpenCV's ``forward("conv1")`` gives it;
* a net input keeps its name; later values of an input blob are all ``BLOB@LAYER``;
* a name already taken gets ``#2``, ``#3``... (only when a net names blobs with ``@``).

An in-place layer that computes nothing at inference (Dropout) writes no new value: the blob keeps
its current one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TensorNames:
    inputs: dict[int, list[str]] = field(default_factory=dict)  # layer index -> its bottoms' values
    outputs: dict[int, list[str]] = field(default_factory=dict)  # layer index -> values it writes
    aliased: set[int] = field(default_factory=set)  # layers that write no new value
    graph_outputs: list[tuple[str, str, int]] = field(default_factory=list)  # (blob, value, layer index)

    def all_values(self) -> set[str]:
        return {name for names in self.outputs.values() for name in names}


def name_values(net, source_layers: set[int], identity: Callable[[object], bool]) -> TensorNames:
    """Plan the value names. ``source_layers``: indices of the layers that make the graph inputs
    (their tops are named after the blobs). ``identity(layer)``: a layer that computes nothing at
    inference; written in place, it is aliased instead of given a value."""
    layers = list(net.layer)
    input_blobs = {top for index in source_layers for top in layers[index].top}

    def aliased(index: int, layer) -> bool:
        return (
            index not in source_layers
            and identity(layer)
            and len(layer.top) == 1
            and list(layer.bottom) == list(layer.top)
            and layer.top[0] not in input_blobs
        )

    last_writer: dict[str, int] = {}
    for index, layer in enumerate(layers):
        if not aliased(index, layer):
            for top in layer.top:
                last_writer[top] = index
    reserved = set(last_writer) | input_blobs
    taken: set[str] = set()

    def unique(name: str, final: bool) -> str:
        candidate, count = name, 1
        while candidate in taken or (not final and candidate in reserved):
            count += 1
            candidate = f"{name}#{count}"
        taken.add(candidate)
        return candidate

    names = TensorNames()
    current: dict[str, str] = {}
    available: dict[str, int] = {}  # Caffe's "available blobs": produced and not consumed since
    for index, layer in enumerate(layers):
        names.inputs[index] = [current[bottom] for bottom in layer.bottom]
        for bottom in layer.bottom:
            available.pop(bottom, None)
        if aliased(index, layer):
            names.aliased.add(index)
            names.outputs[index] = [current[layer.top[0]]]
            available[layer.top[0]] = index
            continue
        written = []
        for top in layer.top:
            final = index in source_layers or (last_writer.get(top) == index and top not in input_blobs)
            name = unique(top, True) if final else unique(f"{top}@{layer.name}", False)
            current[top] = name
            written.append(name)
            available.pop(top, None)
            available[top] = index
        names.outputs[index] = written
    names.graph_outputs = [
        (blob, current[blob], index) for blob, index in available.items() if index not in source_layers
    ]
    return names
