"""Caffe net editing for the FC rewrite: the steps of a plan (an edit, an InnerProduct turned
into its Convolution) executed on a ``NetParameter``, and the small net queries the planner and
the apply step share. Works on the net structure only; weights are the caller's."""

from __future__ import annotations

from proto_rewrite.caffe.schema import schema_of
from proto_rewrite.rewrite_plan import FcRewrite, GraphEdit


def apply_edit(net, edit: GraphEdit) -> None:
    if edit.action == "remove":
        index, _ = find(net, edit.name)
        del net.layer[index]
        rename_from(net, index, edit.outputs[0], edit.inputs[0])
    elif edit.action == "insert":
        layer = schema_of(net).LayerParameter(
            name=edit.name, type=edit.op, bottom=list(edit.inputs), top=list(edit.outputs)
        )
        if edit.op == "Reshape":
            layer.reshape_param.shape.dim.extend(edit.shape)
        elif edit.op == "Pooling":
            layer.pooling_param.pool = layer.pooling_param.MAX if edit.method == "max" else layer.pooling_param.AVE
            layer.pooling_param.global_pooling = True
        insert(net, 0 if edit.after is None else find(net, edit.after)[0] + 1, layer)
    elif edit.action == "rename":
        old, new = edit.inputs[0], edit.outputs[0]
        for name in edit.layers:
            _, layer = find(net, name)
            layer.bottom[:] = [new if b == old else b for b in layer.bottom]
            layer.top[:] = [new if t == old else t for t in layer.top]
    elif edit.action == "resize-input":
        _, layer = find(net, edit.inputs[0])
        shapes = layer.input_param.shape
        target = shapes[list(layer.top).index(edit.name)] if len(shapes) > 1 else shapes[0]
        del target.dim[:]
        target.dim.extend(edit.shape)
    else:
        raise ValueError(f"unknown edit {edit.action!r}")


def convert_layer(net, rewrite: FcRewrite) -> None:
    """Replace the InnerProduct by its Convolution, keeping everything else it carries (param
    multipliers, phase rules, loss weights...)."""
    index, layer = find(net, rewrite.name)
    conv = type(layer)()
    conv.CopyFrom(layer)
    conv.ClearField("inner_product_param")
    conv.name = rewrite.new_name
    conv.type = "Convolution"
    conv.bottom[:] = [rewrite.input]
    ip, cp = layer.inner_product_param, conv.convolution_param
    cp.num_output = ip.num_output
    if ip.HasField("bias_term"):
        cp.bias_term = ip.bias_term
    for filler in ("weight_filler", "bias_filler"):
        if ip.HasField(filler):
            getattr(cp, filler).CopyFrom(getattr(ip, filler))
    kernel_h, kernel_w = rewrite.kernel
    if kernel_h == kernel_w:
        cp.kernel_size.append(kernel_h)
    else:
        cp.kernel_h, cp.kernel_w = kernel_h, kernel_w
    net.layer[index].CopyFrom(conv)


def copy_net(net):
    copy = type(net)()
    copy.CopyFrom(net)
    return copy


def net_up_to(net, name: str):
    """A copy of ``net`` with the layers up to and including ``name``."""
    index, _ = find(net, name)
    head = type(net)()
    head.layer.extend(net.layer[: index + 1])
    return head


def find(net, name: str):
    for index, layer in enumerate(net.layer):
        if layer.name == name:
            return index, layer
    raise KeyError(name)


def insert(net, index: int, layer) -> None:
    layers = list(net.layer)
    copies = []
    for existing in layers[index:]:
        copy = type(existing)()
        copy.CopyFrom(existing)
        copies.append(copy)
    del net.layer[index:]
    net.layer.add().CopyFrom(layer)
    for copy in copies:
        net.layer.add().CopyFrom(copy)


def producer(net, before: int, blob: str) -> int | None:
    """Index of the last layer before ``before`` with ``blob`` as a top, not in place."""
    for index in range(before - 1, -1, -1):
        layer = net.layer[index]
        if blob in layer.top and blob not in layer.bottom:
            return index
    return None


def last_in_place(net, index: int, blob: str) -> int:
    """Index of the last layer after ``index`` that works in place on ``blob`` (or ``index``)."""
    last = index
    for later in range(index + 1, len(net.layer)):
        layer = net.layer[later]
        if in_place_on(layer, blob):
            last = later
        elif blob in layer.top:
            break
    return last


def in_place_on(layer, blob: str) -> bool:
    return list(layer.bottom) == [blob] and list(layer.top) == [blob]


def rename_from(net, start: int, old: str, new: str) -> None:
    """Rename blob ``old`` to ``new`` in every layer from ``start`` on."""
    for layer in net.layer[start:]:
        layer.bottom[:] = [new if b == old else b for b in layer.bottom]
        layer.top[:] = [new if t == old else t for t in layer.top]


def net_outputs(net) -> list[str]:
    consumed = {b for layer in net.layer for b in layer.bottom}
    outputs = []
    for layer in net.layer:
        for top in layer.top:
            if top not in consumed and top not in outputs:
                outputs.append(top)
    return outputs


def source_shapes(net, shapes) -> dict:
    """Top -> shape as the layers without bottoms (Input, data) make them: not the blob's shape at
    the end of the net, which an in-place layer (an InnerProduct with top == bottom) changes."""
    found = {}
    for layer in net.layer:
        if not layer.bottom:
            for top, shape in zip(layer.top, shapes.tops.get(layer.name, [])):
                found.setdefault(top, shape)
    return found


def input_blobs(net) -> list[str]:
    return [top for layer in net.layer if layer.type == "Input" for top in layer.top]


def input_layer_shapes(layer):
    shapes = [tuple(s.dim) for s in layer.input_param.shape]
    if len(shapes) == 1:
        return shapes * len(layer.top)
    return shapes + [None] * (len(layer.top) - len(shapes))
