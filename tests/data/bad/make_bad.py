"""Regenerate the hostile-input corpus beside this script, byte for byte, and its MANIFEST.json.

    python tests/data/bad/make_bad.py            # rewrite tests/data/bad/*
    python tests/data/bad/make_bad.py --out DIR  # write them under DIR instead

Every file is made from three tiny good models (``good.prototxt`` + ``good.caffemodel``, and
``good.onnx``, all written here too) by one deliberate damage: truncated, a bit flipped, a field
of the wrong protobuf type, a graph that is not a graph, NaN weights, absurd declared shapes,
external data that points outside the model's folder... Nothing is random but the few "random
bytes" files, drawn from numpy's legacy RandomState (its stream never changes between numpy
versions). IR version, opset and producer of the ONNX files are fixed, so the bytes do not
depend on the installed onnx.

MANIFEST.json lists one case per hostile file (some files serve two commands): ``file``,
``format`` (prototxt, caffemodel, onnx), ``command`` (the proto-rewrite command line; ``{bad}`` is
this folder, ``{out}`` an empty output folder), ``error`` (the ProtoRewriteError subclass the
CLI must report), ``exit_code``, ``message`` (a fragment of the message) and ``what`` (the damage).
``tests/hardening/test_corpus.py`` runs them all.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

IR_VERSION = 8
OPSET = 13

# ---------------------------------------------------------------------------------------------
# The good models everything else is made from

GOOD_PROTOTXT = """name: "good"
layer {
  name: "data"
  type: "Input"
  top: "data"
  input_param { shape { dim: 1 dim: 2 dim: 4 dim: 4 } }
}
layer {
  name: "conv"
  type: "Convolution"
  bottom: "data"
  top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 }
}
layer {
  name: "relu"
  type: "ReLU"
  bottom: "conv"
  top: "conv"
}
layer {
  name: "fc"
  type: "InnerProduct"
  bottom: "conv"
  top: "fc"
  inner_product_param { num_output: 5 }
}
layer {
  name: "prob"
  type: "Softmax"
  bottom: "fc"
  top: "prob"
}
"""

GOOD_SHAPES = {"conv": [(3, 2, 3, 3), (3,)], "fc": [(5, 12), (5,)]}


def good_values(shape, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    return (rng.standard_normal(shape) * 0.3).astype(np.float32)


def good_weights() -> dict[str, list[np.ndarray]]:
    return {
        name: [good_values(shape, 10 * i + j) for j, shape in enumerate(shapes)]
        for i, (name, shapes) in enumerate(GOOD_SHAPES.items())
    }


# ---------------------------------------------------------------------------------------------
# Protobuf wire format, by hand (the damaged files cannot be made with protobuf itself)


def varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # negative int32/int64 values are 10-byte varints
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint(number << 3 | wire_type)


def field_len(number: int, payload: bytes) -> bytes:
    return tag(number, 2) + varint(len(payload)) + payload


def field_varint(number: int, value: int) -> bytes:
    return tag(number, 0) + varint(value)


def field_str(number: int, text: str) -> bytes:
    return field_len(number, text.encode())


# caffe.proto field numbers
NET_NAME, NET_LAYERS_V1, NET_LAYER = 1, 2, 100
LAYER_NAME, LAYER_TYPE, LAYER_BLOBS = 1, 2, 7
V1_NAME, V1_TYPE, V1_BLOBS = 4, 5, 6
BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH = 1, 2, 3, 4
BLOB_DATA, BLOB_SHAPE, BLOB_DOUBLE_DATA = 5, 7, 8
SHAPE_DIM = 1
V1_TYPES = {"Convolution": 4, "InnerProduct": 14}


def blob(shape=None, values=None, *, legacy=None, doubles=None, data_wire=2) -> bytes:
    """A BlobProto: ``shape`` (dims), ``legacy`` (num, channels, height, width), packed float
    ``values`` (data_wire 2) or the same numbers as varints (data_wire 0: the wrong type)."""
    out = b""
    if legacy is not None:
        for number, value in zip((BLOB_NUM, BLOB_CHANNELS, BLOB_HEIGHT, BLOB_WIDTH), legacy):
            out += field_varint(number, value)
    if values is not None:
        raw = np.asarray(values, "<f4").tobytes()
        if data_wire == 2:
            out += field_len(BLOB_DATA, raw)
        else:
            out += b"".join(field_varint(BLOB_DATA, int(v)) for v in struct.unpack(f"<{len(raw) // 4}I", raw))
    if shape is not None:
        out += field_len(BLOB_SHAPE, b"".join(field_varint(SHAPE_DIM, d) for d in shape))
    if doubles is not None:
        out += field_len(BLOB_DOUBLE_DATA, np.asarray(doubles, "<f8").tobytes())
    return out


def blob_of(array: np.ndarray) -> bytes:
    return blob(array.shape, array.reshape(-1))


def layer_v2(name: str, kind: str, blobs: list[bytes]) -> bytes:
    return field_len(
        NET_LAYER,
        field_str(LAYER_NAME, name) + field_str(LAYER_TYPE, kind) + b"".join(field_len(LAYER_BLOBS, b) for b in blobs),
    )


def layer_v1(name: str, kind: str, blobs: list[bytes]) -> bytes:
    return field_len(
        NET_LAYERS_V1,
        field_str(V1_NAME, name)
        + field_varint(V1_TYPE, V1_TYPES[kind])
        + b"".join(field_len(V1_BLOBS, b) for b in blobs),
    )


def caffemodel(layers: dict[str, list[bytes]], *, layer=layer_v2, kinds=None) -> bytes:
    kinds = kinds or {"conv": "Convolution", "fc": "InnerProduct"}
    return field_str(NET_NAME, "good") + b"".join(
        layer(name, kinds.get(name, "Convolution"), blobs) for name, blobs in layers.items()
    )


def good_caffemodel(**replace: list[bytes]) -> bytes:
    layers = {name: [blob_of(a) for a in arrays] for name, arrays in good_weights().items()}
    layers.update(replace)
    return caffemodel(layers)


def flip(data: bytes, offset: int, bit: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 1 << bit
    return bytes(out)


def random_bytes(seed: int, size: int) -> bytes:
    return np.random.RandomState(seed).bytes(size)


# ---------------------------------------------------------------------------------------------
# ONNX


def onnx_model(*, nodes=None, initializers=None, inputs=None, outputs=None, opset=OPSET, graph_name="good"):
    from onnx import TensorProto, helper, numpy_helper

    weights = good_weights()
    if initializers is None:
        initializers = [
            numpy_helper.from_array(weights["conv"][0], "conv_w"),
            numpy_helper.from_array(weights["conv"][1], "conv_b"),
            numpy_helper.from_array(weights["fc"][0], "fc_w"),
            numpy_helper.from_array(weights["fc"][1], "fc_b"),
        ]
    if nodes is None:
        nodes = [
            helper.make_node("Conv", ["data", "conv_w", "conv_b"], ["conv"], name="conv", kernel_shape=[3, 3]),
            helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
            helper.make_node("Flatten", ["relu"], ["flat"], name="flatten", axis=1),
            helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["fc"], name="fc", transB=1),
            helper.make_node("Softmax", ["fc"], ["prob"], name="prob", axis=1),
        ]
    if inputs is None:
        inputs = [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 2, 4, 4])]
    if outputs is None:
        outputs = [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 5])]
    graph = helper.make_graph(nodes, graph_name, inputs, outputs, initializer=initializers)
    opsets = [helper.make_opsetid("", opset)] if opset is not None else []
    model = helper.make_model(graph, opset_imports=opsets, producer_name="make_bad", producer_version="1")
    model.ir_version = IR_VERSION
    return model


def serialize(model) -> bytes:
    return model.SerializeToString(deterministic=True)


def with_initializer(model, name: str, change):
    for tensor in model.graph.initializer:
        if tensor.name == name:
            change(tensor)
    return model


def external(model, name: str, location: str, offset: int | str = 0, length: int | str | None = None):
    """Move initializer ``name`` to external data (``location``, ``offset``, ``length``); returns
    its raw bytes."""
    from onnx import TensorProto

    for tensor in model.graph.initializer:
        if tensor.name == name:
            raw = tensor.raw_data
            tensor.ClearField("raw_data")
            tensor.data_location = TensorProto.EXTERNAL
            entries = [("location", location), ("offset", str(offset))]
            if length is not None:
                entries.append(("length", str(length)))
            for key, value in entries:
                entry = tensor.external_data.add()
                entry.key, entry.value = key, value
            return raw
    raise KeyError(name)


def nested_if(depth: int) -> bytes:
    """A model whose one node is an If whose then-branch is an If whose then-branch is...
    ``depth`` deep, written by hand (protobuf refuses to build messages that deep). The Ifs have
    no else-branch: the file is refused for its depth before that matters."""
    from onnx import TensorProto, helper

    leaf = serialize(
        helper.make_graph(
            [helper.make_node("Identity", ["data"], ["y0"])],
            "g0",
            [],
            [helper.make_tensor_value_info("y0", TensorProto.FLOAT, None)],
        )
    )
    graph = leaf
    for level in range(1, depth + 1):
        attributes = field_len(5, field_str(1, "then_branch") + field_len(6, graph) + field_varint(20, 5))
        node = field_str(1, "cond") + field_str(2, f"y{level}") + field_str(4, "If") + attributes
        graph = field_len(1, node) + field_str(2, f"g{level}") + field_len(12, field_str(1, f"y{level}"))
    inputs = b"".join(
        field_len(11, serialize(value))
        for value in (
            helper.make_tensor_value_info("cond", TensorProto.BOOL, []),
            helper.make_tensor_value_info("data", TensorProto.FLOAT, [1]),
        )
    )
    graph += inputs
    opset = field_varint(2, OPSET)
    return (
        field_varint(1, IR_VERSION)
        + field_str(2, "make_bad")
        + field_str(3, "1")
        + field_len(7, graph)
        + field_len(8, opset)
    )


# ---------------------------------------------------------------------------------------------
# The cases

CASES: list[dict] = []
FILES: dict[str, bytes] = {}
LINKS: dict[str, str] = {}


def add_file(name: str, data: bytes | str) -> None:
    FILES[name] = data.encode() if isinstance(data, str) else data


def case(
    file: str,
    fmt: str,
    command: str,
    error: str,
    message: str,
    what: str,
    exit_code: int = 2,
    data: bytes | str | None = None,
) -> None:
    if data is not None:
        add_file(file, data)
    CASES.append(
        {
            "file": file,
            "format": fmt,
            "command": command,
            "error": error,
            "exit_code": exit_code,
            "message": message,
            "what": what,
        }
    )


def convert_caffe(name: str, extra: str = "--no-weights") -> str:
    return f"convert {{bad}}/{name} {extra} -o {{out}}/converted.prototxt".replace("  ", " ")


def with_weights(name: str, command: str = "convert") -> str:
    if command == "export":
        return f"export {{bad}}/good.prototxt --weights {{bad}}/{name} -o {{out}}/exported.onnx"
    return f"convert {{bad}}/good.prototxt --weights {{bad}}/{name} -o {{out}}/converted.prototxt"


def convert_onnx(name: str) -> str:
    return f"convert {{bad}}/{name} -o {{out}}/converted.onnx"


def prototxt_cases() -> None:
    good = GOOD_PROTOTXT
    pt = "prototxt"
    case(
        "pt_truncated.prototxt",
        pt,
        convert_caffe("pt_truncated.prototxt"),
        "PrototxtSyntaxError",
        "invalid prototxt",
        "cut in the middle of a layer",
        data=good[: good.index("num_output: 5")],
    )
    utf8 = flip(good.encode(), good.index("Convolution"), 7)
    case(
        "pt_bitflip_utf8.prototxt",
        pt,
        convert_caffe("pt_bitflip_utf8.prototxt"),
        "InputFileError",
        "not UTF-8 text",
        "one bit flipped: an invalid UTF-8 byte",
        data=utf8,
    )
    brace = flip(good.encode(), good.index("{", good.index('name: "conv"') - 20), 1)
    case(
        "pt_bitflip_brace.prototxt",
        pt,
        "export {bad}/pt_bitflip_brace.prototxt -o {out}/exported.onnx",
        "PrototxtSyntaxError",
        "invalid prototxt",
        "one bit flipped: '{' becomes 'y'",
        data=brace,
    )
    case(
        "pt_nul_bytes.prototxt",
        pt,
        convert_caffe("pt_nul_bytes.prototxt"),
        "PrototxtSyntaxError",
        "invalid prototxt",
        "NUL bytes in the text",
        data=good.replace('name: "fc"', 'name: "fc"\x00\x00\x00'),
    )
    case(
        "pt_binary_garbage.prototxt",
        pt,
        convert_caffe("pt_binary_garbage.prototxt"),
        "InputFileError",
        "not UTF-8 text",
        "4 KB of random bytes",
        data=random_bytes(1, 4096),
    )
    cycle = good.replace('bottom: "data"\n  top: "conv"', 'bottom: "fc"\n  top: "conv"')
    case(
        "pt_cycle.prototxt",
        pt,
        convert_caffe("pt_cycle.prototxt"),
        "NetStructureError",
        "bottom 'fc' is not produced by any earlier layer",
        "a cycle: conv reads fc, which is computed from conv",
        data=cycle,
    )
    loop = good.replace('bottom: "data"\n  top: "conv"', 'bottom: "conv"\n  top: "conv"')
    case(
        "pt_self_loop.prototxt",
        pt,
        convert_caffe("pt_self_loop.prototxt"),
        "NetStructureError",
        "bottom 'conv' is not produced",
        "a layer reading its own output",
        data=loop,
    )
    v1_cycle = (
        'name: "v1"\ninput: "data"\ninput_dim: 1\ninput_dim: 2\ninput_dim: 4\ninput_dim: 4\n'
        'layers {\n  name: "fc1"\n  type: INNER_PRODUCT\n  bottom: "fc2"\n  top: "fc1"\n'
        "  inner_product_param { num_output: 4 }\n}\n"
        'layers {\n  name: "fc2"\n  type: INNER_PRODUCT\n  bottom: "fc1"\n  top: "fc2"\n'
        "  inner_product_param { num_output: 4 }\n}\n"
    )
    case(
        "pt_v1_cycle.prototxt",
        pt,
        convert_caffe("pt_v1_cycle.prototxt"),
        "NetStructureError",
        "bottom 'fc2' is not produced",
        "a V1 (layers) net with a cycle",
        data=v1_cycle,
    )
    dup_top = good.replace('top: "fc"', 'top: "data"').replace('bottom: "fc"', 'bottom: "data"')
    case(
        "pt_duplicate_top.prototxt",
        pt,
        convert_caffe("pt_duplicate_top.prototxt"),
        "NetStructureError",
        "top 'data' is already produced",
        "two layers write the same top",
        data=dup_top,
    )
    case(
        "pt_missing_bottom.prototxt",
        pt,
        "export {bad}/pt_missing_bottom.prototxt -o {out}/exported.onnx",
        "NetStructureError",
        "bottom 'pool5' is not produced",
        "a bottom no layer produces",
        data=good.replace('bottom: "conv"\n  top: "fc"', 'bottom: "pool5"\n  top: "fc"'),
    )
    case(
        "pt_duplicate_name.prototxt",
        pt,
        convert_caffe("pt_duplicate_name.prototxt"),
        "NetStructureError",
        "layer name 'conv' is used twice",
        "two layers named alike",
        data=good.replace('name: "relu"', 'name: "conv"'),
    )
    case(
        "pt_huge_input.prototxt",
        pt,
        convert_caffe("pt_huge_input.prototxt"),
        "TensorTooLargeError",
        "over the limit",
        "an input of 1000000 x 1000000 x 1000 x 1000 floats",
        data=good.replace("dim: 1 dim: 2 dim: 4 dim: 4", "dim: 1000000 dim: 1000000 dim: 1000 dim: 1000"),
    )
    legacy = (
        'name: "legacy"\ninput: "data"\ninput_dim: 100000\ninput_dim: 100000\ninput_dim: 100000\n'
        'input_dim: 100000\nlayer {\n  name: "relu"\n  type: "ReLU"\n  bottom: "data"\n  top: "data"\n}\n'
    )
    case(
        "pt_huge_input_dim.prototxt",
        pt,
        "inspect {bad}/pt_huge_input_dim.prototxt --no-weights",
        "TensorTooLargeError",
        "over the limit",
        "legacy input_dim: 10^20 values",
        data=legacy,
    )
    huge_fc = (
        good.replace("dim: 1 dim: 2 dim: 4 dim: 4", "dim: 1 dim: 1000 dim: 100 dim: 100")
        .replace("num_output: 5", "num_output: 100000")
        .replace("num_output: 3 kernel_size: 3", "num_output: 1000 kernel_size: 1")
    )
    case(
        "pt_huge_fc.prototxt",
        pt,
        "export {bad}/pt_huge_fc.prototxt -o {out}/exported.onnx",
        "TensorTooLargeError",
        "over the limit",
        "an InnerProduct whose weight would be 10^12 floats (random weights for export)",
        data=huge_fc,
    )
    python = (
        good.replace(
            'name: "relu"\n  type: "ReLU"',
            'name: "relu"\n  type: "Python"\n  python_param { module: "os_never_imported" layer: "L" }',
        )
        .replace(
            'bottom: "conv"\n  top: "conv"\n}\nlayer {\n  name: "fc"',
            'bottom: "conv"\n  top: "py"\n}\nlayer {\n  name: "fc"',
        )
        .replace('bottom: "conv"\n  top: "fc"', 'bottom: "py"\n  top: "fc"')
    )
    add_file("pt_python.prototxt", python)
    case(
        "pt_python.prototxt",
        pt,
        "export {bad}/pt_python.prototxt --weights {bad}/good.caffemodel -o {out}/exported.onnx",
        "UnsupportedLayerError",
        "Python layer (module 'os_never_imported')",
        "a Python layer (export)",
    )
    case(
        "pt_python.prototxt",
        pt,
        "convert {bad}/pt_python.prototxt --weights {bad}/good.caffemodel --validate -o {out}/converted.prototxt",
        "UnsupportedLayerError",
        "Python layer",
        "a Python layer (convert --validate)",
    )
    case(
        "pt_python.prototxt",
        pt,
        "convert {bad}/pt_python.prototxt --no-weights --only fc -o {out}/converted.prototxt",
        "RewriteRefused",
        "the shape of its input is unknown",
        "a Python layer before the FC asked for with --only",
    )
    case(
        "pt_python.prototxt",
        pt,
        "validate {bad}/pt_python.prototxt {bad}/good.prototxt --weights-a {bad}/good.caffemodel",
        "UnsupportedLayerError",
        "Python layer",
        "a Python layer (validate)",
    )
    case(
        "pt_deep_nesting.prototxt",
        pt,
        convert_caffe("pt_deep_nesting.prototxt"),
        "UnknownFieldError",
        "unknown field 'layer' in LayerParameter",
        "1000 nested 'layer {' blocks",
        data="layer { " * 1000 + "}" * 1000 + "\n",
    )
    case(
        "pt_deep_nesting_v0.prototxt",
        pt,
        convert_caffe("pt_deep_nesting_v0.prototxt"),
        "UnknownFieldError",
        "unknown field 'layers' in V0LayerParameter",
        "V1 'layers' nesting V0 'layer' nesting again, 500 deep",
        data="layers { layer { " * 500 + "} }" * 500 + "\n",
    )
    case(
        "pt_uint_overflow.prototxt",
        pt,
        convert_caffe("pt_uint_overflow.prototxt"),
        "PrototxtSyntaxError",
        "num_output",
        "num_output beyond uint32",
        data=good.replace("num_output: 5", "num_output: 99999999999"),
    )
    stride0 = good.replace("num_output: 3 kernel_size: 3", "num_output: 3 kernel_size: 3 stride: 0")
    case(
        "pt_stride_zero.prototxt",
        pt,
        convert_caffe("pt_stride_zero.prototxt"),
        "NetStructureError",
        "stride",
        "a convolution with stride 0",
        data=stride0,
    )
    pool0 = good.replace(
        'name: "relu"\n  type: "ReLU"\n  bottom: "conv"\n  top: "conv"',
        'name: "pool"\n  type: "Pooling"\n  bottom: "conv"\n  top: "conv"\n'
        "  pooling_param { pool: MAX kernel_size: 2 stride: 0 }",
    )
    case(
        "pt_pool_stride_zero.prototxt",
        pt,
        convert_caffe("pt_pool_stride_zero.prototxt"),
        "NetStructureError",
        "stride",
        "a pooling with stride 0",
        data=pool0,
    )
    group = good.replace("num_output: 3 kernel_size: 3", "num_output: 3 kernel_size: 3 group: 0")
    case(
        "pt_group_zero.prototxt",
        pt,
        convert_caffe("pt_group_zero.prototxt"),
        "NetStructureError",
        "group",
        "a convolution with group 0",
        data=group,
    )
    reshape = good.replace(
        'name: "relu"\n  type: "ReLU"\n  bottom: "conv"\n  top: "conv"',
        'name: "reshape"\n  type: "Reshape"\n  bottom: "conv"\n  top: "conv"\n'
        "  reshape_param { shape { dim: 0 dim: 7 } }",
    )
    case(
        "pt_reshape_count.prototxt",
        pt,
        convert_caffe("pt_reshape_count.prototxt"),
        "NetStructureError",
        "Reshape",
        "a Reshape that changes the element count",
        data=reshape,
    )
    case(
        "pt_no_bottom.prototxt",
        pt,
        convert_caffe("pt_no_bottom.prototxt"),
        "NetStructureError",
        "has no bottom",
        "an InnerProduct without a bottom (found by fuzzing)",
        data=good.replace('  bottom: "conv"\n  top: "fc"', '  top: "fc"'),
    )
    case(
        "pt_no_top.prototxt",
        pt,
        "export {bad}/pt_no_top.prototxt -o {out}/exported.onnx",
        "ExportError",
        "has 0 top(s)",
        "a ReLU without a top (export; found by fuzzing)",
        data=good.replace('  bottom: "conv"\n  top: "conv"\n}', '  bottom: "conv"\n}'),
    )
    case(
        "pt_empty.prototxt",
        pt,
        convert_caffe("pt_empty.prototxt"),
        "NetStructureError",
        "no layers",
        "an empty file",
        data=b"",
    )


def caffemodel_cases() -> None:
    cm = "caffemodel"
    good = good_caffemodel()
    conv_blob_offset = good.index(blob_of(good_weights()["conv"][0]))
    case(
        "cm_truncated.caffemodel",
        cm,
        with_weights("cm_truncated.caffemodel"),
        "CaffemodelError",
        "runs past the end",
        "cut in the middle of a blob's data",
        data=good[: conv_blob_offset + 40],
    )
    case(
        "cm_truncated_header.caffemodel",
        cm,
        with_weights("cm_truncated_header.caffemodel", "export"),
        "CaffemodelError",
        "not a valid caffemodel",
        "only the first 9 bytes",
        data=good[:9],
    )
    first_layer = len(field_str(NET_NAME, "good"))
    case(
        "cm_bitflip_wiretype.caffemodel",
        cm,
        with_weights("cm_bitflip_wiretype.caffemodel"),
        "CaffemodelError",
        "wire type",
        "one bit flipped in the first layer's tag: wire type 6",
        data=flip(good, first_layer, 2),
    )
    length_at = first_layer + len(tag(NET_LAYER, 2)) + 1  # the length varint's second byte
    case(
        "cm_bitflip_length.caffemodel",
        cm,
        with_weights("cm_bitflip_length.caffemodel"),
        "CaffemodelError",
        "runs past the end",
        "one bit flipped in a length: the layer runs past the file",
        data=flip(good, length_at, 5),
    )
    case(
        "cm_wrong_type_layer.caffemodel",
        cm,
        with_weights("cm_wrong_type_layer.caffemodel"),
        "CaffemodelError",
        "",
        "a varint where a layer message belongs",
        data=field_str(NET_NAME, "good") + field_varint(NET_LAYER, 7),
    )
    weights = good_weights()
    data_varints = good_caffemodel(
        conv=[blob(weights["conv"][0].shape, weights["conv"][0].reshape(-1), data_wire=0), blob_of(weights["conv"][1])]
    )
    case(
        "cm_wrong_type_data.caffemodel",
        cm,
        with_weights("cm_wrong_type_data.caffemodel"),
        "CaffemodelError",
        "wire type 0",
        "blob values as varints instead of packed floats",
        data=data_varints,
    )
    three = good_caffemodel(fc=[blob_of(a) for a in weights["fc"]] + [blob((5,), np.zeros(5))])
    case(
        "cm_blob_count.caffemodel",
        cm,
        with_weights("cm_blob_count.caffemodel"),
        "WeightsMismatchError",
        "holds 3 blobs",
        "an InnerProduct with 3 blobs",
        data=three,
    )
    shape = good_caffemodel(conv=[blob((3, 2, 2, 2), np.zeros(24)), blob_of(weights["conv"][1])])
    case(
        "cm_blob_shape.caffemodel",
        cm,
        with_weights("cm_blob_shape.caffemodel", "export"),
        "WeightsMismatchError",
        "expects (3, 2, 3, 3)",
        "a kernel of the wrong shape",
        data=shape,
    )
    short = good_caffemodel(fc=[blob((5, 12), np.zeros(59)), blob_of(weights["fc"][1])])
    case(
        "cm_short_data.caffemodel",
        cm,
        with_weights("cm_short_data.caffemodel"),
        "CaffemodelError",
        "needs 60",
        "59 values for a 5 x 12 shape",
        data=short,
    )
    odd = good_caffemodel(fc=[blob((5, 12)) + field_len(BLOB_DATA, bytes(241)), blob_of(weights["fc"][1])])
    case(
        "cm_odd_packed.caffemodel",
        cm,
        with_weights("cm_odd_packed.caffemodel"),
        "CaffemodelError",
        "not a whole number",
        "packed floats of 241 bytes",
        data=odd,
    )
    both = good_caffemodel(fc=[blob((5, 12), np.zeros(60), doubles=np.zeros(60)), blob_of(weights["fc"][1])])
    case(
        "cm_float_and_double.caffemodel",
        cm,
        with_weights("cm_float_and_double.caffemodel"),
        "CaffemodelError",
        "both float and double",
        "a blob with float and double data",
        data=both,
    )
    twice = good + layer_v2("conv", "Convolution", [blob_of(a) for a in weights["conv"]])
    case(
        "cm_duplicate_layer.caffemodel",
        cm,
        with_weights("cm_duplicate_layer.caffemodel"),
        "CaffemodelError",
        "share the name 'conv'",
        "two layers with weights named alike",
        data=twice,
    )
    nan = weights["fc"][0].copy()
    nan[2, 7] = np.nan
    case(
        "cm_nan.caffemodel",
        cm,
        with_weights("cm_nan.caffemodel"),
        "NonFiniteWeightsError",
        "blob 0 of layer 'fc' holds 1 NaN value (the first at index [2, 7])",
        "a NaN in the FC weight",
        data=good_caffemodel(fc=[blob_of(nan), blob_of(weights["fc"][1])]),
    )
    inf = weights["conv"][1].copy()
    inf[1] = -np.inf
    add_file("cm_inf.caffemodel", good_caffemodel(conv=[blob_of(weights["conv"][0]), blob_of(inf)]))
    case(
        "cm_inf.caffemodel",
        cm,
        with_weights("cm_inf.caffemodel", "export"),
        "NonFiniteWeightsError",
        "blob 1 of layer 'conv' holds 1 Inf value",
        "an Inf in the conv bias (export)",
    )
    case(
        "cm_inf.caffemodel",
        cm,
        "validate {bad}/good.prototxt {bad}/good.prototxt --weights-a {bad}/good.caffemodel "
        "--weights-b {bad}/cm_inf.caffemodel",
        "NonFiniteWeightsError",
        "Inf",
        "an Inf in the conv bias (validate)",
    )
    huge = good_caffemodel(fc=[blob((100000, 100000, 100000)), blob_of(weights["fc"][1])])
    case(
        "cm_huge_shape.caffemodel",
        cm,
        with_weights("cm_huge_shape.caffemodel"),
        "CaffemodelError",
        "needs 1000000000000000",
        "a blob declaring 10^15 values and holding none",
        data=huge,
    )
    overflow = good_caffemodel(fc=[blob((2**62, 4)), blob_of(weights["fc"][1])])
    case(
        "cm_overflow_shape.caffemodel",
        cm,
        with_weights("cm_overflow_shape.caffemodel"),
        "CaffemodelError",
        "needs",
        "a blob shape whose element count overflows 64 bits to 0",
        data=overflow,
    )
    negative = good_caffemodel(fc=[blob(legacy=(-1, 5, 12, 1)), blob_of(weights["fc"][1])])
    case(
        "cm_negative_legacy.caffemodel",
        cm,
        with_weights("cm_negative_legacy.caffemodel"),
        "CaffemodelError",
        "",
        "a legacy blob shape with num -1",
        data=negative,
    )
    # a convolution_param (field 106) holding groups nested 1000 deep: protobuf's recursion limit
    deep = tag(1, 3) * 1000 + tag(1, 4) * 1000
    nested = good_caffemodel()[:first_layer] + field_len(
        NET_LAYER, field_str(LAYER_NAME, "conv") + field_str(LAYER_TYPE, "Convolution") + field_len(106, deep)
    )
    case(
        "cm_deep_nesting.caffemodel",
        cm,
        with_weights("cm_deep_nesting.caffemodel"),
        "CaffemodelError",
        "",
        "a layer parameter with groups nested 1000 deep",
        data=nested,
    )
    negative_shape = good_caffemodel(fc=[blob_of(weights["fc"][0]), blob((-1, -5), np.zeros(5))])
    case(
        "cm_negative_shape.caffemodel",
        cm,
        with_weights("cm_negative_shape.caffemodel"),
        "CaffemodelError",
        "is not a shape",
        "a blob shape (-1, -5) whose element count, 5, matches its data",
        data=negative_shape,
    )
    case(
        "cm_random.caffemodel",
        cm,
        with_weights("cm_random.caffemodel"),
        "CaffemodelError",
        "",
        "4 KB of random bytes",
        data=random_bytes(2, 4096),
    )
    v1 = caffemodel(
        {name: [blob_of(a) for a in arrays] for name, arrays in weights.items()},
        layer=layer_v1,
        kinds={"conv": "Convolution", "fc": "InnerProduct"},
    )
    case(
        "cm_v1_truncated.caffemodel",
        cm,
        with_weights("cm_v1_truncated.caffemodel"),
        "CaffemodelError",
        "runs past the end",
        "a V1 (layers) caffemodel cut short",
        data=v1[: len(v1) - 30],
    )
    case(
        "good.caffemodel",
        cm,
        "convert {bad}/good.prototxt --weights {bad}/good.caffemodel -o {bad}/good.caffemodel",
        "OutputError",
        "is also an input",
        "the output would replace the input caffemodel",
    )
    case(
        "good.caffemodel",
        cm,
        "export {bad}/good.prototxt --weights {bad}/good.caffemodel -o {bad}/good.caffemodel",
        "UsageError",
        "input",
        "export's output would replace the caffemodel it reads",
    )


def onnx_cases() -> None:
    from onnx import TensorProto, helper, numpy_helper

    ox = "onnx"
    good = serialize(onnx_model())
    case(
        "ox_truncated.onnx",
        ox,
        convert_onnx("ox_truncated.onnx"),
        "InputFileError",
        "not a valid ONNX model",
        "cut in the middle",
        data=good[: len(good) // 2],
    )
    case(
        "ox_truncated_tail.onnx",
        ox,
        "inspect {bad}/ox_truncated_tail.onnx",
        "InputFileError",
        "not a valid ONNX model",
        "the last 3 bytes missing",
        data=good[:-3],
    )
    graph = serialize(onnx_model().graph)
    graph_record = tag(7, 2) + varint(len(graph)) + graph
    graph_tag_at = good.index(graph_record)
    case(
        "ox_bitflip_wiretype.onnx",
        ox,
        convert_onnx("ox_bitflip_wiretype.onnx"),
        "InputFileError",
        "not a valid ONNX model",
        "one bit flipped in the graph's tag: wire type 6",
        data=flip(good, graph_tag_at, 2),
    )
    case(
        "ox_bitflip_length.onnx",
        ox,
        convert_onnx("ox_bitflip_length.onnx"),
        "InputFileError",
        "not a valid ONNX model",
        "one bit flipped in the graph's length",
        data=flip(good, graph_tag_at + 1, 6),
    )
    wrong = good.replace(graph_record, tag(7, 0) + varint(12345))
    case(
        "ox_wrong_type_graph.onnx",
        ox,
        convert_onnx("ox_wrong_type_graph.onnx"),
        "InputFileError",
        "",
        "the graph field as a varint (wrong protobuf type)",
        data=wrong,
    )
    model = onnx_model()
    model.graph.node[0].input[0] = "prob"
    case(
        "ox_cycle.onnx",
        ox,
        convert_onnx("ox_cycle.onnx"),
        "InputFileError",
        "reads 'prob'",
        "a cycle: the first node reads the last node's output",
        data=serialize(model),
    )
    model = onnx_model()
    model.graph.node[3].input[0] = "pool5"
    case(
        "ox_dangling_input.onnx",
        ox,
        convert_onnx("ox_dangling_input.onnx"),
        "InputFileError",
        "reads 'pool5'",
        "a node input nothing defines",
        data=serialize(model),
    )
    model = onnx_model()
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "conv_b"))
    case(
        "ox_duplicate_initializer.onnx",
        ox,
        convert_onnx("ox_duplicate_initializer.onnx"),
        "InputFileError",
        "two initializers are named 'conv_b'",
        "two initializers named alike",
        data=serialize(model),
    )
    model = onnx_model()
    model.graph.node[1].output[0] = "conv"
    model.graph.node[2].input[0] = "conv"
    case(
        "ox_duplicate_output.onnx",
        ox,
        convert_onnx("ox_duplicate_output.onnx"),
        "InputFileError",
        "writes 'conv', which is already defined",
        "two nodes write the same tensor",
        data=serialize(model),
    )
    model = onnx_model()
    model.graph.input.append(helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 8, 8]))
    case(
        "ox_duplicate_input.onnx",
        ox,
        convert_onnx("ox_duplicate_input.onnx"),
        "InputFileError",
        "'data'",
        "two graph inputs named alike",
        data=serialize(model),
    )
    model = onnx_model()
    model.graph.output.append(helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 5]))
    case(
        "ox_output_not_produced.onnx",
        ox,
        convert_onnx("ox_output_not_produced.onnx"),
        "InputFileError",
        "graph output 'scores' is not produced",
        "a graph output no node produces",
        data=serialize(model),
    )
    model = onnx_model(opset=None)
    case(
        "ox_no_opset.onnx",
        ox,
        convert_onnx("ox_no_opset.onnx"),
        "InputFileError",
        "does not import the default ONNX operator set",
        "no opset import",
        data=serialize(model),
    )
    model = with_initializer(onnx_model(), "fc_b", lambda t: setattr(t, "data_type", 0))
    case(
        "ox_no_dtype.onnx",
        ox,
        convert_onnx("ox_no_dtype.onnx"),
        "InputFileError",
        "has no data type",
        "an initializer without a data type",
        data=serialize(model),
    )
    model = with_initializer(onnx_model(), "fc_b", lambda t: t.dims.__setitem__(0, -5))
    case(
        "ox_negative_dim.onnx",
        ox,
        convert_onnx("ox_negative_dim.onnx"),
        "InputFileError",
        "negative dimension",
        "an initializer with a negative dimension",
        data=serialize(model),
    )
    model = with_initializer(onnx_model(), "fc_w", lambda t: t.dims.__setitem__(0, 6))
    case(
        "ox_raw_size.onnx",
        ox,
        convert_onnx("ox_raw_size.onnx"),
        "InputFileError",
        "needs 288",
        "raw data of 240 bytes for a 6 x 12 float tensor",
        data=serialize(model),
    )
    model = onnx_model()
    short = TensorProto(name="fc_w", data_type=TensorProto.FLOAT, dims=[5, 12], float_data=[0.5] * 59)
    model.graph.initializer[2].CopyFrom(short)
    case(
        "ox_float_data_count.onnx",
        ox,
        convert_onnx("ox_float_data_count.onnx"),
        "InputFileError",
        "59 values in float_data",
        "59 float_data values for a 5 x 12 tensor",
        data=serialize(model),
    )
    model = with_initializer(onnx_model(), "fc_w", lambda t: (t.ClearField("dims"), t.dims.extend([10**9, 10**9])))
    case(
        "ox_huge_dims.onnx",
        ox,
        convert_onnx("ox_huge_dims.onnx"),
        "InputFileError",
        "needs",
        "an initializer declaring 10^18 floats with 240 bytes of data",
        data=serialize(model),
    )
    weights = good_weights()
    nan = weights["fc"][0].copy()
    nan[0, 3] = np.nan
    nan[4, 4] = np.inf
    model = with_initializer(onnx_model(), "fc_w", lambda t: t.CopyFrom(numpy_helper.from_array(nan, "fc_w")))
    case(
        "ox_nan.onnx",
        ox,
        convert_onnx("ox_nan.onnx"),
        "NonFiniteWeightsError",
        "initializer 'fc_w' holds 1 NaN and 1 Inf values (the first at index [0, 3])",
        "a NaN and an Inf in the FC weight",
        data=serialize(model),
    )
    inf = weights["conv"][1].copy()
    inf[0] = np.inf
    model = with_initializer(onnx_model(), "conv_b", lambda t: t.CopyFrom(numpy_helper.from_array(inf, "conv_b")))
    add_file("ox_inf.onnx", serialize(model))
    case(
        "ox_inf.onnx",
        ox,
        "validate {bad}/good.onnx {bad}/ox_inf.onnx",
        "NonFiniteWeightsError",
        "initializer 'conv_b' holds 1 Inf value",
        "an Inf in the conv bias (validate)",
    )
    model = onnx_model()
    constant = numpy_helper.from_array(np.array([0.0, np.nan, 0.0, 0.0, 0.0], np.float32), "shift")
    model.graph.node.insert(4, helper.make_node("Constant", [], ["shift"], name="shift", value=constant))
    model.graph.node.insert(5, helper.make_node("Add", ["fc", "shift"], ["fc_shifted"], name="add"))
    model.graph.node[6].input[0] = "fc_shifted"
    case(
        "ox_nan_constant.onnx",
        ox,
        convert_onnx("ox_nan_constant.onnx"),
        "NonFiniteWeightsError",
        "Constant node 'shift' holds 1 NaN value",
        "a NaN in a Constant node",
        data=serialize(model),
    )
    huge = [100000, 2, 100000, 100000]
    model = onnx_model(
        nodes=[helper.make_node("Relu", ["data"], ["prob"], name="relu")],
        initializers=[],
        inputs=[helper.make_tensor_value_info("data", TensorProto.FLOAT, huge)],
        outputs=[helper.make_tensor_value_info("prob", TensorProto.FLOAT, huge)],
    )
    case(
        "ox_huge_input.onnx",
        ox,
        "validate {bad}/ox_huge_input.onnx {bad}/ox_huge_input.onnx",
        "TensorTooLargeError",
        "over the limit",
        "a graph input of 2 x 10^15 floats (validate's random input)",
        data=serialize(model),
    )
    case(
        "ox_deep_nesting.onnx",
        ox,
        convert_onnx("ox_deep_nesting.onnx"),
        "InputFileError",
        "",
        "If subgraphs nested 120 deep",
        data=nested_if(120),
    )
    utf8 = good.replace(b"\x04prob\x12", b"\x04\xf0rob\x12")
    case(
        "ox_bad_utf8.onnx",
        ox,
        convert_onnx("ox_bad_utf8.onnx"),
        "InputFileError",
        "is not UTF-8 text",
        "a tensor name that is not UTF-8 (found by fuzzing)",
        data=utf8,
    )
    model = onnx_model()
    del model.graph.node[3].input[1:]
    case(
        "ox_gemm_arity.onnx",
        ox,
        convert_onnx("ox_gemm_arity.onnx"),
        "InputFileError",
        "node 'fc' (Gemm) is malformed: it has 1 inputs",
        "a Gemm with one input (found by fuzzing)",
        data=serialize(model),
    )
    model = onnx_model()
    model.graph.node[3].attribute.append(helper.make_attribute("alpha", "two"))
    case(
        "ox_gemm_attribute.onnx",
        ox,
        convert_onnx("ox_gemm_attribute.onnx"),
        "InputFileError",
        "attribute 'alpha' is of type STRING",
        "a Gemm whose alpha is a string (found by fuzzing)",
        data=serialize(model),
    )
    model = with_initializer(onnx_model(), "fc_b", lambda t: (t.ClearField("dims"), t.dims.extend([5] + [1] * 40)))
    case(
        "ox_rank.onnx",
        ox,
        convert_onnx("ox_rank.onnx"),
        "InputFileError",
        "has 41 dimensions",
        "an initializer of rank 41",
        data=serialize(model),
    )
    case(
        "ox_text.onnx",
        ox,
        convert_onnx("ox_text.onnx"),
        "InputFileError",
        "",
        "a prototxt renamed .onnx",
        data=GOOD_PROTOTXT,
    )
    case("ox_empty.onnx", ox, convert_onnx("ox_empty.onnx"), "InputFileError", "empty", "an empty file", data=b"")
    case(
        "ox_random.onnx",
        ox,
        convert_onnx("ox_random.onnx"),
        "InputFileError",
        "",
        "4 KB of random bytes",
        data=random_bytes(3, 4096),
    )
    case(
        "ox_zip.onnx",
        ox,
        convert_onnx("ox_zip.onnx"),
        "InputFileError",
        "",
        "a zip archive renamed .onnx",
        data=b"PK\x03\x04" + random_bytes(4, 200),
    )

    # external data
    def ext_case(
        name: str,
        location: str,
        message: str,
        what: str,
        *,
        offset=0,
        length=None,
        data_file=None,
        data: bytes | None = None,
        command=None,
    ) -> None:
        model = onnx_model()
        raw = external(model, "fc_w", location, offset, length)
        if data_file is not None:
            add_file(data_file, raw if data is None else data)
        case(name, ox, command or convert_onnx(name), "InputFileError", message, what, data=serialize(model))

    control = onnx_model()  # the good model with its FC weight in ox_ext_good.bin: not a case
    add_file("ox_ext_good.bin", external(control, "fc_w", "ox_ext_good.bin"))
    add_file("ox_ext_good.onnx", serialize(control))
    ext_case(
        "ox_ext_dotdot.onnx",
        "../bad/ox_ext_good.bin",
        "'../bad/ox_ext_good.bin'",
        "a location with '..' (even one that leads back into the folder)",
    )
    ext_case(
        "ox_ext_dotdot_outside.onnx",
        "../caffe/lenet.prototxt",
        "outside the model's folder",
        "a location with '..' leaving the folder",
    )
    ext_case("ox_ext_absolute.onnx", "/etc/hostname", "outside the model's folder", "an absolute location")
    LINKS["ox_ext_symlink.bin"] = "../caffe/lenet.prototxt"
    ext_case(
        "ox_ext_symlink.onnx",
        "ox_ext_symlink.bin",
        "outside the model's folder",
        "a location that is a symlink leaving the folder",
    )
    ext_case(
        "ox_ext_offset.onnx", "ox_ext_good.bin", "runs past the end", "an offset past the end of the file", offset=200
    )
    ext_case(
        "ox_ext_length.onnx",
        "ox_ext_short.bin",
        "runs past the end",
        "a length (and shape) longer than the data file",
        length=240,
        data_file="ox_ext_short.bin",
        data=bytes(100),
    )
    ext_case("ox_ext_negative_offset.onnx", "ox_ext_good.bin", "offset", "a negative offset", offset=-64)
    ext_case("ox_ext_bad_offset.onnx", "ox_ext_good.bin", "offset", "an offset that is not a number", offset="12abc")
    ext_case(
        "ox_ext_missing.onnx",
        "ox_ext_missing.bin",
        "not found",
        "a data file that is not there",
        command="inspect {bad}/ox_ext_missing.onnx",
    )
    add_file("good.onnx", good)
    case(
        "good.onnx",
        ox,
        "convert {bad}/good.onnx -o {bad}/good.onnx",
        "OutputError",
        "is also an input",
        "the output would replace the input model",
    )
    case(
        "good.onnx",
        ox,
        "diff {bad}/good.onnx {bad}/ox_nan.onnx -o {bad}/good.onnx",
        "UsageError",
        "input",
        "diff's report would replace an input model",
    )
    case(
        "good.onnx",
        ox,
        "validate {bad}/good.onnx {bad}/good.onnx --save-inputs {bad}/good.onnx",
        "UsageError",
        "input",
        "validate's saved inputs would replace an input model",
    )


def _npz(members: dict[str, bytes]) -> bytes:
    """An .npz (a zip of .npy members) with fixed timestamps: the same bytes on every run."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buffer.getvalue()


def _npy(array: np.ndarray | None = None, *, shape=None) -> bytes:
    """An .npy of ``array``; with ``shape``, its header declares that shape instead (forged)."""
    import io

    array = np.zeros((1, 2, 4, 4), np.float32) if array is None else array
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": array.dtype.str, "fortran_order": False, "shape": array.shape if shape is None else shape}
    )
    return header.getvalue() + array.tobytes()


def issue14_cases() -> None:
    """Silent results and unbounded reads (issue 14): each used to exit 0 or be read whole."""
    pt, cm, ox = "prototxt", "caffemodel", "onnx"
    inputs = 'name: "{name}"\ninput: "data"\ninput_dim: 1\ninput_dim: {channels}\ninput_dim: 4\ninput_dim: 4\n'
    case(
        "pt_all_train.prototxt",
        pt,
        convert_caffe("pt_all_train.prototxt"),
        "NetStructureError",
        "excluded in phase TEST",
        "every layer is include { phase: TRAIN }, read in phase TEST",
        data=inputs.format(name="train_only", channels=2)
        + 'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" include { phase: TRAIN }\n'
        "  inner_product_param { num_output: 3 } }\n",
    )
    case(
        "pt_negative_dim.prototxt",
        pt,
        convert_caffe("pt_negative_dim.prototxt"),
        "NetStructureError",
        "negative dimension",
        "input_dim: -2",
        data=inputs.format(name="negative", channels=-2)
        + 'layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }\n',
    )
    weights = good_weights()
    other = caffemodel(
        {"other_conv": [blob_of(a) for a in weights["conv"]], "other_fc": [blob_of(a) for a in weights["fc"]]},
        kinds={"other_conv": "Convolution", "other_fc": "InnerProduct"},
    )
    case(
        "cm_other_net.caffemodel",
        cm,
        with_weights("cm_other_net.caffemodel"),
        "WeightsMismatchError",
        "no layer with weights in the caffemodel matches",
        "the weights of another net: no layer name matches",
        data=other,
    )
    overflow = weights["conv"][0].astype(np.float64).reshape(-1)
    overflow[4] = 1e300
    case(
        "cm_double_overflow.caffemodel",
        cm,
        with_weights("cm_double_overflow.caffemodel", "export"),
        "NonFiniteWeightsError",
        "beyond float32's range",
        "a finite double (1e300) that is Inf as float32",
        data=good_caffemodel(conv=[blob(weights["conv"][0].shape, doubles=overflow), blob_of(weights["conv"][1])]),
    )
    case(
        "ox_opset1.onnx",
        ox,
        convert_onnx("ox_opset1.onnx"),
        "InputFileError",
        "opset 1, outside the range",
        "ONNX opset 1 (before the supported 7)",
        data=serialize(onnx_model(opset=1)),
    )
    case(
        "ox_opset99.onnx",
        ox,
        convert_onnx("ox_opset99.onnx"),
        "InputFileError",
        "opset 99, outside the range",
        "ONNX opset 99 (newer than any onnx)",
        data=serialize(onnx_model(opset=99)),
    )
    future = onnx_model()
    future.ir_version = 99
    case(
        "ox_ir99.onnx",
        ox,
        convert_onnx("ox_ir99.onnx"),
        "InputFileError",
        "IR version 99",
        "IR version 99 (newer than any onnx)",
        data=serialize(future),
    )
    validate = "validate {{bad}}/good.onnx {{bad}}/good.onnx --inputs {{bad}}/{}"
    case(
        "ox_inputs_npy.npz",
        ox,
        validate.format("ox_inputs_npy.npz"),
        "InputFileError",
        "is a .npy file",
        "validate --inputs: a .npy renamed .npz",
        data=_npy(),
    )
    whole = _npz({"data.npy": _npy()})
    case(
        "ox_inputs_truncated.npz",
        ox,
        validate.format("ox_inputs_truncated.npz"),
        "InputFileError",
        "not a complete .npz",
        "validate --inputs: the archive cut in half",
        data=whole[: len(whole) // 2],
    )
    case(
        "ox_inputs_forged.npz",
        ox,
        validate.format("ox_inputs_forged.npz"),
        "InputFileError",
        "declares shape (4398046511104)",
        "validate --inputs: a member declaring 2^42 values, holding 128",
        data=_npz({"data.npy": _npy(shape=(2**42,))}),
    )
    case(
        "ox_inputs_shape.npz",
        ox,
        validate.format("ox_inputs_shape.npz"),
        "InputFileError",
        "has shape (1, 2, 5, 5) in the file",
        "validate --inputs: the input of the wrong shape (blamed on the npz)",
        data=_npz({"data.npy": _npy(np.zeros((1, 2, 5, 5), np.float32))}),
    )


def build() -> None:
    FILES.clear()
    CASES.clear()
    LINKS.clear()
    add_file("good.prototxt", GOOD_PROTOTXT)
    add_file("good.caffemodel", good_caffemodel())
    prototxt_cases()
    caffemodel_cases()
    onnx_cases()
    issue14_cases()


def manifest() -> str:
    return json.dumps(CASES, indent=1) + "\n"


def write(out: Path) -> None:
    build()
    out.mkdir(parents=True, exist_ok=True)
    for name, data in FILES.items():
        (out / name).write_bytes(data)
    for name, target in LINKS.items():
        link = out / name
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(target, link)
    (out / "MANIFEST.json").write_text(manifest())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: beside this script)")
    args = parser.parse_args(argv)
    write(args.out)
    print(f"wrote {len(FILES)} files, {len(LINKS)} links and {len(CASES)} cases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
