"""fcn mode's report on Caffe nets (plan.fcn): stride, smallest input and receptive field from
the layer geometry, confirmed by shape inference and by OpenCV dnn at other sizes; a cell of a
padding-free net's map equals the original net on its crop; what keeps a net at its size is
named, and --input-size is refused where it cannot run."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from caffe_helpers import assert_close, opencv_blobs, save
from corpus import ROOT, corpus_file, corpus_names

from proto_rewrite.caffe import fcn_check
from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions, apply_caffe_plan, plan_caffe_rewrite
from proto_rewrite.caffe.fcn_check import check_fcn
from proto_rewrite.caffe.init_weights import random_weights
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.caffe.shapes import infer_shapes
from proto_rewrite.cli import main
from proto_rewrite.errors import RewriteCheckError
from proto_rewrite.rewrite_plan import AxisGeometry, RewritePlan, Selection

pytest.importorskip("cv2")

SAMPLES = ROOT / "samples"

# Hand-computed, layer by layer: an axis (S - m) // t + 1 long through a window of extent k,
# stride s, padding p becomes (S - m') // (s t) + 1 long with m' = m - (1 + c) t, where c = 2p - k
# for a convolution and 2p - k + s - 1 for a pooling (Caffe rounds up); the receptive field grows
# by (k - 1) t.
#   CaffeNet / AlexNet at 227: conv1 11/4 (t 4, m 11, rf 11), pool1 3/2 (t 8, m 15, rf 19),
#   conv2 5 pad 2 (rf 51), pool2 3/2 (t 16, m 23, rf 67), conv3-5 3 pad 1 (rf 163), pool5 3/2
#   (t 32, m 39, rf 195), fc6 -> 6x6 (m 39 + 5 x 32 = 199, rf 195 + 5 x 32 = 355), fc7, fc8 1x1.
#   The smallest input is 199, not 227: pooling rounds up, so 199 already gives pool5 6 x 6.
#   LeNet at 28: conv1 5 (m 5, rf 5), pool1 2/2 (t 2, m 5, rf 6), conv2 5 (m 13, rf 14), pool2 2/2
#   (t 4, m 13, rf 16), ip1 -> 4x4 (m 25, rf 28), ip2 1x1.
#   caffenet_mini at 115: as CaffeNet up to pool5 (t 32, m 39, rf 195), fc6 -> 3x3 (m 103, rf 259).
#   cifar10_quick at 32: conv 5 pad 2 and pool 3/2 three times (t 8, m 8, rf 43), ip1 -> 4x4
#   (m 32, rf 67).
GEOMETRY = {  # file: (output, stride, min_size, receptive field, planning H = W)
    "bvlc_alexnet.prototxt": ("prob", 32, 199, 355, 227),
    "bvlc_reference_caffenet.prototxt": ("prob", 32, 199, 355, 227),
    "caffenet_v0.prototxt": ("prob", 32, 199, 355, 227),
    "lenet.prototxt": ("prob", 4, 25, 28, 28),
    "cifar10_quick.prototxt": ("prob", 8, 32, 67, 32),
    "samples/lenet": ("prob", 4, 25, 28, 28),
    "samples/caffenet_mini": ("prob", 32, 103, 259, 115),
}


def net_path(name: str):
    if name.startswith("samples/"):
        stem = name.split("/")[1]
        return SAMPLES / stem / f"{stem}.prototxt"
    return corpus_file(name)


def narrow(model, width: int = 8):
    """The same geometry with ``width`` channels everywhere (and random weights): cheap to run."""
    for layer in model.net.layer:
        if layer.type == "Convolution":
            layer.convolution_param.num_output = width
        elif layer.type == "InnerProduct":
            layer.inner_product_param.num_output = width
    shapes = infer_shapes(model.net, {"data": (1, *infer_shapes(model.net).blobs["data"][1:])})
    model.weights = random_weights(model.net, shapes, 3)
    return model


def one_map(plan):
    assert plan.fcn is not None and plan.fcn.fully_convolutional, plan.render_text()
    assert plan.fcn.proof == "caffe-shapes" and not plan.fcn.blockers
    (score,) = plan.fcn.score_maps
    return score


@pytest.mark.parametrize("name", sorted(GEOMETRY))
def test_geometry_equals_the_hand_computed_values(name):
    output, stride, min_size, field, size = GEOMETRY[name]
    model = load_caffe(net_path(name), weights=None)
    plan = plan_caffe_rewrite(model)
    score = one_map(plan)
    axis = AxisGeometry(stride, min_size, field)
    assert (score.output, score.input, score.height, score.width) == (output, "data", axis, axis)
    assert score.size_at(size, size) == (1, 1)
    checked = [sizes["data"][2:] for sizes in plan.fcn.checked_sizes]
    assert checked == [(size, size), (size + stride, size + stride), (size + 2 * stride, size + 2 * stride)]
    text = plan.render_text()
    assert f"stride {stride}x{stride}, receptive field {field}x{field}" in text
    assert f"h = (H - {min_size}) // {stride} + 1" in text
    assert RewritePlan.from_dict(json.loads(plan.to_json())).fcn == plan.fcn


def test_the_hand_made_full_conv_caffenet_has_the_same_geometry():
    model = load_caffe(corpus_file("bvlc_caffenet_full_conv.prototxt"), weights=None)
    report = check_fcn(model.net, {"data": (1, 3, 451, 451)})
    assert report.fully_convolutional and not report.blockers
    (score,) = report.score_maps
    assert score.height == score.width == AxisGeometry(32, 199, 355)
    assert score.size_at(451, 451) == (8, 8)  # the 8 x 8 map of Caffe's net surgery example
    # and through convert: nothing to rewrite, but --input-size is checked and reported
    plan = plan_caffe_rewrite(model, CaffeRewriteOptions(input_size=(483, 515)))
    assert one_map(plan).size_at(483, 515) == (9, 10)
    assert "score maps at --input-size 483 x 515: prob 9x10" in plan.render_text()


OPENCV_SIZES = {  # net: (H, W) sizes to run at, beyond the planning size
    "bvlc_alexnet.prototxt": [(199, 199), (259, 291), (300, 270)],
    "caffenet_v0.prototxt": [(259, 259), (230, 262)],
    "lenet.prototxt": [(25, 25), (44, 60), (47, 50)],
    "samples/caffenet_mini": [(179, 211), (179, 147), (150, 200)],  # 179 x 211: the README example
    "cifar10_quick.prototxt": [(48, 40), (51, 33)],
    "bvlc_googlenet.prototxt": [(223, 223), (288, 260)],  # Concat of the inception branches
    "resnet50.prototxt": [(195, 195), (260, 300)],  # Eltwise of the shortcuts
}


@pytest.mark.parametrize("name", sorted(OPENCV_SIZES))
def test_opencv_gives_the_predicted_map_size(name, tmp_path):
    model = narrow(load_caffe(net_path(name), weights=None))
    plan = plan_caffe_rewrite(model)
    score = one_map(plan)
    converted = apply_caffe_plan(model, plan)
    files = save(converted, tmp_path, "fcn")
    rng = np.random.RandomState(0)
    channels = plan.input_shapes["data"][1]
    for height, width in OPENCV_SIZES[name]:
        x = {"data": rng.standard_normal((1, channels, height, width)).astype(np.float32)}
        got = opencv_blobs(*files, converted.net, x, [score.output])[score.output]
        assert got.shape[2:] == score.size_at(height, width), (height, width)


def test_below_the_smallest_input_the_converted_net_does_not_run():
    model = load_caffe(corpus_file("bvlc_alexnet.prototxt"), weights=None)
    converted = apply_caffe_plan(model, plan_caffe_rewrite(model))
    assert infer_shapes(converted.net, {"data": (1, 3, 199, 199)}).blobs["prob"] == (1, 1000, 1, 1)
    with pytest.raises(Exception, match="does not fit"):
        infer_shapes(converted.net, {"data": (1, 3, 198, 199)})


def test_every_cell_equals_the_original_on_its_crop(tmp_path):
    """LeNet has no padding: cell (i, j) of the map over a 44 x 52 image is the original net on
    the 28 x 28 crop at (4 i, 4 j), with the sample's weights."""
    model = load_caffe(SAMPLES / "lenet" / "lenet.prototxt")
    plan = plan_caffe_rewrite(model)
    score = one_map(plan)
    converted = apply_caffe_plan(model, plan)
    original_files, converted_files = save(model, tmp_path, "original"), save(converted, tmp_path, "fcn")
    image = np.random.RandomState(5).standard_normal((1, 1, 44, 52)).astype(np.float32)
    rows, cols = score.size_at(44, 52)
    assert (rows, cols) == (5, 7)
    dense = opencv_blobs(*converted_files, converted.net, {"data": image}, ["ip2"])["ip2"]
    assert dense.shape == (1, 10, rows, cols)
    stride = score.height.stride
    crops = np.concatenate(
        [
            image[:, :, stride * i : stride * i + 28, stride * j : stride * j + 28]
            for i in range(rows)
            for j in range(cols)
        ]
    )
    per_crop = opencv_blobs(*original_files, model.net, {"data": crops}, ["ip2"])["ip2"]
    assert_close(dense[0].transpose(1, 2, 0).reshape(rows * cols, 10), per_crop, what="cells vs crops")


# An unconverted net: its first FC keeps it at its size; nets without FC run at any size.
CORPUS_BLOCKERS = {
    "bvlc_alexnet.prototxt": "fc6",
    "bvlc_reference_caffenet.prototxt": "fc6",
    "caffenet_v0.prototxt": "fc6",
    "bvlc_googlenet.prototxt": "loss3/classifier",
    "resnet50.prototxt": "fc1000",
    "lenet.prototxt": "ip1",
    "cifar10_quick.prototxt": "ip1",
    "vgg16.prototxt": "fc6",
    "ssd300_vgg16_voc.prototxt": "conv4_3_norm_mbox_loc_perm",  # Permute: H, W move to axes 1, 2
    "bvlc_caffenet_full_conv.prototxt": None,
    "fcn8s_voc.prototxt": None,
    "mobilenet_v1.prototxt": None,
    "squeezenet_v1_1.prototxt": None,
    "densenet121.prototxt": None,
}


@pytest.mark.parametrize("name", corpus_names())
def test_corpus_net_as_it_is(name):
    model = load_caffe(corpus_file(name), weights=None)
    shapes = infer_shapes(model.net)
    inputs = {top: shapes.blobs[top] for layer in model.net.layer if not layer.bottom for top in layer.top}
    report = check_fcn(model.net, inputs)
    first = CORPUS_BLOCKERS[name]
    assert report.proof == "caffe-shapes"
    assert report.fully_convolutional == (first is None), report
    assert (report.blockers[0].name if report.blockers else None) == first
    if name == "fcn8s_voc.prototxt":  # conv1_1's pad 100 has no stride formula: no claim, said why
        assert not report.score_maps and "conv1_1 (Convolution) pads more than its window needs" in report.note
    if name in ("mobilenet_v1.prototxt", "squeezenet_v1_1.prototxt", "densenet121.prototxt"):
        assert (
            not report.score_maps and "fcn mode gains nothing" in report.note and "pools the whole map" in report.note
        )


# --- what keeps a net at its size -------------------------------------------------------------

TINY = """
name: "Tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1" inner_product_param { num_output: 6 } }
layer { name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }
layer { name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2" inner_product_param { num_output: 3 } }
"""
BAKED = (
    TINY
    + """
layer { name: "baked" type: "Reshape" bottom: "ip2" top: "flat" reshape_param { shape { dim: 1 dim: 3 } } }
layer { name: "prob" type: "Softmax" bottom: "flat" top: "prob" }
"""
)
FLATTEN = (
    TINY
    + """
layer { name: "flat" type: "Flatten" bottom: "ip2" top: "flat" }
layer { name: "prob" type: "Softmax" bottom: "flat" top: "prob" }
"""
)
SOFTMAX = TINY + 'layer { name: "prob" type: "Softmax" bottom: "ip2" top: "prob" }\n'
ARGMAX = TINY + 'layer { name: "best" type: "ArgMax" bottom: "ip2" top: "best" }\n'
REDUCTION = TINY + 'layer { name: "total" type: "Reduction" bottom: "ip2" top: "total" }\n'
DECONV = """
name: "Up"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 12 dim: 12 } } }
layer { name: "up" type: "Deconvolution" bottom: "data" top: "up" convolution_param { num_output: 1 kernel_size: 2 stride: 2 } }
layer { name: "conv1" type: "Convolution" bottom: "up" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "conv1" top: "ip1" inner_product_param { num_output: 3 } }
"""
GLOBAL = """
name: "Global"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 12 dim: 12 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "gap" type: "Pooling" bottom: "conv1" top: "gap" pooling_param { pool: AVE global_pooling: true } }
layer { name: "ip1" type: "InnerProduct" bottom: "gap" top: "ip1" inner_product_param { num_output: 3 } }
"""
# two branches, 6 x 6 at 12 x 12 but 7 x 7 against 8 x 8 at 14 x 14 (shape inference says so)
ELTWISE = """
name: "Branches"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 12 dim: 12 } } }
layer { name: "a" type: "Convolution" bottom: "data" top: "a" convolution_param { num_output: 2 kernel_size: 2 stride: 2 } }
layer { name: "b" type: "Convolution" bottom: "data" top: "b" convolution_param { num_output: 2 kernel_size: 7 } }
layer { name: "sum" type: "Eltwise" bottom: "a" bottom: "b" top: "sum" }
layer { name: "ip1" type: "InnerProduct" bottom: "sum" top: "ip1" inner_product_param { num_output: 3 } }
"""
# two branches that agree at the odd sizes 13, 15, 17 (the checked ones) but not at even sizes: only
# the geometry sees it
ELTWISE_ODD = ELTWISE.replace("dim: 12 dim: 12", "dim: 13 dim: 13").replace(
    "kernel_size: 7", "kernel_size: 3 stride: 2"
)
# b is cropped to a's size: fine at 13, 15, 17, but at 14 b is 6 long and a 7
CROP = ELTWISE_ODD.replace('type: "Eltwise" bottom: "a" bottom: "b"', 'type: "Crop" bottom: "b" bottom: "a"').replace(
    '"sum"', '"crop"'
)


def tiny(write_text, text, name="net.prototxt"):
    return load_caffe(write_text(name, text), weights=None)


def test_a_plain_tiny_net_is_fully_convolutional(write_text):
    plan = plan_caffe_rewrite(tiny(write_text, SOFTMAX))
    assert one_map(plan).height == AxisGeometry(2, 11, 12)
    assert "fully convolutional: yes (proof: caffe-shapes" in plan.render_text()


@pytest.mark.parametrize(
    "text, layer, words",
    [
        (BAKED, "baked", "new shape 1x3 has 3 elements"),
        (FLATTEN, "flat", "flattens (reshapes) a map"),
        (ARGMAX, "best", "takes the maximum over the whole map"),
        (REDUCTION, "total", "reduces a map whose size changes with the input to a fixed scalar"),
        (ELTWISE, "sum", "inputs must all have the same shape; they are 1x2x7x7, 1x2x8x8"),
        (ELTWISE_ODD, "sum", "at input height 14 they are 7 and 6 long"),
        (CROP, "crop", "at input height 14 it cannot crop 7 from 6 at offset 0"),
    ],
    ids=["baked-reshape", "flatten", "argmax", "reduction", "eltwise", "eltwise-geometry", "crop-geometry"],
)
def test_a_blocker_is_named_and_nothing_claimed(write_text, text, layer, words):
    plan = plan_caffe_rewrite(tiny(write_text, text))
    report = plan.fcn
    assert not report.fully_convolutional and report.proof == "caffe-shapes"
    assert [b.name for b in report.blockers] == [layer] and words in report.blockers[0].why
    assert not report.score_maps
    text = plan.render_text()
    assert f"blocked by {layer}" in text and "fully convolutional: no" in text
    assert "any input size" not in text


def test_a_geometry_that_disagrees_with_the_inferred_shapes_is_not_claimed(write_text, monkeypatch):
    real = fcn_check._compose

    def off_by_one(axis, window):
        good = real(axis, window)
        return AxisGeometry(good.stride, good.min_size + 1, good.receptive_field)

    monkeypatch.setattr(fcn_check, "_compose", off_by_one)
    report = plan_caffe_rewrite(tiny(write_text, SOFTMAX)).fcn
    assert report.fully_convolutional and not report.score_maps  # it runs; the map's formula is not claimed
    assert (
        "no stride claimed for prob: the layer geometry predicts 0 x 0 at input 12 x 12, shape inference gives "
        "1x3x1x1" in report.note
    )


def test_an_excluded_fc_whose_input_grows_is_a_blocker(write_text):
    plan = plan_caffe_rewrite(
        tiny(write_text, SOFTMAX), CaffeRewriteOptions(selection=Selection(exclude=frozenset({"ip1"})))
    )
    (blocker,) = plan.fcn.blockers
    assert (blocker.name, blocker.op) == ("ip1", "InnerProduct")
    assert "weights are shaped for the planning size" in blocker.why and "6x144" in blocker.why
    assert not plan.fcn.fully_convolutional and not plan.fcn.score_maps


def test_input_size_is_refused_where_a_blocker_fails(write_text):
    model = tiny(write_text, BAKED)
    with pytest.raises(RewriteCheckError, match="cannot run at input_size 16 16") as caught:
        plan_caffe_rewrite(model, CaffeRewriteOptions(input_size=(16, 16)))
    assert caught.value.location.layer == "baked" and caught.value.hint
    # at the planning size nothing changes: not refused
    plan_caffe_rewrite(model, CaffeRewriteOptions(input_size=(12, 12)))


def test_operands_that_disagree_at_some_sizes_refuse_those_and_block_the_claim(write_text):
    model = tiny(write_text, ELTWISE_ODD)
    with pytest.raises(RewriteCheckError, match=r"sum \(Eltwise\): .* 1x2x7x7, 1x2x6x7"):
        plan_caffe_rewrite(model, CaffeRewriteOptions(input_size=(14, 15)))
    report = plan_caffe_rewrite(model, CaffeRewriteOptions(input_size=(15, 15))).fcn  # runs there
    assert not report.fully_convolutional and [b.name for b in report.blockers] == ["sum"]


def test_a_map_after_global_pooling_gains_nothing(write_text):
    plan = plan_caffe_rewrite(tiny(write_text, GLOBAL))
    report = plan.fcn
    assert report.fully_convolutional and not report.score_maps
    assert (
        "fcn mode gains nothing for ip1: it stays 1x3x1x1" in report.note and "gap pools the whole map" in report.note
    )


def test_a_deconvolution_leaves_the_map_size_uncomputed(write_text):
    report = plan_caffe_rewrite(tiny(write_text, DECONV)).fcn
    assert report.fully_convolutional and not report.score_maps
    assert "ip1 is a map whose size is not computed (after up (Deconvolution))" in report.note


@pytest.mark.parametrize("method", ["avg", "max", "probs-avg"])
def test_pool_scores_outputs_are_fixed_again(write_text, method):
    plan = plan_caffe_rewrite(tiny(write_text, SOFTMAX), CaffeRewriteOptions(pool_scores=method))
    report = plan.fcn
    assert report.fully_convolutional and report.proof == "caffe-shapes" and not report.score_maps
    assert "prob is 1x3 at every checked size" in report.note and "--pool-scores gives (N, K) back" in report.note
    assert "a map of stride 2x2" in report.note


def test_pool_scores_makes_a_baked_reshape_after_the_pool_harmless(write_text):
    report = plan_caffe_rewrite(tiny(write_text, BAKED), CaffeRewriteOptions(pool_scores="avg")).fcn
    assert report.fully_convolutional and not report.blockers  # the Reshape reads the pooled (1, 3)


def test_pool_scores_does_not_hide_a_blocker(write_text):
    options = CaffeRewriteOptions(pool_scores="avg", selection=Selection(exclude=frozenset({"ip1"})))
    report = plan_caffe_rewrite(tiny(write_text, SOFTMAX), options).fcn
    assert not report.fully_convolutional and [b.name for b in report.blockers] == ["ip1"]


def test_exact_mode_has_no_fcn_report():
    model = load_caffe(SAMPLES / "lenet" / "lenet.prototxt", weights=None)
    assert plan_caffe_rewrite(model, CaffeRewriteOptions(mode="exact")).fcn is None


# --- command line -----------------------------------------------------------------------------


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    return main([str(a) for a in argv], stdout=out, stderr=err), out.getvalue(), err.getvalue()


def test_cli_refuses_input_size_with_a_baked_reshape(tmp_path):
    source = tmp_path / "in" / "baked.prototxt"
    source.parent.mkdir()
    source.write_text(BAKED)
    before = source.read_bytes()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, out, err = run(["convert", source, "-o", out_dir / "fcn.prototxt", "--input-size", "16", "16"])
    assert code == 2, err
    assert "layer 'baked'" in err and "cannot run at --input-size 16 16" in err and "Hint:" in err
    assert "Traceback" not in err
    assert list(out_dir.iterdir()) == [] and source.read_bytes() == before
    assert sorted(p.name for p in source.parent.iterdir()) == ["baked.prototxt"]
    # without --input-size: converted, and the report says what blocks
    code, out, err = run(["convert", source, "--dry-run"])
    assert code == 0, err
    assert "fully convolutional: no" in out and "blocked by baked (Reshape)" in out


def test_cli_json_plan_has_the_fcn_report():
    code, out, err = run(
        ["convert", SAMPLES / "caffenet_mini" / "caffenet_mini.prototxt", "--dry-run", "--format", "json"]
    )
    assert code == 0, err
    fcn = json.loads(out)["plan"]["fcn"]
    assert fcn["fully_convolutional"] is True and fcn["proof"] == "caffe-shapes"
    assert fcn["checked_sizes"][0] == {"data": [1, 3, 115, 115]}
    (score,) = fcn["score_maps"]
    assert score["output"] == "prob" and score["height"] == {"stride": 32, "min_size": 103, "receptive_field": 259}
    assert fcn["blockers"] == []
