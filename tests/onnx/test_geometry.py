"""output_geometry: stride, offset (min_size) and receptive field of a 4-D output, read from the graph;
hand-computed on AlexNet / VGG / ResNet stems and checked against onnxruntime's output sizes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite.onnx.geometry import GeometryUnknown, output_geometry
from proto_rewrite.rewrite_plan import AxisGeometry


class Net:
    """A tiny graph builder: each call appends one node reading the last tensor."""

    def __init__(self, channels: int = 3, nhwc: bool = False, opset: int = 17) -> None:
        self.nodes, self.inits, self.channels, self.opset, self.count = [], [], channels, opset, 0
        self.nhwc = nhwc
        self.last = "input"
        if nhwc:
            self.op("Transpose", perm=[0, 3, 1, 2])
        self.rng = np.random.default_rng(0)

    def _name(self, op):
        self.count += 1
        return f"{op.lower()}{self.count}"

    def op(self, op, inputs=None, **attrs):
        name = self._name(op)
        self.nodes.append(helper.make_node(op, inputs or [self.last], [name], name=name, **attrs))
        self.last = name
        return name

    def conv(self, out, k, stride=1, pad=0, dilation=1, **attrs):
        kh, kw = (k, k) if isinstance(k, int) else k
        weight = f"w{self.count + 1}"
        self.inits.append(
            numpy_helper.from_array(
                (self.rng.standard_normal((out, self.channels, kh, kw)) * 0.1).astype(np.float32), weight
            )
        )
        pads = [pad] * 4 if isinstance(pad, int) else pad
        if "auto_pad" not in attrs:
            attrs["pads"] = pads
        self.channels = out
        return self.op(
            "Conv",
            [self.last, weight],
            kernel_shape=[kh, kw],
            strides=[stride, stride],
            dilations=[dilation, dilation],
            **attrs,
        )

    def pool(self, k, stride, pad=0, op="MaxPool", **attrs):
        pads = [pad] * 4 if isinstance(pad, int) else pad
        return self.op(op, kernel_shape=[k, k], strides=[stride, stride], pads=pads, **attrs)

    def relu(self):
        return self.op("Relu")

    def model(self, output=None):
        output = output or self.last
        shape = ["N", "H", "W", 3] if self.nhwc else ["N", 3, "H", "W"]
        graph = helper.make_graph(
            self.nodes,
            "geo",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
            self.inits,
        )
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)])


def alexnet(torchvision: bool) -> Net:
    net = Net()
    net.conv(8, 11, stride=4, pad=2 if torchvision else 0), net.relu()
    net.pool(3, 2)
    net.conv(8, 5, pad=2), net.relu()
    net.pool(3, 2)
    for _ in range(3):
        net.conv(8, 3, pad=1), net.relu()
    net.pool(3, 2)
    net.conv(16, 6), net.relu()  # fc6 as a 6 x 6 convolution
    net.conv(10, 1)  # fc7/fc8 as 1 x 1
    return net


def vgg16() -> Net:
    net = Net()
    for convs in (2, 2, 3, 3, 3):
        for _ in range(convs):
            net.conv(4, 3, pad=1), net.relu()
        net.pool(2, 2)
    net.conv(8, 7), net.relu()  # fc6 as 7 x 7
    net.conv(10, 1)
    return net


def resnet_stem() -> Net:
    net = Net()
    net.conv(4, 7, stride=2, pad=3), net.relu()
    trunk = net.pool(3, 2, pad=1)
    net.conv(4, 3, pad=1), net.relu()
    net.conv(4, 3, pad=1)
    net.op("Add", [net.last, trunk]), net.relu()
    block_in = net.last
    main = net.conv(4, 3, stride=2, pad=1)
    net.last, net.channels = block_in, 4
    shortcut = net.conv(4, 1, stride=2)
    net.op("Add", [main, shortcut])
    return net


def ort_map_size(model: onnx.ModelProto, size: int, nhwc: bool = False) -> tuple[int, int]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    shape = (1, size, size, 3) if nhwc else (1, 3, size, size)
    out = session.run(None, {"input": np.zeros(shape, np.float32)})[0]
    return out.shape[1:3] if nhwc and out.ndim == 4 and out.shape[3] != out.shape[1] else out.shape[2:4]


@pytest.mark.parametrize(
    "torchvision, expected",
    [
        (False, AxisGeometry(stride=32, min_size=227, receptive_field=355)),  # Caffe AlexNet (conv1 pad 0)
        (True, AxisGeometry(stride=32, min_size=223, receptive_field=355)),  # torchvision (conv1 pad 2)
    ],
)
def test_alexnet_hand_computed(torchvision, expected):
    # conv1 k11 s4: M = 1 + (11 - P - 1), S 4; each 3/2 pool: M += 2 S, S *= 2; conv2 k5 p2 and the
    # 3x3 p1 convs keep M; fc6 (6 x 6): M += 5 * 32.  rf: 11, 19, 51, 67, 163, 195, 355.
    geometry = output_geometry(alexnet(torchvision).model(), "input", alexnet(torchvision).last)
    assert geometry == (expected, expected)
    assert expected.cells(224 if torchvision else 227) == 1


def test_vgg16_hand_computed():
    # five 2/2 pools: M 2, 4, 8, 16, 32; fc6 7 x 7: 32 + 6 * 32 = 224. rf 404.
    net = vgg16()
    height, width = output_geometry(net.model(), "input", net.last)
    assert height == width == AxisGeometry(stride=32, min_size=224, receptive_field=404)


def test_resnet_stem_branches_agree():
    # 7x7/2 p3 and 3x3/2 p1 pool: M stays 1, S 4, rf 7 then 11; the residual branch (rf 11 + 2*4*2 = 27)
    # and the stride-2 block (3x3 vs 1x1 shortcut) agree on the grid: cells = ceil(H / 8).
    net = resnet_stem()
    height, width = output_geometry(net.model(), "input", net.last)
    assert (height.stride, height.min_size) == (8, 1)
    assert height.receptive_field == 27 + 2 * 4
    assert height == width


def _ceil_net():
    net = Net()
    net.conv(4, 3), net.relu()
    net.pool(3, 2, ceil_mode=1)  # Caffe-style rounding
    net.conv(4, 3, stride=2, auto_pad="SAME_UPPER")
    net.pool(2, 2, op="AveragePool", ceil_mode=1)
    net.conv(4, 3, dilation=2)
    net.conv(6, 4)
    return net


def _pad_net():
    net = Net()
    pads = numpy_helper.from_array(np.array([0, 0, 2, 1, 0, 0, 1, 2], np.int64), "pads")
    net.inits.append(pads)
    net.op("Pad", [net.last, "pads"])
    net.conv(4, 5, stride=3, pad=[1, 0, 1, 0])
    net.op("BatchNormalization", [net.last] + [_const(net, f"bn{i}", np.ones(4, np.float32)) for i in range(4)])
    net.pool(3, 2, op="LpPool")
    net.conv(5, 3, auto_pad="VALID")
    net.op("Softmax", axis=1)
    return net


def _nhwc_net():
    net = Net(nhwc=True)
    net.conv(4, 3, stride=2), net.relu()
    net.pool(2, 2)
    net.conv(6, 5)
    net.op("Transpose", perm=[0, 2, 3, 1])  # back to NHWC, as keras models end
    return net


def _se_net():
    net = Net()
    trunk = net.conv(4, 3, stride=2)
    net.op("GlobalAveragePool")
    net.conv(4, 1), net.op("Sigmoid")
    net.op("Mul", [trunk, net.last])  # squeeze-excitation: one cell that broadcasts
    net.conv(6, 4, stride=2)
    return net


def _const(net, name, value):
    net.inits.append(numpy_helper.from_array(value, name))
    return name


@pytest.mark.parametrize(
    "build, nhwc",
    [
        (lambda: alexnet(True), False),
        (vgg16, False),
        (resnet_stem, False),
        (_ceil_net, False),
        (_pad_net, False),
        (_nhwc_net, True),
        (_se_net, False),
    ],
)
def test_map_sizes_match_onnxruntime(build, nhwc):
    net = build()
    model = net.model()
    geometry = output_geometry(model, "input", net.last)
    assert geometry, geometry
    height, width = geometry
    base = max(height.min_size, 24)
    for size in (base, base + 13, base + 2 * height.stride + 5):
        assert tuple(ort_map_size(model, size, nhwc)) == (height.cells(size), width.cells(size)), size


def test_nhwc_axes_are_tracked():
    net = _nhwc_net()
    height, width = output_geometry(net.model(), "input", net.last)
    # conv 3/2: M 3, S 2; pool 2/2: M 3 + 2 = 5, S 4; conv 5: M 5 + 4 * 4 = 21. rf 3, 5, 5 + 4 * 4 = 21
    assert height == width == AxisGeometry(stride=4, min_size=21, receptive_field=21)


def test_rectangular_kernels_give_each_axis_its_own_geometry():
    net = Net()
    net.conv(4, (3, 5), stride=2)
    height, width = output_geometry(net.model(), "input", net.last)
    assert height == AxisGeometry(2, 3, 3) and width == AxisGeometry(2, 5, 5)


@pytest.mark.parametrize(
    "tail, why",
    [
        (lambda net: net.op("GlobalAveragePool"), "global pool"),
        (lambda net: net.op("ReduceMean", axes=[2, 3], keepdims=0), "global pool"),
        (lambda net: net.op("Flatten", axis=1), "not spatial"),
        (
            lambda net: net.op(
                "ConvTranspose", [net.last, _const(net, "wt", np.ones((4, 4, 2, 2), np.float32))], strides=[2, 2]
            ),
            "not spatial",
        ),
        (
            lambda net: net.op("Resize", [net.last, "", _const(net, "sc", np.array([1, 1, 2, 2], np.float32))]),
            "not spatial",
        ),
        (lambda net: net.op("Concat", [net.last, net.last], axis=2), "spatial axis"),
        (lambda net: net.op("NonMaxSuppression"), "no rule"),
        (
            lambda net: net.op(
                "Slice",
                [
                    net.last,
                    _const(net, "s0", np.array([0], np.int64)),
                    _const(net, "s1", np.array([4], np.int64)),
                    _const(net, "s2", np.array([2], np.int64)),
                ],
            ),
            "not computed from the map's own extent",
        ),
        (
            lambda net: net.op(
                "Slice",
                [
                    net.last,
                    _const(net, "s0", np.array([1], np.int64)),
                    _const(net, "s1", np.array([2**62], np.int64)),
                    _const(net, "s2", np.array([3], np.int64)),
                ],
            ),
            "crops the start",
        ),
    ],
)
def test_unknown_geometry_names_the_node(tail, why):
    net = Net()
    net.conv(4, 3)
    tail(net)
    net.op("Relu")
    result = output_geometry(net.model(), "input", net.last)
    assert isinstance(result, GeometryUnknown) and not result
    assert why in result.why
    assert result.node == net.nodes[1].name


def test_branches_that_disagree_are_unknown():
    net = Net()
    first = net.conv(4, 3, stride=2)
    net.last, net.channels = "input", 3
    second = net.conv(4, 3, stride=1)
    net.op("Add", [first, second])
    result = output_geometry(net.model(), "input", net.last)
    assert not result and "do not line up" in result.why


def test_bad_names_and_ranks():
    net = Net()
    net.conv(4, 3)
    model = net.model()
    assert "no input" in output_geometry(model, "nope", net.last).why
    assert "no output" in output_geometry(model, "input", "nope").why
    model.graph.input[0].type.tensor_type.shape.dim.pop()
    assert "3-D" in output_geometry(model, "input", net.last).why


def test_padding_beyond_the_kernel_is_unknown():
    net = Net()
    net.conv(4, 1, pad=2)  # out = x + 4 - 1 + 1: offset -3, yet a 0-size input fails
    net.conv(4, 3, stride=2)
    result = output_geometry(net.model(), "input", net.last)
    assert not result and "pads more than its kernel" in result.why


def test_caffe_exporters_ceil_pooling_at_any_size(tmp_path):
    """The Caffe exporter writes ceil-mode pooling at any size as MaxPool (end-padded) + a Slice whose
    end is computed from the map's Shape: the shape arithmetic is followed, and the sizes match."""
    import io

    from corpus import ROOT

    from proto_rewrite.cli import main
    from proto_rewrite.validation.load import load_for_validation

    fcn = tmp_path / "mini_fcn.prototxt"
    code = main(
        ["convert", str(ROOT / "samples" / "caffenet_mini" / "caffenet_mini.prototxt"), "-o", str(fcn)],
        stdout=io.StringIO(),
        stderr=io.StringIO(),
    )
    assert code == 0
    model = load_for_validation(fcn, any_size=True)
    assert any(node.op_type == "Slice" for node in model.graph.node)
    input_name, output_name = model.graph.input[0].name, model.graph.output[0].name
    geometry = output_geometry(model, input_name, output_name)
    assert geometry, geometry
    height, width = geometry
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    channels = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    for size in (height.min_size, height.min_size + 7, height.min_size + 2 * height.stride + 3):
        out = session.run(None, {input_name: np.zeros((1, channels, size, size + 5), np.float32)})[0]
        assert out.shape[2:] == (height.cells(size), width.cells(size + 5)), size


def test_shape_arithmetic_sizes_a_slice_like_the_exporters():
    """MaxPool end-padded for ceil mode, then a Slice to floor((x - k + s - 1) / s) + 1 computed from
    Shape -> Slice -> Sub -> Add -> Div -> Add: the map size follows, and onnxruntime agrees."""
    net = Net()
    trunk = net.conv(4, 3)
    net.pool(3, 2, pad=[0, 0, 1, 1])
    pooled = net.last
    net.op("Shape", [trunk])
    net.op(
        "Slice",
        [
            net.last,
            _const(net, "b0", np.array([2], np.int64)),
            _const(net, "b1", np.array([4], np.int64)),
            _const(net, "b2", np.array([0], np.int64)),
        ],
    )
    net.op("Sub", [net.last, _const(net, "k", np.array([3, 3], np.int64))])
    net.op("Add", [net.last, _const(net, "s1", np.array([1, 1], np.int64))])
    net.op("Div", [net.last, _const(net, "s", np.array([2, 2], np.int64))])
    ends = net.op("Add", [net.last, _const(net, "one", np.array([1, 1], np.int64))])
    net.op(
        "Slice",
        [pooled, _const(net, "z", np.array([0, 0], np.int64)), ends, _const(net, "ax", np.array([2, 3], np.int64))],
    )
    net.conv(5, 2)
    model = net.model()
    height, width = output_geometry(model, "input", net.last)
    # conv 3: M 3; ceil pool 3/2: M 3 + (3 - 1 - 1) = 4, S 2; conv 2: M 4 + 2 = 6
    assert height == width == AxisGeometry(stride=2, min_size=6, receptive_field=3 + 2 + 2)
    for size in (6, 7, 12, 19):
        assert tuple(ort_map_size(model, size)) == (height.cells(size), width.cells(size)), size
    shape_out = Net()
    shape_out.op("Shape")
    assert "a shape computed from the input" in output_geometry(shape_out.model(), "input", shape_out.last).why
