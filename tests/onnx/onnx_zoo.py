"""Small ONNX models, one per FC pattern and per skip reason, built with onnx.helper.

Each builder takes the opset and the float dtype and returns a ModelProto with random (seeded)
weights. The feature extractor is a 3x3 Conv, so the maps are small and the numbers meaningful.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite.onnx.shapes import data_prop_is_safe

ELEM = {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16, np.float64: TensorProto.DOUBLE}


def ir_for(opset: int) -> int:
    return max(3, helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))


class Net:
    """A tiny graph builder: weights, constants and nodes, in order."""

    def __init__(self, opset: int = 13, dtype=np.float32, seed: int = 0) -> None:
        self.opset = opset
        self.dtype = dtype
        self.elem = ELEM[dtype]
        self.rng = np.random.RandomState(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.count = 0

    def weight(self, name: str, shape, scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        scale = scale if scale is not None else (1.0 / np.sqrt(max(fan_in, 1)))
        self.inits.append(numpy_helper.from_array(np.asarray(self.rng.randn(*shape) * scale).astype(self.dtype), name))
        return name

    def const(self, name: str, values, dtype=np.int64) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name))
        return name

    def node(self, op: str, inputs, outputs=None, name: str | None = None, **attrs) -> str:
        self.count += 1
        name = name or f"{op.lower()}{self.count}"
        outputs = outputs or [name + "_out"]
        self.nodes.append(helper.make_node(op, list(inputs), list(outputs), name=name, **attrs))
        return outputs[0]

    def unsqueeze(self, x: str, axes: list[int], name: str | None = None) -> str:
        if self.opset >= 13:
            return self.node("Unsqueeze", [x, self.const(f"{name or 'unsq'}{self.count}_axes", axes)], name=name)
        return self.node("Unsqueeze", [x], name=name, axes=axes)

    def conv(self, x: str, cin: int, cout: int, name: str = "conv") -> str:
        weight = self.weight(f"{name}_w", (cout, cin, 3, 3))
        bias = self.weight(f"{name}_b", (cout,), 0.1)
        return self.node("Relu", [self.node("Conv", [x, weight, bias], name=name)], name=f"{name}_relu")

    def model(
        self,
        inputs: list[tuple[str, list]],
        outputs: list[str],
        value_info: bool = False,
        input_elem=None,
        output_elems: dict | None = None,
    ) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes,
            "zoo",
            [helper.make_tensor_value_info(n, input_elem or self.elem, s) for n, s in inputs],
            [helper.make_tensor_value_info(n, (output_elems or {}).get(n, self.elem), None) for n in outputs],
            self.inits,
        )
        model = helper.make_model(
            graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="proto-rewrite tests"
        )
        model.ir_version = ir_for(self.opset)
        if model.ir_version < 4:
            listed = {vi.name for vi in model.graph.input}
            for tensor in self.inits:
                if tensor.name not in listed:
                    model.graph.input.append(helper.make_tensor_value_info(tensor.name, tensor.data_type, tensor.dims))
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=data_prop_is_safe(model))
        for output in model.graph.output:
            found = [o for o in inferred.graph.output if o.name == output.name]
            if found and found[0].type.tensor_type.HasField("shape"):
                output.CopyFrom(found[0])
            else:
                _shape_by_running(model, output)
        if value_info:
            model.graph.value_info.extend(inferred.graph.value_info)
        return model


def _shape_by_running(model: onnx.ModelProto, output) -> None:
    """Declare an output's shape that shape inference could not find (old opsets): run the model."""
    import onnxruntime as ort

    initializers = {t.name for t in model.graph.initializer}
    feeds = {}
    symbolic = False
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        symbolic |= not dims[0].HasField("dim_value")
        shape = [d.dim_value if d.HasField("dim_value") else 2 for d in dims]
        feeds[value.name] = np.zeros(shape, helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    index = [o.name for o in model.graph.output].index(output.name)
    result = session.run(None, feeds)[index]
    shape = list(result.shape)
    if symbolic and shape:
        shape[0] = "N"
    output.CopyFrom(helper.make_tensor_value_info(output.name, output.type.tensor_type.elem_type, shape))


# -- FC heads over a (N, 4, 6, 6) map made by a 3x3 Conv from an (N, 3, 8, 8) input ----------------

IN_SHAPE = ["N", 3, 8, 8]


def _features(net: Net, input_shape=None) -> str:
    return net.conv("x", 3, 4)


def _gemm(
    net: Net,
    x: str,
    k: int,
    m: int,
    name: str,
    *,
    trans_b: int = 1,
    alpha: float = 1.0,
    beta: float = 1.0,
    bias: str | None = "1d",
) -> str:
    weight = net.weight(f"{name}_w", (m, k) if trans_b else (k, m))
    inputs = [x, weight]
    if bias == "1d":
        inputs.append(net.weight(f"{name}_b", (m,), 0.1))
    elif bias == "2d":
        inputs.append(net.weight(f"{name}_b", (1, m), 0.1))
    elif bias == "scalar":
        inputs.append(net.weight(f"{name}_b", (), 0.5) if net.opset >= 11 else net.weight(f"{name}_b", (1,), 0.5))
    elif bias == "batched":
        inputs.append(net.weight(f"{name}_b", (2, m), 0.1))
    elif bias is None and net.opset < 11:
        inputs.append(net.weight(f"{name}_b", (m,), 0.1))
    attrs = {"transB": trans_b}
    if alpha != 1.0:
        attrs["alpha"] = alpha
    if beta != 1.0:
        attrs["beta"] = beta
    return net.node("Gemm", inputs, name=name, **attrs)


def _head(net: Net, flat: str, **fc6) -> str:
    """fc6 (144 -> 8) -> Relu -> fc7 (8 -> 5)."""
    h = _gemm(net, flat, 144, 8, "fc6", **fc6)
    h = net.node("Relu", [h], name="relu6")
    return _gemm(net, h, 8, 5, "fc7")


def flatten_gemm(opset=13, dtype=np.float32, **fc6) -> onnx.ModelProto:
    net = Net(opset, dtype)
    flat = net.node("Flatten", [_features(net)], name="flatten", axis=1)
    return net.model([("x", IN_SHAPE)], [_head(net, flat, **fc6)])


def reshape_gemm(opset=13, dtype=np.float32, target=(0, -1), batch=None) -> onnx.ModelProto:
    net = Net(opset, dtype)
    shape = net.const("flat_shape", list(target))
    flat = net.node("Reshape", [_features(net), shape], name="flatten")
    return net.model([("x", [batch or "N", 3, 8, 8])], [_head(net, flat)])


def dynamic_chain(opset=13, dtype=np.float32) -> onnx.ModelProto:
    """x.view(x.size(0), -1) as PyTorch exports it."""
    net = Net(opset, dtype)
    feat = _features(net)
    shape = net.node("Shape", [feat], name="shape")
    n = net.node("Gather", [shape, net.const("zero", 0)], name="gather", axis=0)
    n = net.unsqueeze(n, [0], name="unsqueeze")
    target = net.node("Concat", [n, net.const("minus_one", [-1])], name="concat", axis=0)
    flat = net.node("Reshape", [feat, target], name="flatten")
    return net.model([("x", IN_SHAPE)], [_head(net, flat)])


def matmul_add(opset=13, dtype=np.float32, bias=True, bias_first=False) -> onnx.ModelProto:
    net = Net(opset, dtype)
    flat = net.node("Flatten", [_features(net)], name="flatten", axis=1)
    h = net.node("MatMul", [flat, net.weight("fc6_w", (144, 8))], name="fc6")
    if bias:
        b = net.weight("fc6_b", (8,), 0.1)
        h = net.node("Add", [b, h] if bias_first else [h, b], name="fc6_add")
    h = net.node("Relu", [h], name="relu6")
    h = net.node("MatMul", [h, net.weight("fc7_w", (8, 5))], name="fc7")
    if bias:
        h = net.node("Add", [h, net.weight("fc7_b", (1, 5), 0.1)], name="fc7_add")
    return net.model([("x", IN_SHAPE)], [h])


def gap_gemm(opset=13, dtype=np.float32) -> onnx.ModelProto:
    """ResNet's head: GlobalAveragePool -> Flatten -> Gemm."""
    net = Net(opset, dtype)
    pooled = net.node("GlobalAveragePool", [_features(net)], name="pool")
    flat = net.node("Flatten", [pooled], name="flatten", axis=1)
    return net.model([("x", IN_SHAPE)], [_gemm(net, flat, 4, 5, "fc")])


def mlp(opset=13, dtype=np.float32) -> onnx.ModelProto:
    net = Net(opset, dtype)
    h = _gemm(net, "x", 16, 12, "fc1")
    h = net.node("Tanh", [h], name="tanh")
    h = net.node("MatMul", [h, net.weight("fc2_w", (12, 7))], name="fc2")
    h = net.node("Add", [h, net.weight("fc2_b", (7,), 0.1)], name="fc2_add")
    return net.model([("x", ["N", 16])], [h])


def nhwc(opset=13, dtype=np.float32, reshape=True) -> onnx.ModelProto:
    """A map transposed to NHWC, then flattened (Keras / TF export style)."""
    net = Net(opset, dtype)
    t = net.node("Transpose", [_features(net)], name="to_nhwc", perm=[0, 2, 3, 1])
    if reshape:
        flat = net.node("Reshape", [t, net.const("flat_shape", [-1, 144])], name="flatten")
    else:
        flat = net.node("Flatten", [t], name="flatten", axis=1)
    h = net.node("MatMul", [flat, net.weight("fc6_w", (144, 8))], name="fc6")
    h = net.node("Add", [h, net.weight("fc6_b", (8,), 0.1)], name="fc6_add")
    return net.model([("x", IN_SHAPE)], [h])


def activations(opset=13, dtype=np.float32) -> onnx.ModelProto:
    """Element-wise nodes between FCs, and a Softmax over the classes at the end."""
    net = Net(opset, dtype)
    flat = net.node("Flatten", [_features(net)], name="flatten", axis=1)
    h = _gemm(net, flat, 144, 8, "fc6")
    h = net.node("LeakyRelu", [h], name="leaky", alpha=0.1)
    h = net.node("Dropout", [h], name="drop")
    h = net.node("Sigmoid", [h], name="sig")
    if opset >= 11:
        h = net.node("Clip", [h, net.const("lo", 0.1, net.dtype), net.const("hi", 0.8, net.dtype)], name="clip")
    h = net.node("Mul", [h, net.const("two", 2.0, net.dtype)], name="scale")
    h = net.node("Identity", [h], name="ident")
    h = _gemm(net, h, 8, 5, "fc7")
    h = net.node("Softmax", [h], name="softmax", axis=1)
    return net.model([("x", IN_SHAPE)], [h])


def two_outputs(opset=13, dtype=np.float32) -> onnx.ModelProto:
    """The first FC's activation is a graph output too, and an ArgMax reads the scores."""
    net = Net(opset, dtype)
    flat = net.node("Flatten", [_features(net)], name="flatten", axis=1)
    h = net.node("Relu", [_gemm(net, flat, 144, 8, "fc6")], name="relu6", outputs=["embedding"])
    scores = _gemm(net, h, 8, 5, "fc7")
    top = net.node("ArgMax", [scores], name="argmax", axis=1, keepdims=0, outputs=["label"])
    return net.model([("x", IN_SHAPE)], [h, scores, top], output_elems={"label": TensorProto.INT64})


# -- models whose FC is not rewritten ----------------------------------------------------------


def trans_a(opset=13, dtype=np.float32) -> onnx.ModelProto:
    net = Net(opset, dtype)
    h = net.node("Gemm", ["x", net.weight("fc_w", (6, 16)), net.weight("fc_b", (6,))], name="fc", transA=1, transB=1)
    return net.model([("x", [16, 2])], [h])


def weight_input(opset=13, dtype=np.float32) -> onnx.ModelProto:
    net = Net(opset, dtype)
    flat = net.node("Flatten", [_features(net)], name="flatten", axis=1)
    h = (
        net.node("Gemm", [flat, "w"], name="fc", transB=1)
        if opset >= 11
        else net.node("Gemm", [flat, "w", net.weight("fc_b", (5,))], name="fc", transB=1)
    )
    return net.model([("x", IN_SHAPE), ("w", [5, 144])], [h])


def shared_weight(opset=13, dtype=np.float32) -> onnx.ModelProto:
    net = Net(opset, dtype)
    flat = net.node("Flatten", [_features(net)], name="flatten", axis=1)
    w = net.weight("fc_w", (144, 144))
    h = net.node("MatMul", [flat, w], name="fc_a")
    h = net.node("MatMul", [h, w], name="fc_b")
    return net.model([("x", IN_SHAPE)], [h])


def batched_bias(opset=13, dtype=np.float32) -> onnx.ModelProto:
    net = Net(opset, dtype)
    flat = net.node("Flatten", [_features(net)], name="flatten", axis=1)
    return net.model([("x", [2, 3, 8, 8])], [_gemm(net, flat, 144, 5, "fc", bias="batched")])


def matmul_nd(opset=13, dtype=np.float32) -> onnx.ModelProto:
    net = Net(opset, dtype)
    h = net.node("MatMul", ["x", net.weight("fc_w", (8, 6))], name="fc")
    return net.model([("x", ["N", 4, 8])], [h])


def reshape_to_3d_matmul(opset=13, dtype=np.float32) -> onnx.ModelProto:
    """(N, C, H, W) -> (N, C, H*W) -> MatMul: a per-channel FC, not a flatten."""
    net = Net(opset, dtype)
    r = net.node("Reshape", [_features(net), net.const("target", [0, 4, 36])], name="to3d")
    return net.model([("x", IN_SHAPE)], [net.node("MatMul", [r, net.weight("fc_w", (36, 5))], name="fc")])


def quantized(opset=13, dtype=np.float32) -> onnx.ModelProto:
    net = Net(opset, dtype)
    q = numpy_helper.from_array(net.rng.randint(-100, 100, (16, 6)).astype(np.int8), "w_q")
    net.inits.append(q)
    w = net.node(
        "DequantizeLinear", ["w_q", net.const("w_scale", 0.01, np.float32), net.const("w_zero", 0, np.int8)], name="dq"
    )
    return net.model([("x", ["N", 16])], [net.node("MatMul", ["x", w], name="fc")], input_elem=TensorProto.FLOAT)


def wrong_flatten(opset=13, dtype=np.float32) -> onnx.ModelProto:
    """Reshape (N, C, H, W) -> (N*C, H*W): the element count fits a Gemm over H*W, the flatten is wrong."""
    net = Net(opset, dtype)
    r = net.node("Reshape", [_features(net), net.const("target", [-1, 36])], name="flatten")
    return net.model([("x", [1, 3, 8, 8])], [_gemm(net, r, 36, 5, "fc")])


def flatten_axis2(opset=13, dtype=np.float32) -> onnx.ModelProto:
    net = Net(opset, dtype)
    r = net.node("Flatten", [_features(net)], name="flatten", axis=2)
    return net.model([("x", [1, 3, 8, 8])], [_gemm(net, r, 36, 5, "fc")])


def swapped_hw(opset=13, dtype=np.float32) -> onnx.ModelProto:
    """A Transpose that moves the batch axis before the flatten: no Conv reads that layout.
    (A perm that keeps the batch first, e.g. swapping H and W, is a Conv over the transposed map.)"""
    net = Net(opset, dtype)
    t = net.node("Transpose", [_features(net)], name="swap", perm=[1, 0, 2, 3])
    flat = net.node("Flatten", [t], name="flatten", axis=1)
    return net.model([("x", [1, 3, 8, 8])], [_gemm(net, flat, 36, 5, "fc")])


def rank3_flatten(opset=13, dtype=np.float32) -> onnx.ModelProto:
    net = Net(opset, dtype)
    flat = net.node("Flatten", ["x"], name="flatten", axis=1)
    return net.model([("x", ["N", 4, 6])], [_gemm(net, flat, 24, 5, "fc")])


def symbolic_size(opset=13, dtype=np.float32) -> onnx.ModelProto:
    net = Net(opset, dtype)
    flat = net.node("Flatten", [_features(net)], name="flatten", axis=1)
    return net.model([("x", ["N", 3, "H", "W"])], [_head(net, flat)])


def qgemm_op(opset=13, dtype=np.float32) -> onnx.ModelProto:
    net = Net(opset, dtype)
    a = net.const("a_q", np.zeros((2, 16)), np.uint8)
    b = net.const("b_q", np.zeros((16, 6)), np.uint8)
    out = net.node("MatMulInteger", [a, b], name="fc_int", outputs=["y"])
    return net.model([("x", ["N", 16])], [out], output_elems={"y": TensorProto.INT32})
