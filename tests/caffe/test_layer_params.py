"""proto_rewrite.caffe.layer_params: Caffe's convolution and pooling geometry, read once."""

import pytest
from google.protobuf import text_format

from proto_rewrite.caffe.layer_params import (
    ConvParams,
    PoolParams,
    conv_params,
    input_rank,
    per_axis,
    pool_params,
    pool_rounds_up,
    spatial_axes,
)
from proto_rewrite.caffe.schema import bundled_schema
from proto_rewrite.caffe.shapes import infer_shapes
from proto_rewrite.errors import NetStructureError

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite


class Refused(Exception):
    pass


def conv(text: str):
    return text_format.Parse(text, schema.message_class("ConvolutionParameter")())


def pool(text: str):
    return text_format.Parse(text, schema.message_class("PoolingParameter")())


# -- convolution ----------------------------------------------------------------------------


def test_defaults_one_value_for_every_spatial_axis():
    params = conv_params(conv("num_output: 8 kernel_size: 3"), 4, error=Refused)
    assert params == ConvParams(1, (3, 3), (1, 1), (0, 0), (1, 1), 1, 8, True)


def test_h_w_forms_and_per_axis_lists():
    params = conv_params(
        conv("num_output: 4 kernel_h: 3 kernel_w: 5 stride_h: 2 stride_w: 1 pad_h: 1 pad_w: 2"), 4, error=Refused
    )
    assert (params.kernel, params.stride, params.pad) == ((3, 5), (2, 1), (1, 2))
    params = conv_params(
        conv("num_output: 4 kernel_size: 1 kernel_size: 3 kernel_size: 5 dilation: 2 group: 2 bias_term: false"),
        5,
        error=Refused,
    )
    assert params.kernel == (1, 3, 5) and params.dilation == (2, 2, 2)
    assert (params.group, params.bias_term) == (2, False)


@pytest.mark.parametrize(
    "axis, rank, count, canonical", [(1, 4, 2, 1), (-1, 4, 0, 3), (2, 5, 2, 2), (1, 2, 0, 1), (-3, 4, 2, 1)]
)
def test_spatial_axes_are_every_axis_after_the_channels_possibly_none(axis, rank, count, canonical):
    param = conv(f"num_output: 2 kernel_size: 3 axis: {axis}")
    assert spatial_axes(param, rank) == count
    params = conv_params(param, rank)
    assert params.channel_axis == canonical and params.kernel == (3,) * count


def test_spatial_axes_without_a_shape_come_from_the_kernel():
    assert spatial_axes(conv("kernel_size: 3"), None) == 2
    assert spatial_axes(conv("kernel_size: 3 kernel_size: 3 kernel_size: 1"), None) == 3
    assert conv_params(conv("kernel_size: 3 axis: -1"), None).channel_axis == -1
    assert input_rank([None]) is None and input_rank([]) is None and input_rank([(1, 2, 3)]) == 3


@pytest.mark.parametrize(
    "text, rank, message",
    [
        ("kernel_h: 3 kernel_w: 3", 5, "kernel_h/kernel_w can only be used with 2 spatial axes; the input has 3"),
        ("kernel_size: 3 kernel_h: 3 kernel_w: 3", 4, "give either kernel_size or kernel_h/kernel_w, not both"),
        ("stride: 2", 4, "kernel_size is not given"),
        ("kernel_size: 3 pad: 1 pad: 1 pad: 1", 4, "pad is given 3 times; give it once or once per spatial axis (2)"),
    ],
)
def test_checked_reading_refuses_with_the_callers_error(text, rank, message):
    with pytest.raises(Refused, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        conv_params(conv(text), rank, error=Refused)


def test_unchecked_reading_takes_what_is_given():
    assert conv_params(conv("stride: 2"), 4).kernel == (0, 0)
    assert conv_params(conv("kernel_h: 3 kernel_w: 1"), 5).kernel == (3, 1)
    assert per_axis(conv("pad: 1 pad: 2 pad: 3"), "pad", "pad_h", "pad_w", 0, 2) == (1, 2, 3)


# -- pooling --------------------------------------------------------------------------------


def test_pooling_defaults_and_forms():
    assert pool_params(pool("pool: MAX kernel_size: 3 stride: 2"), error=Refused) == PoolParams(
        "MAX", False, (3, 3), (2, 2), (0, 0), True
    )
    params = pool_params(
        pool("pool: AVE kernel_h: 2 kernel_w: 3 stride_h: 1 stride_w: 2 pad_h: 1 pad_w: 0"), error=Refused
    )
    assert (params.kernel, params.stride, params.pad) == ((2, 3), (1, 2), (1, 0))
    params = pool_params(pool("pool: AVE global_pooling: true"), error=Refused)
    assert params.global_pooling and params.kernel is None and params.stride == (1, 1)


@pytest.mark.parametrize(
    "text, ceil",
    [
        ("", True),
        ("round_mode: FLOOR", False),
        ("round_mode: CEIL", True),
        ("ceil_mode: false", False),
        ("ceil_mode: true", True),
        ("round_mode: FLOOR ceil_mode: false", False),
    ],
)
def test_rounding_bvlc_round_mode_and_the_forks_ceil_mode(text, ceil):
    assert pool_rounds_up(pool(text), Refused) is ceil
    assert pool_params(pool("kernel_size: 2 " + text), error=Refused).ceil is ceil


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "global_pooling: true kernel_size: 3",
            "global_pooling takes the kernel size from the input; do not set kernel_size",
        ),
        ("stride: 2", r"kernel_size is not given \(or set global_pooling\)"),
        ("kernel_h: 3", "give either kernel_size or both kernel_h and kernel_w"),
        ("kernel_size: 3 stride: 2 stride_h: 2 stride_w: 2", "give either stride or both stride_h and stride_w"),
        ("kernel_size: 3 round_mode: FLOOR ceil_mode: true", "round_mode and ceil_mode disagree; set one of them"),
    ],
)
def test_pooling_checked_reading_refuses(text, message):
    with pytest.raises(Refused, match="^" + message + "$"):
        pool_params(pool(text), error=Refused)
    pool_params(pool(text))  # unchecked: no error


# -- the shape inference raises the same errors, naming the layer ---------------------------


def _net(params: str, kind: str = "Convolution", dims=(1, 3, 8, 8)):
    text = (
        'layer { name: "data" type: "Input" top: "data" input_param { shape { '
        + " ".join(f"dim: {d}" for d in dims)
        + " } } }\n"
        f'layer {{ name: "l" type: "{kind}" bottom: "data" top: "l" {params} }}'
    )
    return text_format.Parse(text, schema.NetParameter())


@pytest.mark.parametrize(
    "params, kind, message",
    [
        (
            "convolution_param { num_output: 2 kernel_size: 3 pad: 1 pad: 1 pad: 1 }",
            "Convolution",
            "Convolution: pad is given 3 times; give it once or once per spatial axis (2)",
        ),
        ("pooling_param { kernel_h: 3 }", "Pooling", "Pooling: give either kernel_size or both kernel_h and kernel_w"),
        (
            "pooling_param { kernel_size: 2 round_mode: CEIL ceil_mode: false }",
            "Pooling",
            "Pooling: round_mode and ceil_mode disagree; set one of them",
        ),
    ],
)
def test_shape_inference_keeps_its_messages(params, kind, message):
    with pytest.raises(NetStructureError) as caught:
        infer_shapes(_net(params, kind))
    assert message in str(caught.value) and "l" in str(caught.value)


def test_shape_inference_of_a_convolution_over_the_last_axis_has_no_spatial_axes():
    shapes = infer_shapes(_net("convolution_param { num_output: 5 kernel_size: 3 axis: -1 }", dims=(2, 4)))
    assert shapes.tops["l"] == [(2, 5)]


def test_blob_shapes_and_the_diff_view_read_the_same_geometry():
    from proto_rewrite.caffe.blob_shapes import expected_blobs
    from proto_rewrite.caffe.view import _conv_geometry, _pool_geometry

    layer = text_format.Parse(
        'name: "c" type: "Convolution" convolution_param { num_output: 6 kernel_h: 3 '
        "kernel_w: 1 pad_w: 1 pad_h: 0 group: 2 }",
        schema.LayerParameter(),
    )
    assert expected_blobs(layer, [(1, 4, 9, 9)]) == [(6, 2, 3, 1), (6,)]
    assert _conv_geometry(layer.convolution_param, [(1, 4, 9, 9)]) == {
        "kernel": [3, 1],
        "stride": [1, 1],
        "pad": [0, 1],
        "dilation": [1, 1],
        "group": 2,
    }
    flat = text_format.Parse(
        'name: "c" type: "Convolution" convolution_param { num_output: 5 kernel_size: 1 }', schema.LayerParameter()
    )
    assert expected_blobs(flat, [(2, 4)]) == [(5, 4), (5,)]  # no spatial axis: Caffe's kernel shape is empty
    assert _conv_geometry(flat.convolution_param, [(2, 4)])["kernel"] == []
    assert _pool_geometry(pool("global_pooling: true")) == {"stride": [1, 1], "pad": [0, 0]}
