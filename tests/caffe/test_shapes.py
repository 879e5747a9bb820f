"""Shape inference: one test per Caffe rule, unknown layers, the errors, inspect's shape column,
and every corpus network against OpenCV dnn's own shape computation."""

import io
import json

import numpy as np
import pytest
from corpus import SAMPLES, corpus_file, corpus_names
from google.protobuf import text_format

from proto_rewrite.caffe.blob_shapes import expected_blobs
from proto_rewrite.caffe.init_weights import random_weights
from proto_rewrite.caffe.model import load_caffe, save_caffe
from proto_rewrite.caffe.schema import bundled_schema
from proto_rewrite.caffe.shapes import (
    conv_output_size,
    deconv_output_size,
    infer_shapes,
    pool_output_size,
    prior_count,
)
from proto_rewrite.cli import main
from proto_rewrite.cli.options import FLAG_SPELLING
from proto_rewrite.errors import NetStructureError, UsageError

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite


def net(text: str):
    return text_format.Parse(text, schema.NetParameter())


def data(*dims, name="data") -> str:
    shape = " ".join(f"dim: {d}" for d in dims)
    return f'layer {{ name: "{name}" type: "Input" top: "{name}" input_param {{ shape {{ {shape} }} }} }}\n'


def layer(name, kind, bottoms, params="", tops=None) -> str:
    bottoms = [bottoms] if isinstance(bottoms, str) else bottoms
    tops = tops or [name]
    links = " ".join(f'bottom: "{b}"' for b in bottoms) + " " + " ".join(f'top: "{t}"' for t in tops)
    return f'layer {{ name: "{name}" type: "{kind}" {links} {params} }}\n'


def tops(text: str, **inputs):
    """Shapes of the last layer's tops."""
    parsed = net(text)
    return infer_shapes(parsed, inputs or None).tops[parsed.layer[-1].name]


def top(text: str, **inputs):
    (shape,) = tops(text, **inputs)
    return shape


def fails(text: str, match: str, **inputs) -> NetStructureError:
    parsed = net(text)
    with pytest.raises(NetStructureError, match=match) as info:
        infer_shapes(parsed, inputs or None, path="n.prototxt", lines={parsed.layer[-1].name: 7})
    error = info.value
    assert error.location.layer == parsed.layer[-1].name
    assert (error.location.path, error.location.line) == ("n.prototxt", 7)
    assert error.hint
    return error


# ---------------------------------------------------------------------------------------------
# Convolution and pooling arithmetic


def test_pooling_rounds_up_and_drops_a_last_window_that_starts_in_the_padding():
    assert pool_output_size(6, 3, 2) == 3  # ceil((6 - 3) / 2) + 1; floor would give 2
    assert pool_output_size(6, 3, 2, ceil=False) == 2
    assert pool_output_size(13, 3, 2) == 6  # AlexNet pool5
    # 5 + 2*1 padding, kernel 3, stride 2: ceil gives 4 windows, but the 4th starts at 6 = 5 + 1,
    # in the padding, so Caffe drops it.
    assert pool_output_size(5, 3, 2, 1) == 3
    assert pool_output_size(6, 3, 2, 1) == 4  # its 4th window starts at 6 < 6 + 1: kept
    # The rule applies when the layer has any padding, even along an axis without any.
    assert pool_output_size(5, 1, 3, 0) == 3
    assert pool_output_size(5, 1, 3, 0, padded=True) == 2


def test_pooling_layer_rounding_modes():
    base = data(1, 2, 6, 6)
    pool = "pooling_param { pool: MAX kernel_size: 3 stride: 2 %s }"
    assert top(base + layer("p", "Pooling", "data", pool % "")) == (1, 2, 3, 3)
    assert top(base + layer("p", "Pooling", "data", pool % "round_mode: FLOOR")) == (1, 2, 2, 2)
    assert top(base + layer("p", "Pooling", "data", pool % "ceil_mode: false")) == (1, 2, 2, 2)  # the forks
    assert top(base + layer("p", "Pooling", "data", pool % "ceil_mode: true")) == (1, 2, 3, 3)
    fails(base + layer("p", "Pooling", "data", pool % "round_mode: FLOOR ceil_mode: true"), "disagree")


def test_pooling_settings():
    base = data(1, 2, 7, 9)
    assert top(base + layer("p", "Pooling", "data", "pooling_param { pool: AVE global_pooling: true }")) == (1, 2, 1, 1)
    rect = "pooling_param { pool: MAX kernel_h: 3 kernel_w: 2 stride_h: 2 stride_w: 3 pad_h: 1 pad_w: 0 }"
    # Width: ceil((9 - 2) / 3) + 1 = 4 windows, but the layer has padding (along the height), so the
    # last-window rule also runs along the width: the 4th starts at 9 >= 9 + 0 and is dropped.
    assert top(base + layer("p", "Pooling", "data", rect)) == (1, 2, 4, 3)
    with_mask = layer("p", "Pooling", "data", "pooling_param { kernel_size: 2 stride: 2 }", tops=["p", "mask"])
    assert tops(base + with_mask) == [(1, 2, 4, 5), (1, 2, 4, 5)]
    fails(base + layer("p", "Pooling", "data", "pooling_param { kernel_size: 2 pad: 2 }"), "smaller than the kernel")
    fails(base + layer("p", "Pooling", "data", "pooling_param { kernel_h: 2 }"), "kernel_h and kernel_w")
    fails(
        base + layer("p", "Pooling", "data", "pooling_param { pool: STOCHASTIC kernel_size: 3 pad: 1 }"), "MAX and AVE"
    )
    fails(data(1, 2, 3) + layer("p", "Pooling", "data", "pooling_param { kernel_size: 2 }"), "4-D input")


def test_convolution_output_size():
    assert conv_output_size(227, 11, 4) == 55
    assert conv_output_size(10, 3, dilation=2) == 6  # the kernel spans 5
    assert conv_output_size(4, 3, 2, 0) == 1
    assert conv_output_size(2, 3, 2) == 0  # does not fit: Caffe's C division would say 1
    assert deconv_output_size(5, 4, 2, 1) == 10
    assert deconv_output_size(16, 16, 8) == 136


def test_convolution_forms():
    base = data(1, 4, 10, 12)
    rect = "convolution_param { num_output: 6 group: 2 kernel_h: 3 kernel_w: 5 pad_h: 1 stride_h: 1 stride_w: 2 }"
    text = base + layer("c", "Convolution", "data", rect)
    assert top(text) == (1, 6, 10, 4)
    parsed = net(text)
    shapes = infer_shapes(parsed)
    assert expected_blobs(parsed.layer[1], shapes.bottoms["c"]) == [(6, 2, 3, 5), (6,)]
    dilated = "convolution_param { num_output: 3 kernel_size: 3 dilation: 2 dilation: 3 }"
    assert top(base + layer("c", "Convolution", "data", dilated)) == (1, 3, 6, 6)  # the kernel spans 5 x 7
    per_axis = "convolution_param { num_output: 3 kernel_size: 3 kernel_size: 1 stride: 2 stride: 3 }"
    assert top(base + layer("c", "Convolution", "data", per_axis)) == (1, 3, 4, 4)


def test_convolution_over_other_axes():
    volume = data(1, 2, 8, 8, 8) + layer(
        "c", "Convolution", "data", "convolution_param { num_output: 4 kernel_size: 3 }"
    )
    assert top(volume) == (1, 4, 6, 6, 6)
    parsed = net(volume)
    assert expected_blobs(parsed.layer[1], infer_shapes(parsed).bottoms["c"]) == [(4, 2, 3, 3, 3), (4,)]
    sequence = data(2, 3, 4, 10) + layer(
        "c", "Convolution", "data", "convolution_param { num_output: 5 kernel_size: 3 axis: 2 }"
    )
    assert top(sequence) == (2, 3, 5, 8)
    fails(
        data(1, 2, 8, 8, 8)
        + layer("c", "Convolution", "data", "convolution_param { num_output: 4 kernel_h: 3 kernel_w: 3 }"),
        "2 spatial axes",
    )


def test_deconvolution():
    text = data(1, 21, 16, 16) + layer(
        "up",
        "Deconvolution",
        "data",
        "convolution_param { num_output: 21 kernel_size: 4 stride: 2 bias_term: false group: 21 }",
    )
    assert top(text) == (1, 21, 34, 34)
    parsed = net(text)
    assert expected_blobs(parsed.layer[1], infer_shapes(parsed).bottoms["up"]) == [(21, 1, 4, 4)]


def test_convolution_errors():
    error = fails(
        data(1, 3, 5, 5) + layer("c", "Convolution", "data", "convolution_param { num_output: 8 kernel_size: 11 }"),
        r"kernel \(11\) does not fit in the input height 5",
    )
    assert "input_shapes" in error.hint and "--input-shape" in error.with_flags(FLAG_SPELLING).hint
    fails(
        data(1, 3, 5, 5)
        + layer("c", "Convolution", "data", "convolution_param { num_output: 8 kernel_size: 1 group: 2 }"),
        "group 2 must divide",
    )
    fails(data(1, 3, 5, 5) + layer("c", "Convolution", "data", "convolution_param { num_output: 8 }"), "kernel_size")
    fails(
        data(1, 3, 5, 5)
        + layer("c", "Convolution", "data", "convolution_param { num_output: 8 kernel_size: 1 stride_w: 2 }"),
        "stride must be positive",
    )
    fails(
        data(1, 3, 5, 5)
        + layer(
            "c",
            "Convolution",
            "data",
            "convolution_param { num_output: 8 kernel_size: 1 kernel_size: 1 kernel_size: 1 }",
        ),
        "given 3 times",
    )


# ---------------------------------------------------------------------------------------------
# Fully connected, joining, splitting, reshaping


def test_inner_product_axis():
    base = data(2, 3, 4, 5)
    assert top(base + layer("fc", "InnerProduct", "data", "inner_product_param { num_output: 7 }")) == (2, 7)
    assert top(base + layer("fc", "InnerProduct", "data", "inner_product_param { num_output: 7 axis: 2 }")) == (2, 3, 7)
    assert top(base + layer("fc", "InnerProduct", "data", "inner_product_param { num_output: 7 axis: -1 }")) == (
        2,
        3,
        4,
        7,
    )
    fails(base + layer("fc", "InnerProduct", "data", "inner_product_param { num_output: 7 axis: 4 }"), "out of range")


def test_concat_axis_and_legacy_concat_dim():
    base = data(1, 2, 5, 5, name="a") + data(1, 3, 5, 5, name="b")
    assert top(base + layer("c", "Concat", ["a", "b"])) == (1, 5, 5, 5)
    assert top(base + layer("c", "Concat", ["a", "b"], "concat_param { concat_dim: 1 }")) == (1, 5, 5, 5)
    assert top(base + layer("c", "Concat", ["a", "a"], "concat_param { axis: -1 }")) == (1, 2, 5, 10)
    fails(base + layer("c", "Concat", ["a", "b"], "concat_param { axis: 2 }"), r"1x2x5x5, 1x3x5x5")
    fails(base + layer("c", "Concat", ["a", "b"], "concat_param { concat_dim: 1 axis: 1 }"), "not both")


def test_eltwise_needs_equal_shapes():
    base = data(1, 2, 5, 5, name="a") + data(1, 3, 5, 5, name="b")
    assert top(base + layer("e", "Eltwise", ["a", "a"])) == (1, 2, 5, 5)
    fails(base + layer("e", "Eltwise", ["a", "b"]), "same shape")
    fails(base + layer("e", "Eltwise", ["a", "a"], "eltwise_param { coeff: 1 }"), "coeff")


def test_slice():
    base = data(2, 6, 4)
    assert tops(
        base + layer("s", "Slice", "data", "slice_param { slice_point: 1 slice_point: 3 }", tops=["x", "y", "z"])
    ) == [(2, 1, 4), (2, 2, 4), (2, 3, 4)]
    assert tops(base + layer("s", "Slice", "data", "", tops=["x", "y", "z"])) == [(2, 2, 4)] * 3
    assert tops(base + layer("s", "Slice", "data", "slice_param { slice_dim: 2 }", tops=["x", "y"])) == [(2, 6, 2)] * 2
    fails(base + layer("s", "Slice", "data", "", tops=["x", "y", "z", "w"]), "does not split evenly")
    fails(
        base + layer("s", "Slice", "data", "slice_param { slice_point: 3 slice_point: 2 }", tops=["x", "y", "z"]),
        "increase strictly",
    )
    fails(base + layer("s", "Slice", "data", "slice_param { slice_point: 3 }", tops=["x", "y", "z"]), "3 tops")


def test_split_copies_the_shape():
    assert tops(data(1, 2, 3) + layer("s", "Split", "data", tops=["x", "y"])) == [(1, 2, 3), (1, 2, 3)]


def test_flatten_axis_and_end_axis():
    base = data(2, 3, 4, 5)
    assert top(base + layer("f", "Flatten", "data")) == (2, 60)
    assert top(base + layer("f", "Flatten", "data", "flatten_param { axis: 2 }")) == (2, 3, 20)
    assert top(base + layer("f", "Flatten", "data", "flatten_param { end_axis: 2 }")) == (2, 12, 5)
    assert top(base + layer("f", "Flatten", "data", "flatten_param { axis: -3 end_axis: -2 }")) == (2, 12, 5)
    fails(base + layer("f", "Flatten", "data", "flatten_param { axis: 5 }"), "out of range")


@pytest.mark.parametrize(
    "params, expected",
    [
        ("shape { dim: 0 dim: -1 }", (2, 60)),
        ("shape { dim: -1 dim: 0 dim: 20 }", (2, 3, 20)),
        ("shape { dim: 1 dim: 0 dim: -1 }", (1, 3, 40)),  # 0 copies the input's axis at the same place
        ("axis: 1 num_axes: 2 shape { dim: -1 }", (2, 12, 5)),
        ("axis: 1 num_axes: 0 shape { dim: 1 }", (2, 1, 3, 4, 5)),
        ("axis: -1 num_axes: 0 shape { dim: 1 }", (2, 3, 4, 5, 1)),  # -1: after the last axis
        ("axis: 2 shape { dim: 0 dim: -1 }", (2, 3, 4, 5)),
        ("shape { }", None),  # an empty shape with the default axes: the count changes
    ],
)
def test_reshape(params, expected):
    text = data(2, 3, 4, 5) + layer("r", "Reshape", "data", f"reshape_param {{ {params} }}")
    if expected is None:
        fails(text, "elements")
    else:
        assert top(text) == expected


@pytest.mark.parametrize(
    "params, match",
    [
        ("shape { dim: 7 dim: -1 }", "do not divide by 7"),
        ("shape { dim: -1 dim: -1 }", "more than one -1"),
        ("shape { dim: 2 dim: 3 dim: 4 dim: 6 }", "144 elements"),
        ("axis: 3 num_axes: 2 shape { dim: 1 }", "past the end"),
        ("axis: 3 shape { dim: 0 dim: 0 }", "copies"),
    ],
)
def test_reshape_errors(params, match):
    fails(data(2, 3, 4, 5) + layer("r", "Reshape", "data", f"reshape_param {{ {params} }}"), match)


def test_crop():
    base = data(1, 21, 100, 100, name="score") + data(1, 3, 80, 90, name="like")
    assert top(base + layer("c", "Crop", ["score", "like"], "crop_param { offset: 5 }")) == (1, 21, 80, 90)
    assert top(base + layer("c", "Crop", ["score", "like"], "crop_param { offset: 20 offset: 10 }")) == (1, 21, 80, 90)
    assert top(base + layer("c", "Crop", ["score", "like"], "crop_param { axis: 1 }")) == (1, 3, 80, 90)
    error = fails(base + layer("c", "Crop", ["score", "like"], "crop_param { offset: 21 }"), "cannot crop 80")
    assert "input_shapes" in error.hint and "--input-shape" in error.with_flags(FLAG_SPELLING).hint
    fails(base + layer("c", "Crop", ["score", "like"], "crop_param { offset: 1 offset: 2 offset: 3 }"), "3 offsets")


def test_permute_tile_reduction_embed_batch_reindex():
    base = data(2, 3, 4, 5)
    assert top(base + layer("p", "Permute", "data", "permute_param { order: 0 order: 2 order: 3 order: 1 }")) == (
        2,
        4,
        5,
        3,
    )
    assert top(base + layer("p", "Permute", "data", "permute_param { order: 3 }")) == (5, 2, 3, 4)
    fails(base + layer("p", "Permute", "data", "permute_param { order: 1 order: 1 }"), "repeats")
    assert top(base + layer("t", "Tile", "data", "tile_param { axis: -1 tiles: 3 }")) == (2, 3, 4, 15)
    assert top(base + layer("r", "Reduction", "data", "reduction_param { axis: 2 }")) == (2, 3)
    assert top(base + layer("r", "Reduction", "data")) == ()
    assert top(data(2, 7) + layer("e", "Embed", "data", "embed_param { num_output: 8 input_dim: 100 }")) == (2, 7, 8)
    assert top(base + data(6, name="i") + layer("b", "BatchReindex", ["data", "i"])) == (6, 3, 4, 5)


def test_argmax():
    base = data(2, 10)
    assert top(base + layer("a", "ArgMax", "data", "argmax_param { top_k: 3 }")) == (2, 1, 3)
    assert top(base + layer("a", "ArgMax", "data", "argmax_param { top_k: 3 out_max_val: true }")) == (2, 2, 3)
    assert top(base + layer("a", "ArgMax", "data", "argmax_param { top_k: 2 axis: 1 }")) == (2, 2)
    assert top(data(2, 5, 4, 4) + layer("a", "ArgMax", "data", "argmax_param { axis: 1 }")) == (2, 1, 4, 4)
    fails(base + layer("a", "ArgMax", "data", "argmax_param { top_k: 11 }"), "larger than")


def test_shape_preserving_layers_and_softmax():
    base = data(2, 3, 4, 5)
    for kind in (
        "ReLU",
        "PReLU",
        "ELU",
        "Sigmoid",
        "TanH",
        "AbsVal",
        "Power",
        "Exp",
        "Log",
        "BNLL",
        "Threshold",
        "Dropout",
        "BatchNorm",
        "LRN",
        "MVN",
        "Swish",
        "Clip",
        "ReLU6",
        "Normalize",
        "Softmax",
    ):
        assert top(base + layer("x", kind, "data")) == (2, 3, 4, 5), kind
    assert top(base + layer("x", "ShuffleChannel", "data", "shuffle_channel_param { group: 3 }")) == (2, 3, 4, 5)
    fails(base + layer("x", "ShuffleChannel", "data", "shuffle_channel_param { group: 2 }"), "divide the 3 channels")
    fails(base + layer("x", "Softmax", "data", "softmax_param { axis: 4 }"), "out of range")


def test_scale_and_bias_with_two_bottoms():
    base = data(2, 3, 4, 5) + data(3, 4, name="s")
    assert top(base + layer("x", "Scale", ["data", "s"])) == (2, 3, 4, 5)
    assert top(base + layer("x", "Bias", ["data", "s"])) == (2, 3, 4, 5)
    fails(base + layer("x", "Scale", ["data", "s"], "scale_param { axis: 2 }"), "from axis 2")
    parsed = net(base + layer("x", "Scale", ["data", "s"], "scale_param { bias_term: true }"))
    assert expected_blobs(parsed.layer[-1], infer_shapes(parsed).bottoms["x"]) == [(3, 4)]


def test_losses_and_accuracy_are_scalars():
    base = data(4, 10) + data(4, name="label")
    assert tops(base + layer("l", "SoftmaxWithLoss", ["data", "label"], tops=["loss", "prob"])) == [(), (4, 10)]
    assert tops(base + layer("a", "Accuracy", ["data", "label"], tops=["acc", "per_class"])) == [(), (10,)]
    assert tops(base + layer("l", "EuclideanLoss", ["data", "data"])) == [()]
    assert tops(base + 'layer { name: "s" type: "Silence" bottom: "data" }') == []


def test_fork_resize_and_roi_layers():
    base = data(1, 8, 10, 12)
    assert top(base + layer("i", "Interp", "data", "interp_param { zoom_factor: 2 }")) == (1, 8, 19, 23)
    assert top(base + layer("i", "Interp", "data", "interp_param { shrink_factor: 2 }")) == (1, 8, 5, 6)
    assert top(base + layer("i", "Interp", "data", "interp_param { height: 7 width: 9 }")) == (1, 8, 7, 9)
    assert top(base + layer("u", "Upsample", ["data", "data"], "upsample_param { scale: 2 }")) == (1, 8, 20, 24)
    assert top(base + layer("u", "Upsample", ["data", "data"], "upsample_param { upsample_h: 19 upsample_w: 23 }")) == (
        1,
        8,
        19,
        23,
    )
    rois = base + data(5, 5, name="rois")
    assert top(rois + layer("r", "ROIPooling", ["data", "rois"], "roi_pooling_param { pooled_h: 6 pooled_w: 7 }")) == (
        5,
        8,
        6,
        7,
    )
    assert top(
        rois
        + layer(
            "r",
            "PSROIPooling",
            ["data", "rois"],
            "psroi_pooling_param { spatial_scale: 0.1 output_dim: 2 group_size: 2 }",
        )
    ) == (5, 2, 2, 2)
    assert top(base + layer("s", "SPP", "data", "spp_param { pyramid_height: 3 }")) == (1, 8 * 21)


# ---------------------------------------------------------------------------------------------
# SSD


def prior_param(text: str):
    return text_format.Parse(text, schema.message_class("PriorBoxParameter")())


@pytest.mark.parametrize(
    "params, count",
    [
        ("min_size: 30", 1),  # only the implicit aspect ratio 1
        ("min_size: 30 max_size: 60", 2),  # + sqrt(min * max)
        ("min_size: 30 max_size: 60 aspect_ratio: 2", 4),  # 1, 2, 1/2 (flip), + max
        ("min_size: 30 max_size: 60 aspect_ratio: 2 aspect_ratio: 3", 6),  # SSD300 fc7
        ("min_size: 30 aspect_ratio: 2 flip: false", 2),
        ("min_size: 30 aspect_ratio: 2 aspect_ratio: 0.5", 3),  # 0.5 is already there (flip of 2)
        ("min_size: 30 aspect_ratio: 1", 1),  # 1 is always there
        ("min_size: 30 min_size: 60 aspect_ratio: 2", 6),  # 3 ratios per min_size
        ("min_size: 30 min_size: 60 max_size: 45 max_size: 90 aspect_ratio: 2", 8),
    ],
)
def test_prior_box_count(params, count):
    assert prior_count(prior_param(params)) == count


def test_prior_box_and_detection_output():
    base = data(1, 3, 300, 300) + data(1, 16, 19, 19, name="feature")
    priors = layer(
        "p",
        "PriorBox",
        ["feature", "data"],
        "prior_box_param { min_size: 60 max_size: 111 aspect_ratio: 2 aspect_ratio: 3 }",
    )
    assert top(base + priors) == (1, 2, 19 * 19 * 6 * 4)
    count = 19 * 19 * 6
    heads = data(2, count * 4, name="loc") + data(2, count * 21, name="conf")
    detect = "detection_output_param { num_classes: 21 %s }"
    text = base + priors + heads + layer("d", "DetectionOutput", ["loc", "conf", "p"], detect % "keep_top_k: 200")
    assert top(text) == (1, 1, 400, 7)  # at most keep_top_k per image
    assert top(base + priors + heads + layer("d", "DetectionOutput", ["loc", "conf", "p"], detect % "")) == (
        1,
        1,
        2 * count * 20,
        7,
    )
    nms = detect % "nms_param { top_k: 400 } background_label_id: -1"
    assert top(base + priors + heads + layer("d", "DetectionOutput", ["loc", "conf", "p"], nms)) == (
        1,
        1,
        2 * 400 * 21,
        7,
    )
    wrong = base + priors + data(2, count * 4 - 4, name="loc") + data(2, count * 21, name="conf")
    fails(wrong + layer("d", "DetectionOutput", ["loc", "conf", "p"], detect % ""), "location values")


# ---------------------------------------------------------------------------------------------
# Unknown shapes and the inputs


def test_python_layer_makes_everything_after_it_unknown():
    text = (
        data(1, 3, 8, 8)
        + layer("conv", "Convolution", "data", "convolution_param { num_output: 4 kernel_size: 3 }")
        + layer("py", "Python", "conv", 'python_param { module: "m" layer: "L" }')
        + layer("conv2", "Convolution", "py", "convolution_param { num_output: 4 kernel_size: 3 }")
        + layer("relu", "ReLU", "conv2", tops=["conv2"])
        + layer("side", "ReLU", "conv")
    )
    shapes = infer_shapes(net(text), path="p.prototxt", lines={"py": 3})
    assert shapes.tops["conv"] == [(1, 4, 6, 6)]
    assert shapes.tops["py"] == shapes.tops["conv2"] == shapes.tops["relu"] == [None]
    assert shapes.bottoms["conv2"] == [None]
    assert shapes.blobs["conv2"] is None and shapes.blobs["side"] == (1, 4, 6, 6)
    (note,) = shapes.diagnostics
    assert note.level == "warning" and "Python layer" in note.message
    assert (note.location.path, note.location.line, note.location.layer) == ("p.prototxt", 3, "py")


def test_unknown_type_makes_its_tops_unknown_without_crashing():
    text = (
        data(1, 3, 8, 8)
        + layer("x", "MyFancyLayer", "data")
        + layer("fc", "InnerProduct", "x", "inner_product_param { num_output: 2 }")
    )
    shapes = infer_shapes(net(text))
    assert shapes.blobs["fc"] is None
    (note,) = shapes.diagnostics
    assert "'MyFancyLayer'" in note.message and note.location.layer == "x"


def test_input_shapes_replace_the_declared_ones():
    text = data(10, 3, 227, 227) + layer(
        "c", "Convolution", "data", "convolution_param { num_output: 4 kernel_size: 11 stride: 4 }"
    )
    assert top(text) == (10, 4, 55, 55)
    assert top(text, data=[1, 3, 451, 451]) == (1, 4, 111, 111)
    with pytest.raises(UsageError, match="no input named 'image'") as info:
        infer_shapes(net(text), {"image": [1, 3, 8, 8]})
    assert "data" in info.value.hint
    with pytest.raises(UsageError, match="positive"):
        infer_shapes(net(text), {"data": [1, 0, 8, 8]})


def test_inputs_without_a_shape_and_data_layers():
    undeclared = 'layer { name: "data" type: "Input" top: "data" }\n' + layer("r", "ReLU", "data")
    shapes = infer_shapes(net(undeclared))
    assert shapes.blobs["r"] is None
    assert shapes.diagnostics[0].hint == "give the shape of 'data' in input_shapes"
    assert shapes.diagnostics[0].with_flags(FLAG_SPELLING).hint == "give the shape of 'data' in --input-shape"
    assert infer_shapes(net(undeclared), {"data": [1, 2]}).blobs["r"] == (1, 2)
    source = 'layer { name: "d" type: "Data" top: "img" top: "label" data_param { source: "x" batch_size: 4 } }\n'
    shapes = infer_shapes(net(source), {"img": [4, 3, 32, 32]})
    assert shapes.tops["d"] == [(4, 3, 32, 32), None]
    assert "label" in shapes.diagnostics[0].message
    python_source = 'layer { name: "py" type: "Python" top: "blob" }\n' + layer("r", "ReLU", "blob")
    assert infer_shapes(net(python_source), {"blob": [2, 3]}).blobs["r"] == (2, 3)
    dummy = 'layer { name: "d" type: "DummyData" top: "a" top: "b" dummy_data_param { shape { dim: 2 dim: 3 } } }\n'
    assert infer_shapes(net(dummy)).tops["d"] == [(2, 3), (2, 3)]


def test_errors_name_the_line_of_a_loaded_model(write_text):
    path = write_text(
        "small.prototxt",
        data(1, 3, 32, 32)
        + layer("pool", "Pooling", "data", "pooling_param { kernel_size: 2 stride: 2 }")
        + "\n"
        + layer("fc6", "Convolution", "pool", "convolution_param { num_output: 8 kernel_size: 7 }")
        + layer("fc7", "Convolution", "fc6", "convolution_param { num_output: 8 kernel_size: 11 }"),
    )
    with pytest.raises(NetStructureError) as info:
        load_caffe(path, weights=None)
    text = str(info.value)
    assert text.startswith(f"{path}:5: layer 'fc7': Convolution: the kernel (11) does not fit in the input height 10")
    assert "Hint: the input is too small for this layer; give a larger one in input_shapes" in text
    assert str(info.value.with_flags(FLAG_SPELLING)).endswith("give a larger one in --input-shape")


# ---------------------------------------------------------------------------------------------
# inspect shows the shapes


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_inspect_shows_output_shapes_and_takes_input_shapes():
    lenet = str(SAMPLES / "lenet" / "lenet.prototxt")
    code, out, err = run(["inspect", lenet, "--input-shape", "data:2,1,28,28"])
    assert code == 0, err
    assert "input: data 2x1x28x28" in out
    assert "pool2 -> ip1       2x500" in out
    code, out, _ = run(["inspect", lenet, "--format", "json"])
    report = json.loads(out)
    assert report["layers"][1]["output_shapes"] == [[64, 20, 24, 24]]
    assert report["inputs"] == [{"name": "data", "shape": [64, 1, 28, 28]}]


def test_inspect_counts_input_dependent_parameters_exactly():
    _, out, _ = run(["inspect", str(corpus_file("bvlc_alexnet.prototxt")), "--format", "json"])
    report = json.loads(out)
    fc6 = next(layer for layer in report["layers"] if layer["name"] == "fc6")
    assert fc6["weights"] == [{"shape": [4096, 9216], "dtype": None}, {"shape": [4096], "dtype": None}]
    assert report["totals"]["parameters"] == 60965224  # AlexNet's published count


def test_inspect_shape_errors(write_text):
    lenet = str(SAMPLES / "lenet" / "lenet.prototxt")
    code, out, err = run(["inspect", lenet, "--input-shape", "data:1,1,8,8", "--format", "json"])
    assert code == 2 and json.loads(out)["error"] == "NetStructureError" and "'conv2'" in err
    for bad, message in [
        ("data", "expected NAME:D0,D1"),
        ("data:1,x", "integers"),
        ("data:1,0", "positive"),
        ("image:1,1,28,28", "no input named 'image'"),
    ]:
        code, _, err = run(["inspect", lenet, "--input-shape", bad])
        assert code == 2 and message in err, (bad, err)
    code, out, err = run(
        ["inspect", str(write_text("py.prototxt", data(1, 2) + layer("py", "Python", "data"))), "--no-weights"]
    )
    assert code == 0 and "warning:" in err and "layer 'py'" in err
    assert any(line.split()[:6] == ["py", "Python", "data", "->", "py", "?"] for line in out.splitlines())


# ---------------------------------------------------------------------------------------------
# Every corpus network, against OpenCV dnn's shapes for the same files

# 230 to 550 MB of weights to write and for OpenCV to read: 1 to 5 s each on 2 cores, > 3 s when loaded.
SLOW = {
    "bvlc_alexnet.prototxt",
    "bvlc_caffenet_full_conv.prototxt",
    "bvlc_reference_caffenet.prototxt",
    "caffenet_v0.prototxt",
    "fcn8s_voc.prototxt",
    "vgg16.prototxt",
}


def corpus_params():
    return [pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name for name in corpus_names()]


@pytest.mark.parametrize("name", corpus_params())
def test_corpus_shapes_equal_opencv(name, tmp_path):
    cv2 = pytest.importorskip("cv2")
    model = load_caffe(corpus_file(name), weights=None)
    (source,) = [layer for layer in model.net.layer if layer.type == "Input"]
    input_shape = [1, *source.input_param.shape[0].dim[1:]]
    shapes = infer_shapes(model.net, {source.top[0]: input_shape})
    assert shapes.diagnostics == []
    assert all(shape is not None for shape in shapes.blobs.values())
    model.weights = random_weights(model.net, shapes)
    save_caffe(model, tmp_path / "n.prototxt", tmp_path / "n.caffemodel")

    opencv = cv2.dnn.readNetFromCaffe(str(tmp_path / "n.prototxt"), str(tmp_path / "n.caffemodel"))
    ids, _, outputs = opencv.getLayersShapes([input_shape])
    compared = set()
    for layer_id, layer_outputs in zip(ids, outputs):
        name_in_opencv = opencv.getLayer(int(layer_id)).name
        if name_in_opencv == "_input":
            continue
        theirs = [tuple(int(d) for d in np.asarray(shape).reshape(-1)) for shape in layer_outputs]
        assert shapes.tops[name_in_opencv] == theirs, name_in_opencv
        compared.add(name_in_opencv)
    assert compared == {layer.name for layer in model.net.layer if layer.type != "Input"}
