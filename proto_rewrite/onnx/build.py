"""Carry out a :class:`~proto_rewrite.onnx.planner.Program`: the new graph, nothing else.

The new model shares every untouched initializer object with the old one (their bytes are
copied as they are when saved); the changed ones are lazy :class:`DerivedTensor` objects. The
node list keeps the original order, with the Convs in place of the FCs and the inserted nodes
beside their neighbours, then a stable topological sort settles what moved (a pool after its
classifier). Value infos are dropped and inferred again.
"""

from __future__ import annotations

import heapq

import onnx
from onnx import helper

from proto_rewrite.errors import InternalError
from proto_rewrite.onnx.graph import subgraph_reads
from proto_rewrite.onnx.planner import ConvStep, Program
from proto_rewrite.onnx.shapes import checkable_model, clean_type, infer


def build_model(model, program: Program):
    from proto_rewrite.onnx.model import OnnxModel

    view = program.view
    proto = onnx.ModelProto()
    proto.CopyFrom(model.proto)
    graph = proto.graph

    nodes = _new_nodes(program)
    del graph.node[:]
    graph.node.extend(_topological(nodes, _available(graph, model, program)))

    initializers = {}
    for name, tensor in model.initializers.items():
        if name in program.removed_initializers:
            continue
        initializers[name] = program.new_tensors.get(name, tensor)
    for name, tensor in program.new_tensors.items():
        if name not in initializers:
            initializers[name] = tensor

    _update_inputs(graph, program, initializers, view.ir_version)
    had_value_info = len(graph.value_info) > 0
    del graph.value_info[:]
    for output in graph.output:
        if output.name in program.map_outputs or output.name in program.relaxed_outputs:
            output.type.tensor_type.ClearField("shape")

    new = OnnxModel(proto, initializers, None, model.base_dir, [])
    inferred, note = infer(checkable_model(new))
    if note:
        new.diagnostics.append(_note(note))
    _take_inferred(graph, inferred.graph, program, had_value_info, set(initializers))
    return new


def _new_nodes(program: Program) -> list[tuple[float, onnx.NodeProto]]:
    view = program.view
    replaced = program.replaced
    dropped = program.removed | program.folded
    renamed_nodes = {index for index, _ in program.input_renames} | {index for index, _ in program.output_renames}
    nodes = []
    for index, node in enumerate(view.nodes):
        if index in replaced:
            nodes.append((index, _conv(node, replaced[index])))
            continue
        if index in dropped:
            continue
        if index in renamed_nodes or index in program.moved_pools or index in program.node_updates:
            copy = onnx.NodeProto()
            copy.CopyFrom(node)
            _update(copy, program.node_updates.get(index))
            for (reader, pos), name in program.input_renames.items():
                if reader == index:
                    copy.input[pos] = name
            for (producer, pos), name in program.output_renames.items():
                if producer == index:
                    copy.output[pos] = name
            if index in program.moved_pools:  # whatever pooled globally before, a GlobalAveragePool now
                source, target = program.moved_pools[index]
                copy = helper.make_node("GlobalAveragePool", [source], [target], name=node.name)
            node = copy
        nodes.append((index, node))
    nodes.extend(program.inserted)
    return nodes


def _update(node: onnx.NodeProto, update: dict | None) -> None:
    """A layout rule's changes: another op (Identity), attributes set, inputs set (or added)."""
    if not update:
        return
    if update.get("op_type") == "Identity":
        keep_input, keep_output = node.input[0], node.output[0]
        node.op_type = "Identity"
        del node.attribute[:]
        del node.input[:]
        del node.output[:]
        node.input.append(keep_input)
        node.output.append(keep_output)
    for name, value in sorted(update.get("attrs", {}).items()):
        for position, attr in enumerate(node.attribute):
            if attr.name == name:
                del node.attribute[position]
                break
        node.attribute.append(helper.make_attribute(name, value))
    for position, name in sorted(update.get("inputs", {}).items()):
        while len(node.input) <= position:
            node.input.append("")
        node.input[position] = name


def _conv(fc: onnx.NodeProto, step: ConvStep) -> onnx.NodeProto:
    inputs = [step.input, step.weight_name] + ([step.bias_name] if step.bias_name else [])
    conv = helper.make_node("Conv", inputs, [step.output], name=step.name, kernel_shape=list(step.match.kernel))
    if fc.doc_string:
        conv.doc_string = fc.doc_string
    return conv


def _available(graph, model, program: Program) -> set[str]:
    return {vi.name for vi in graph.input} | set(model.initializers) | set(program.new_tensors) | {""}


def _topological(nodes: list[tuple[float, onnx.NodeProto]], available: set[str]) -> list[onnx.NodeProto]:
    """Kahn's algorithm, taking the ready node with the smallest position first (stable)."""
    order = sorted(range(len(nodes)), key=lambda i: nodes[i][0])
    producer = {}
    for i in order:
        for name in nodes[i][1].output:
            producer[name] = i
    waiting = {}
    readers: dict[int, list[int]] = {i: [] for i in order}
    for i in order:
        node = nodes[i][1]
        needs = {
            producer[name]
            for name in list(node.input) + sorted(subgraph_reads(node))
            if name not in available and name in producer
        }
        needs.discard(i)
        waiting[i] = len(needs)
        for j in needs:
            readers[j].append(i)
    ready = [(nodes[i][0], i) for i in order if waiting[i] == 0]
    heapq.heapify(ready)
    result = []
    while ready:
        _, i = heapq.heappop(ready)
        result.append(nodes[i][1])
        for j in readers[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, (nodes[j][0], j))
    if len(result) != len(nodes):
        raise InternalError("the rewritten graph has a cycle")
    return result


def _update_inputs(graph, program: Program, initializers: dict, ir_version: int) -> None:
    """Resized inputs; and, where initializers are listed as inputs (IR < 4), their new shapes."""
    listed = {vi.name: vi for vi in graph.input}
    for name, axes in program.resized_inputs.items():
        dims = listed[name].type.tensor_type.shape.dim
        for dim, param in ((dims[position], param) for position, param in axes):
            if not (dim.HasField("dim_param") and dim.dim_param == param):
                dim.Clear()
                dim.dim_param = param
    keep = [vi for vi in graph.input if vi.name not in program.removed_initializers]
    if len(keep) != len(graph.input):
        del graph.input[:]
        graph.input.extend(keep)
        listed = {vi.name: vi for vi in graph.input}
    for name, tensor in program.new_tensors.items():
        if name in listed and name not in program.removed_initializers:
            value = helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims))
            listed[name].type.CopyFrom(value.type)
        elif name not in listed and ir_version < 4:
            graph.input.append(helper.make_tensor_value_info(name, tensor.data_type, list(tensor.dims)))


def _take_inferred(graph, inferred, program: Program, had_value_info: bool, initializers: set[str]) -> None:
    outputs = {vi.name for vi in graph.output}
    inputs = {vi.name for vi in graph.input}
    if had_value_info:
        for value in inferred.value_info:
            if value.name in outputs or value.name in inputs or value.name in initializers:
                continue
            copy = graph.value_info.add()
            copy.CopyFrom(value)
            clean_type(copy.type)
    found = {vi.name: vi for vi in inferred.output}
    for output in graph.output:
        if (output.name in program.map_outputs or output.name in program.relaxed_outputs) and output.name in found:
            output.type.CopyFrom(found[output.name].type)
            clean_type(output.type)
            _name_map_dims(output)


def _name_map_dims(output) -> None:
    """A score map's h and w that inference left unknown get names, so the declared shape is 4-D."""
    tensor_type = output.type.tensor_type
    if not tensor_type.HasField("shape") or len(tensor_type.shape.dim) != 4:
        return
    for dim, what in zip(tensor_type.shape.dim[2:], ("height", "width")):
        if not dim.HasField("dim_value") and not dim.dim_param:
            dim.dim_param = f"{output.name}_{what}"


def _note(text: str):
    from proto_rewrite.diagnostics import Diagnostic

    return Diagnostic("warning", text)
