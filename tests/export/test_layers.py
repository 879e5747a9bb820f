"""Each layer type exported and run in onnxruntime against a numpy port of Caffe's forward pass
(``caffe_reference``), including the cases the PyPI converters get wrong."""

from __future__ import annotations

import caffe_reference as ref
import numpy as np
import pytest
from export_helpers import (
    assert_rel,
    caffe_net,
    input_layer,
    newest_runnable_opset,
    rng_input,
    run,
)

OPSETS = [11, 13, 17]


def layer(name: str, kind: str, bottoms, tops=None, params: str = "") -> str:
    bottoms = [bottoms] if isinstance(bottoms, str) else bottoms
    tops = [name] if tops is None else ([tops] if isinstance(tops, str) else tops)
    text = f'layer {{ name: "{name}" type: "{kind}" '
    text += "".join(f'bottom: "{b}" ' for b in bottoms) + "".join(f'top: "{t}" ' for t in tops)
    return text + params + " }\n"


def single(tmp_path, kind: str, params: str, shape, weights=None, x=None, **export_args):
    """A net with one layer ``y`` of ``kind`` on input ``data``; returns (input, output)."""
    text = input_layer(*shape) + layer("y", kind, "data", params=params)
    model = caffe_net(tmp_path, text, weights=weights if weights is not None else {})
    x = rng_input(shape) if x is None else x
    return x, run(model, {"data": x}, **export_args)["y"]


# ---------------------------------------------------------------------------------------------
# Convolution, Deconvolution, InnerProduct


@pytest.mark.parametrize(
    "params, cin, cout, kernel, pad, stride, dilation, group, bias",
    [
        ("kernel_size: 3 pad: 1", 4, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
        ("kernel_size: 3 stride: 2 group: 2", 4, 6, (3, 3), (0, 0), (2, 2), (1, 1), 2, True),
        (
            "kernel_h: 3 kernel_w: 1 pad_h: 2 pad_w: 0 stride_h: 1 stride_w: 2",
            4,
            5,
            (3, 1),
            (2, 0),
            (1, 2),
            (1, 1),
            1,
            True,
        ),
        ("kernel_size: 3 dilation: 2 pad: 2 bias_term: false", 3, 4, (3, 3), (2, 2), (1, 1), (2, 2), 1, False),
        ("kernel_size: 3 group: 4", 4, 4, (3, 3), (0, 0), (1, 1), (1, 1), 4, True),
    ],
)
def test_convolution(tmp_path, params, cin, cout, kernel, pad, stride, dilation, group, bias):
    rs = np.random.RandomState(0)
    w = rs.standard_normal((cout, cin // group, *kernel)).astype(np.float32)
    b = rs.standard_normal(cout).astype(np.float32)
    x, y = single(
        tmp_path,
        "Convolution",
        f"convolution_param {{ num_output: {cout} {params} }}",
        (2, cin, 9, 8),
        weights={"y": [w, b] if bias else [w]},
    )
    assert_rel(y, ref.conv2d(x, w, b if bias else None, stride, pad, dilation, group))


@pytest.mark.parametrize(
    "params, cin, cout, kernel, pad, stride, group",
    [
        ("kernel_size: 4 stride: 2 pad: 1", 3, 5, (4, 4), (1, 1), (2, 2), 1),
        ("kernel_size: 3 stride: 3 group: 2", 4, 6, (3, 3), (0, 0), (3, 3), 2),
        ("kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 1 pad_h: 0 pad_w: 1", 2, 3, (2, 3), (0, 1), (2, 1), 1),
    ],
)
def test_deconvolution(tmp_path, params, cin, cout, kernel, pad, stride, group):
    rs = np.random.RandomState(1)
    w = rs.standard_normal((cin, cout // group, *kernel)).astype(np.float32)
    b = rs.standard_normal(cout).astype(np.float32)
    x, y = single(
        tmp_path,
        "Deconvolution",
        f"convolution_param {{ num_output: {cout} {params} }}",
        (2, cin, 5, 6),
        weights={"y": [w, b]},
    )
    assert_rel(y, ref.deconv2d(x, w, b, stride, pad, (1, 1), group))


@pytest.mark.parametrize(
    "axis, transpose, shape",
    [
        (1, False, (3, 4, 5, 2)),  # flattens C*H*W per item, never the batch
        (1, True, (3, 4, 5, 2)),
        (2, False, (2, 3, 4, 5)),
        (-1, False, (2, 3, 6)),
        (0, False, (2, 3)),
    ],
)
def test_inner_product(tmp_path, axis, transpose, shape):
    rs = np.random.RandomState(2)
    k = int(np.prod(shape[axis % len(shape) :]))
    w = rs.standard_normal((k, 7) if transpose else (7, k)).astype(np.float32)
    b = rs.standard_normal(7).astype(np.float32)
    params = f"inner_product_param {{ num_output: 7 axis: {axis} transpose: {str(transpose).lower()} }}"
    x, y = single(tmp_path, "InnerProduct", params, shape, weights={"y": [w, b]})
    expected = ref.inner_product(x, w, b, axis % len(shape), transpose)
    assert y.shape == expected.shape
    assert_rel(y, expected)


# ---------------------------------------------------------------------------------------------
# Pooling

POOL_CASES = {
    # ceil rounding keeps a last window that starts in the image but runs past the padded edge
    "max ceil pad": ("MAX", (3, 3), (2, 2), (1, 1), True, (1, 2, 8, 8)),
    "ave ceil pad": ("AVE", (3, 3), (2, 2), (1, 1), True, (1, 2, 8, 8)),
    # ceil would add a window starting in the padding: Caffe drops it
    "ave last window in padding": ("AVE", (2, 2), (2, 2), (1, 1), True, (1, 2, 6, 6)),
    "max last window in padding": ("MAX", (2, 2), (2, 2), (1, 1), True, (1, 2, 6, 6)),
    # AVE at the borders: the divisor counts the padding (GoogLeNet's 3x3/1 pad 1 pools)
    "ave border pad 1": ("AVE", (3, 3), (1, 1), (1, 1), True, (2, 3, 5, 7)),
    "ave no pad ceil": ("AVE", (3, 3), (2, 2), (0, 0), True, (1, 2, 8, 9)),
    "max no pad ceil": ("MAX", (3, 3), (2, 2), (0, 0), True, (1, 2, 8, 9)),
    "ave floor pad": ("AVE", (3, 3), (2, 2), (1, 1), False, (1, 2, 8, 8)),
    "max floor": ("MAX", (2, 2), (2, 2), (0, 0), False, (1, 2, 7, 7)),
    "ave rect pad": ("AVE", (3, 2), (2, 1), (1, 0), True, (1, 2, 7, 6)),
    "ave 7x7 resnet": ("AVE", (7, 7), (1, 1), (0, 0), True, (1, 3, 7, 7)),
}


def _pool_params(mode, kernel, stride, pad, ceil, rounding="round_mode"):
    text = (
        f"pool: {mode} kernel_h: {kernel[0]} kernel_w: {kernel[1]} stride_h: {stride[0]} stride_w: {stride[1]} "
        f"pad_h: {pad[0]} pad_w: {pad[1]}"
    )
    if not ceil:
        text += " round_mode: FLOOR" if rounding == "round_mode" else " ceil_mode: false"
    return f"pooling_param {{ {text} }}"


@pytest.mark.parametrize("case", sorted(POOL_CASES))
@pytest.mark.parametrize("scale", ["normal", "pixel"])
def test_pooling(tmp_path, case, scale):
    mode, kernel, stride, pad, ceil, shape = POOL_CASES[case]
    x = rng_input(shape, seed=3, scale=scale)
    _, y = single(tmp_path, "Pooling", _pool_params(mode, kernel, stride, pad, ceil), shape, x=x)
    assert_rel(y, ref.pool2d(x, kernel, stride, pad, mode, ceil), 1e-6)


def test_pooling_ceil_mode_false_of_the_forks(tmp_path):
    shape = (1, 2, 8, 8)
    x = rng_input(shape)
    params = _pool_params("AVE", (3, 3), (2, 2), (1, 1), False, rounding="ceil_mode")
    _, y = single(tmp_path, "Pooling", params, shape, x=x)
    assert_rel(y, ref.pool2d(x, (3, 3), (2, 2), (1, 1), "AVE", False), 1e-6)


def test_pooling_window_outside_the_input_is_refused(tmp_path):
    from proto_rewrite.caffe.onnx_export import ExportError

    # ceil((4 - 1) / 2) + 1 = 3 windows of 1 at stride 2: the last one starts at 4, past the input
    with pytest.raises(ExportError, match="outside"):
        single(tmp_path, "Pooling", "pooling_param { pool: MAX kernel_size: 1 stride: 2 }", (1, 1, 4, 4))


@pytest.mark.parametrize("mode", ["MAX", "AVE"])
def test_global_pooling(tmp_path, mode):
    shape = (2, 3, 5, 4)
    x, y = single(tmp_path, "Pooling", f"pooling_param {{ pool: {mode} global_pooling: true }}", shape)
    expected = x.max(axis=(2, 3), keepdims=True) if mode == "MAX" else x.mean(axis=(2, 3), keepdims=True)
    assert_rel(y, expected, 1e-6)


def test_pooling_matches_opencv_at_the_edges(tmp_path):
    cv2 = pytest.importorskip("cv2")
    shape = (1, 2, 8, 8)
    x = rng_input(shape, scale="pixel")
    text = input_layer(*shape) + "".join(
        layer(f"p{i}", "Pooling", "data", params=_pool_params(*POOL_CASES[case][:5]))
        for i, case in enumerate(["ave ceil pad", "ave last window in padding", "max ceil pad"])
    )
    model = caffe_net(tmp_path, text, weights={})
    got = run(model, {"data": x})
    path = tmp_path / "net.prototxt"
    net = cv2.dnn.readNetFromCaffe(str(path))
    net.setInput(x)
    for name, value in zip(["p0", "p1", "p2"], net.forward(["p0", "p1", "p2"])):
        assert_rel(got[name], value, 1e-6, name)


# ---------------------------------------------------------------------------------------------
# LRN and normalisations


@pytest.mark.parametrize("k", [1.0, 2.0])
def test_lrn_across_channels(tmp_path, k):
    shape = (2, 7, 4, 5)
    params = f"lrn_param {{ local_size: 5 alpha: 0.3 beta: 0.75 k: {k} }}"
    x, y = single(tmp_path, "LRN", params, shape, x=rng_input(shape, scale="pixel") / 20)
    assert_rel(y, ref.lrn_across(x, 5, 0.3, 0.75, k))


def test_lrn_within_channel(tmp_path):
    shape = (2, 3, 6, 5)
    params = "lrn_param { local_size: 3 alpha: 0.5 beta: 0.75 k: 3 norm_region: WITHIN_CHANNEL }"
    x, y = single(tmp_path, "LRN", params, shape)
    assert_rel(y, ref.lrn_within(x, 3, 0.5, 0.75))  # k is not used within a channel, as in Caffe


@pytest.mark.parametrize(
    "factor, eps, shape",
    [(1.0, 1e-5, (2, 3, 4, 5)), (0.5, 1e-3, (2, 3, 4, 5)), (0.0, 1e-5, (2, 4)), (999.9, 1e-5, (1, 3, 2, 2))],
)
def test_batch_norm_with_the_stored_statistics(tmp_path, factor, eps, shape):
    rs = np.random.RandomState(4)
    channels = shape[1]
    mean = rs.standard_normal(channels).astype(np.float32)
    var = rs.uniform(0.5, 2, channels).astype(np.float32) * max(factor, 1)
    weights = {"y": [mean, var, np.array([factor], np.float32)]}
    x, y = single(tmp_path, "BatchNorm", f"batch_norm_param {{ eps: {eps} }}", shape, weights=weights)
    assert_rel(y, ref.batch_norm(x, mean, var, factor, eps))


def test_batch_norm_with_the_batch_statistics(tmp_path):
    shape = (3, 2, 4, 4)
    weights = {"y": [np.zeros(2, np.float32), np.ones(2, np.float32), np.ones(1, np.float32)]}
    x, y = single(tmp_path, "BatchNorm", "batch_norm_param { use_global_stats: false }", shape, weights=weights)
    assert_rel(y, ref.batch_norm(x, None, None, 1.0, 1e-5, use_global_stats=False), 1e-5)


@pytest.mark.parametrize(
    "params, shape, blob_shapes",
    [
        ("scale_param { bias_term: true }", (2, 3, 4, 5), [(3,), (3,)]),
        ("scale_param { axis: 2 num_axes: 2 }", (2, 3, 4, 5), [(4, 5)]),
        ("scale_param { axis: 0 num_axes: -1 }", (2, 3, 4), [(2, 3, 4)]),
        ("scale_param { num_axes: 0 bias_term: true }", (2, 3, 4), [(), ()]),
        ("scale_param { axis: -2 }", (2, 3, 4, 5), [(4,)]),
    ],
)
def test_scale_learned(tmp_path, params, shape, blob_shapes):
    rs = np.random.RandomState(5)
    blobs = [rs.standard_normal(s).astype(np.float32) for s in blob_shapes]
    x, y = single(tmp_path, "Scale", params, shape, weights={"y": blobs})
    axis = {"axis: 2": 2, "axis: 0": 0, "axis: -2": 2}.get(
        next((a for a in ("axis: 2", "axis: 0", "axis: -2") if a in params), ""), 1
    )
    trailing = (1,) * (len(shape) - axis - len(blob_shapes[0]))
    expected = x * blobs[0].reshape(blob_shapes[0] + trailing)
    if len(blobs) > 1:
        expected = expected + blobs[1].reshape(blob_shapes[1] + trailing)
    assert_rel(y, expected)


def test_scale_and_bias_from_a_second_bottom(tmp_path):
    text = (
        input_layer(2, 3, 4, 5)
        + input_layer(3, 4, name="factor")
        + layer("s", "Scale", ["data", "factor"], params="scale_param { axis: 1 bias_term: true }")
        + layer("b", "Bias", ["s", "factor"], params="bias_param { axis: 1 }")
    )
    bias = np.arange(12, dtype=np.float32).reshape(3, 4)
    model = caffe_net(tmp_path, text, weights={"s": [bias]})
    x, f = rng_input((2, 3, 4, 5)), rng_input((3, 4), seed=1)
    y = run(model, {"data": x, "factor": f})["b"]
    assert_rel(y, x * f[:, :, None] + bias[:, :, None] + f[:, :, None])


def test_bias_learned(tmp_path):
    blob = np.random.RandomState(6).standard_normal((3,)).astype(np.float32)
    x, y = single(tmp_path, "Bias", "bias_param { axis: 1 }", (2, 3, 4), weights={"y": [blob]})
    assert_rel(y, x + blob[:, None])


@pytest.mark.parametrize(
    "params, across, variance",
    [
        ("", False, True),
        ("mvn_param { across_channels: true }", True, True),
        ("mvn_param { normalize_variance: false }", False, False),
        ("mvn_param { eps: 0.01 }", False, True),
    ],
)
def test_mvn(tmp_path, params, across, variance):
    x, y = single(tmp_path, "MVN", params, (2, 3, 4, 5))
    eps = 0.01 if "eps" in params else 1e-9
    assert_rel(y, ref.mvn(x, across, variance, eps))


@pytest.mark.parametrize("across, shared", [(True, True), (False, False), (False, True), (True, False)])
def test_normalize(tmp_path, across, shared):
    shape = (2, 3, 4, 5)
    scale = np.array([20.0], np.float32).reshape(()) if shared else np.array([1.0, 2.0, 3.0], np.float32)
    params = f"norm_param {{ across_spatial: {str(across).lower()} channel_shared: {str(shared).lower()} }}"
    x, y = single(tmp_path, "Normalize", params, shape, weights={"y": [scale]})
    assert_rel(y, ref.normalize(x, scale, across, shared))


# ---------------------------------------------------------------------------------------------
# Element-wise


def _softplus(x):
    x = x.astype(np.float64)
    return np.where(x > 0, x + np.log1p(np.exp(-x)), np.log1p(np.exp(x)))


ELEMENTWISE = {
    "ReLU": ("", lambda x: np.maximum(x, 0)),
    "ReLU slope": ("relu_param { negative_slope: 0.1 }", lambda x: np.where(x > 0, x, 0.1 * x)),
    "ELU": ("elu_param { alpha: 0.5 }", lambda x: np.where(x > 0, x, 0.5 * (np.exp(x) - 1))),
    "Sigmoid": ("", lambda x: 1 / (1 + np.exp(-x.astype(np.float64)))),
    "TanH": ("", np.tanh),
    "AbsVal": ("", np.abs),
    "Power": ("power_param { power: 2 scale: 0.5 shift: 1 }", lambda x: (1 + 0.5 * x) ** 2),
    "Power sqrt": ("power_param { power: 0.5 shift: 10 }", lambda x: np.sqrt(10 + x)),
    "Power constant": ("power_param { power: 2 scale: 0 shift: 3 }", lambda x: np.full_like(x, 9.0)),
    "Power zero": ("power_param { power: 0 scale: 2 }", lambda x: np.ones_like(x)),
    "Exp": ("", np.exp),
    "Exp base": ("exp_param { base: 2 scale: 0.5 shift: 1 }", lambda x: 2.0 ** (1 + 0.5 * x)),
    "Log": ("log_param { shift: 10 }", lambda x: np.log(10 + x)),
    "Log base": ("log_param { base: 10 scale: 2 shift: 10 }", lambda x: np.log10(10 + 2 * x)),
    "BNLL": ("", _softplus),
    "Threshold": ("threshold_param { threshold: 0.3 }", lambda x: (x > 0.3).astype(np.float32)),
    "Dropout": ("dropout_param { dropout_ratio: 0.3 }", lambda x: x),
    "Dropout unscaled": ("dropout_param { dropout_ratio: 0.25 scale_train: false }", lambda x: 0.75 * x),
    "Clip": ("clip_param { min: -0.5 max: 0.7 }", lambda x: np.clip(x, -0.5, 0.7)),
}


@pytest.mark.parametrize("case", sorted(ELEMENTWISE))
def test_elementwise(tmp_path, case):
    params, function = ELEMENTWISE[case]
    x, y = single(tmp_path, case.split()[0], params, (2, 3, 4, 5))
    assert_rel(y, function(x), 2e-6)


def test_threshold_is_strictly_above(tmp_path):
    x = np.array([[0.3, np.nextafter(np.float32(0.3), np.float32(1)), -1.0, 0.2999999]], np.float32)
    _, y = single(tmp_path, "Threshold", "threshold_param { threshold: 0.3 }", (1, 4), x=x)
    np.testing.assert_array_equal(y, [[0, 1, 0, 0]])


def test_bnll_does_not_overflow(tmp_path):
    x = np.array([-200.0, -20.0, 0.0, 20.0, 200.0], np.float32).reshape(1, 5)
    _, y = single(tmp_path, "BNLL", "", (1, 5), x=x)
    assert np.all(np.isfinite(y))
    assert_rel(y, _softplus(x), 1e-6)


@pytest.mark.parametrize("shared", [False, True])
def test_prelu(tmp_path, shared):
    slope = np.array(0.2, np.float32).reshape(()) if shared else np.array([0.1, -0.2, 0.3], np.float32)
    params = f"prelu_param {{ channel_shared: {str(shared).lower()} }}"
    x, y = single(tmp_path, "PReLU", params, (2, 3, 4, 5), weights={"y": [slope]})
    factor = slope if shared else slope[:, None, None]
    assert_rel(y, np.where(x > 0, x, factor * x))


@pytest.mark.parametrize(
    "operation, coeff", [("SUM", ""), ("SUM", "coeff: 0.5 coeff: -2 coeff: 3"), ("PROD", ""), ("MAX", "")]
)
def test_eltwise(tmp_path, operation, coeff):
    text = (
        input_layer(2, 3, 4)
        + input_layer(2, 3, 4, name="b")
        + input_layer(2, 3, 4, name="c")
        + layer("y", "Eltwise", ["data", "b", "c"], params=f"eltwise_param {{ operation: {operation} {coeff} }}")
    )
    model = caffe_net(tmp_path, text, weights={})
    a, b, c = (rng_input((2, 3, 4), seed=s) for s in range(3))
    y = run(model, {"data": a, "b": b, "c": c})["y"]
    expected = {"SUM": a + b + c, "PROD": a * b * c, "MAX": np.maximum(np.maximum(a, b), c)}[operation]
    if coeff:
        expected = 0.5 * a - 2 * b + 3 * c
    assert_rel(y, expected)


# ---------------------------------------------------------------------------------------------
# Shapes: Concat, Slice, Split, Flatten, Reshape, Crop, Permute


def test_concat_slice_split(tmp_path):
    text = (
        input_layer(2, 3, 4)
        + input_layer(2, 5, 4, name="b")
        + layer("cat", "Concat", ["data", "b"], params="concat_param { axis: 1 }")
        + layer(
            "sl", "Slice", "cat", ["s1", "s2", "s3"], params="slice_param { axis: 1 slice_point: 2 slice_point: 7 }"
        )
        + layer("even", "Slice", "b", ["e1", "e2"], params="slice_param { slice_dim: 2 }")
        + layer("sp", "Split", "s2", ["t1", "t2"])
    )
    model = caffe_net(tmp_path, text, weights={})
    a, b = rng_input((2, 3, 4)), rng_input((2, 5, 4), seed=1)
    got = run(model, {"data": a, "b": b})
    cat = np.concatenate([a, b], axis=1)
    assert_rel(got["s1"], cat[:, :2])
    assert_rel(got["s3"], cat[:, 7:])
    assert_rel(got["t1"], cat[:, 2:7])
    assert_rel(got["t2"], cat[:, 2:7])
    assert_rel(got["e2"], b[:, :, 2:])


@pytest.mark.parametrize(
    "params, expected_shape",
    [
        ("", (2, 60)),
        ("flatten_param { axis: 2 }", (2, 3, 20)),
        ("flatten_param { axis: 1 end_axis: 2 }", (2, 12, 5)),
        ("flatten_param { axis: 0 }", (120,)),
        ("flatten_param { axis: -2 end_axis: -1 }", (2, 3, 20)),
    ],
)
def test_flatten(tmp_path, params, expected_shape):
    x, y = single(tmp_path, "Flatten", params, (2, 3, 4, 5))
    np.testing.assert_array_equal(y, x.reshape(expected_shape))


@pytest.mark.parametrize(
    "params, expected_shape",
    [
        ("reshape_param { shape { dim: 0 dim: -1 } }", (2, 60)),
        ("reshape_param { shape { dim: 0 dim: 3 dim: -1 dim: 2 } }", (2, 3, 10, 2)),
        ("reshape_param { shape { dim: 6 dim: 2 } axis: 1 num_axes: 2 }", (2, 6, 2, 5)),
        ("reshape_param { shape { dim: -1 } axis: 2 }", (2, 3, 20)),
        ("reshape_param { shape { dim: 1 } axis: 0 num_axes: 0 }", (1, 2, 3, 4, 5)),
        ("reshape_param { shape { dim: 0 dim: 0 dim: 0 dim: 0 } }", (2, 3, 4, 5)),
    ],
)
def test_reshape(tmp_path, params, expected_shape):
    x, y = single(tmp_path, "Reshape", params, (2, 3, 4, 5))
    np.testing.assert_array_equal(y, x.reshape(expected_shape))


@pytest.mark.parametrize(
    "params, cut",
    [
        ("", (slice(None), slice(None), slice(0, 3), slice(0, 4))),
        ("crop_param { axis: 2 offset: 2 }", (slice(None), slice(None), slice(2, 5), slice(2, 6))),
        ("crop_param { axis: 1 offset: 1 offset: 2 offset: 3 }", (slice(None), slice(1, 3), slice(2, 5), slice(3, 7))),
        ("crop_param { axis: 3 offset: 1 }", (slice(None), slice(None), slice(None), slice(1, 5))),
    ],
)
def test_crop(tmp_path, params, cut):
    text = (
        input_layer(2, 4, 7, 8)
        + input_layer(2, 2, 3, 4, name="like")
        + layer("y", "Crop", ["data", "like"], params=params)
    )
    model = caffe_net(tmp_path, text, weights={})
    x = rng_input((2, 4, 7, 8))
    y = run(model, {"data": x, "like": rng_input((2, 2, 3, 4))})["y"]
    np.testing.assert_array_equal(y, x[cut])


def test_permute(tmp_path):
    x, y = single(tmp_path, "Permute", "permute_param { order: 0 order: 2 order: 3 order: 1 }", (2, 3, 4, 5))
    np.testing.assert_array_equal(y, x.transpose(0, 2, 3, 1))
    x, y = single(tmp_path, "Permute", "permute_param { order: 0 order: 2 }", (2, 3, 4, 5))
    np.testing.assert_array_equal(y, x.transpose(0, 2, 1, 3))


# ---------------------------------------------------------------------------------------------
# Softmax and ArgMax


@pytest.mark.parametrize("opset", OPSETS + [newest_runnable_opset()])
@pytest.mark.parametrize("axis, shape", [(1, (2, 5, 3, 4)), (2, (2, 3, 4, 5)), (1, (3, 6)), (1, (2, 5, 1, 1))])
def test_softmax_over_one_axis(tmp_path, opset, axis, shape):
    x, y = single(tmp_path, "Softmax", f"softmax_param {{ axis: {axis} }}", shape, x=rng_input(shape) * 3, opset=opset)
    assert_rel(y, ref.softmax(x, axis))  # not over C*H*W, whatever the opset


@pytest.mark.parametrize(
    "params, kwargs",
    [
        ("", {}),
        ("argmax_param { top_k: 3 }", {"top_k": 3}),
        ("argmax_param { out_max_val: true }", {"out_max_val": True}),
        ("argmax_param { top_k: 2 out_max_val: true }", {"top_k": 2, "out_max_val": True}),
        ("argmax_param { axis: 1 }", {"axis": 1}),
        ("argmax_param { axis: 1 top_k: 2 }", {"axis": 1, "top_k": 2}),
        ("argmax_param { axis: 2 out_max_val: true }", {"axis": 2, "out_max_val": True}),
    ],
)
def test_argmax(tmp_path, params, kwargs):
    x, y = single(tmp_path, "ArgMax", params, (2, 4, 3, 5))
    expected = ref.argmax(x, **kwargs)
    assert y.shape == expected.shape
    assert_rel(y, expected)


def test_argmax_ties_pick_the_larger_index_like_caffe(tmp_path):
    x = np.array([[1, 3, 3, 0], [2, 2, 1, 2]], np.float32)
    _, y = single(tmp_path, "ArgMax", "argmax_param { axis: 1 }", (2, 4), x=x)
    np.testing.assert_array_equal(y.reshape(-1), [2, 3])
