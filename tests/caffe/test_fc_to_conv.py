"""The InnerProduct -> Convolution rewrite: structure and numbers (OpenCV dnn), the reference
result of Caffe's net surgery example, skips and their reasons, idempotence, determinism."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from caffe_helpers import assert_close, batch_one, opencv_blobs, opencv_outputs, output_blobs, save, with_random_weights
from corpus import ROOT, corpus_file

from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions, apply_caffe_plan, plan_caffe_rewrite
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.caffe.shapes import infer_shapes
from proto_rewrite.errors import RewriteCheckError, RewriteRefused, UsageError
from proto_rewrite.rewrite_plan import EXACT, FCN, Reason, RewritePlan, Selection

pytest.importorskip("cv2")


def convert(model, **options):
    plan = plan_caffe_rewrite(model, CaffeRewriteOptions(**options))
    return plan, apply_caffe_plan(model, plan)


# --- the reference result ---------------------------------------------------------------------


def test_matches_caffes_hand_made_full_conv_caffenet():
    model = load_caffe(corpus_file("bvlc_reference_caffenet.prototxt"), weights=None)
    _, converted = convert(model, input_size=(451, 451), rename_suffix="-conv")
    reference = load_caffe(corpus_file("bvlc_caffenet_full_conv.prototxt"), weights=None)
    assert len(converted.net.layer) == len(reference.net.layer)
    for ours, theirs in zip(converted.net.layer, reference.net.layer):
        assert (ours.name, ours.type, list(ours.bottom), list(ours.top)) == (
            theirs.name,
            theirs.type,
            list(theirs.bottom),
            list(theirs.top),
        )
        assert ours.convolution_param == theirs.convolution_param, ours.name
        assert ours.pooling_param == theirs.pooling_param
    assert list(converted.net.layer[0].input_param.shape[0].dim)[2:] == [451, 451]


# --- every corpus net with FC layers, in OpenCV -------------------------------------------------

FC_NETS = {  # name: (FC layers, larger input H W for the score map)
    "lenet.prototxt": (["ip1", "ip2"], (36, 36)),
    "cifar10_quick.prototxt": (["ip1", "ip2"], (48, 48)),
    "bvlc_alexnet.prototxt": (["fc6", "fc7", "fc8"], (259, 259)),
    "bvlc_reference_caffenet.prototxt": (["fc6", "fc7", "fc8"], (259, 259)),
    "caffenet_v0.prototxt": (["fc6", "fc7", "fc8"], (259, 259)),
    "bvlc_googlenet.prototxt": (["loss3/classifier"], (256, 256)),
    "resnet50.prototxt": (["fc1000"], (256, 256)),
    "vgg16.prototxt": (["fc6", "fc7", "fc8"], (256, 256)),
}
HEAVY = {"bvlc_alexnet.prototxt", "bvlc_reference_caffenet.prototxt", "caffenet_v0.prototxt", "vgg16.prototxt"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in FC_NETS])
def test_corpus_net_converts_and_computes_the_same(name, tmp_path):
    fc_layers, larger = FC_NETS[name]
    model = with_random_weights(corpus_file(name))
    original_prototxt, original_weights = save(model, tmp_path, "original")
    input_shapes = batch_one(model)
    rng = np.random.RandomState(1)
    inputs = {blob: rng.standard_normal(shape).astype(np.float32) for blob, shape in input_shapes.items()}
    # the net outputs, and the logits too (a softmax can hide differences)
    blobs = output_blobs(model.net) + [model.layer(fc_layers[-1]).top[0]]
    expected = opencv_blobs(original_prototxt, original_weights, model.net, inputs, blobs)

    for mode in (EXACT, FCN):
        plan, converted = convert(model, mode=mode)
        assert [r.name for r in plan.rewrites] == fc_layers and not plan.skips
        assert not any(layer.type == "InnerProduct" for layer in converted.net.layer)
        prototxt, weights = save(converted, tmp_path, mode)
        actual = opencv_blobs(prototxt, weights, converted.net, inputs, blobs)
        for layer, want in expected.items():
            got = actual[layer]
            if mode == FCN:
                assert got.shape[:2] == want.shape[:2] and got.shape[2:] in ((), (1, 1)), (layer, got.shape)
                got = got.reshape(want.shape)
            assert_close(got, want, what=f"{name} {mode} {layer}")

    # fcn at a larger input: a score map, of the size shape inference predicts
    plan, converted = convert(model, mode=FCN)
    prototxt, weights = save(converted, tmp_path, "fcn")
    big = {blob: rng.standard_normal((1, shape[1], *larger)).astype(np.float32) for blob, shape in input_shapes.items()}
    predicted = infer_shapes(converted.net, {blob: x.shape for blob, x in big.items()})
    score = opencv_outputs(prototxt, weights, big, [fc_layers[-1]])[fc_layers[-1]]
    top = converted.net.layer[[layer.name for layer in converted.net.layer].index(fc_layers[-1])].top[0]
    assert score.shape == tuple(predicted.blobs[top])
    assert score.shape[2] > 1 and score.shape[3] > 1, score.shape


def test_score_map_cells_are_the_crops():
    """On a larger input, each cell of the fcn score map is the original net on that crop."""
    model = with_random_weights(corpus_file("lenet.prototxt"))
    _, converted = convert(model, mode=FCN)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        original = save(model, folder, "original")
        fcn = save(converted, folder, "fcn")
        image = np.random.RandomState(5).standard_normal((1, 1, 36, 36)).astype(np.float32)
        scores = opencv_outputs(*fcn, {"data": image}, ["ip2"])["ip2"]
        assert scores.shape == (1, 10, 3, 3)  # stride 4 (two 2x2 pools): 28 + 2*4 = 36
        for row in range(3):
            for col in range(3):
                crop = np.ascontiguousarray(image[:, :, 4 * row : 4 * row + 28, 4 * col : 4 * col + 28])
                cell = opencv_outputs(*original, {"data": crop}, ["ip2"])["ip2"]
                assert_close(scores[:, :, row, col], cell, what=f"cell {row},{col}")


# --- weights ----------------------------------------------------------------------------------


def test_fc_kernels_are_the_same_bytes_and_other_weights_untouched():
    model = load_caffe(ROOT / "samples" / "caffenet_mini" / "caffenet_mini.prototxt")
    plan, converted = convert(model)
    for name, arrays in model.weights.items():
        if name.startswith("fc"):
            assert converted.weights[name][0].shape[2:] == ((3, 3) if name == "fc6" else (1, 1))
        for before, after in zip(arrays, converted.weights[name]):
            assert before.tobytes() == after.tobytes()
    assert [w.transform for r in plan.rewrites for w in r.weights] == ["reshape", "unchanged"] * 3


TRANSPOSED = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 4 dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 5 transpose: true } }
"""


def test_transposed_fc_weight_is_transposed_into_the_kernel(write_text):
    model = load_caffe(write_text("t.prototxt", TRANSPOSED), weights=None)
    weight = np.random.RandomState(0).standard_normal((48, 5)).astype(np.float32)
    model.weights = {"fc": [weight, np.zeros(5, np.float32)]}
    plan, converted = convert(model)
    assert plan.rewrites[0].weights[0].transform == "transpose"
    kernel = converted.weights["fc"][0]
    x = np.random.RandomState(1).standard_normal((2, 3, 4, 4))
    np.testing.assert_allclose(np.einsum("mchw,nchw->nm", kernel, x), x.reshape(2, -1) @ weight, rtol=1e-5)


# --- flatten folding, 2-D inputs, exact mode ---------------------------------------------------

FLATTEN_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "flat" type: "Flatten" bottom: "conv" top: "flat" }
layer { name: "drop" type: "Dropout" bottom: "flat" top: "flat" }
layer { name: "fc1" type: "InnerProduct" bottom: "flat" top: "fc1" inner_product_param { num_output: 6 } }
layer { name: "relu" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" inner_product_param { num_output: 3 } }
layer { name: "prob" type: "Softmax" bottom: "fc2" top: "prob" }
"""
SHARED_FLATTEN_NET = FLATTEN_NET + 'layer { name: "also" type: "Concat" bottom: "flat" bottom: "fc2" top: "also" }\n'
MLP_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 3 dim: 7 } } }
layer { name: "fc1" type: "InnerProduct" bottom: "data" top: "fc1" inner_product_param { num_output: 6 } }
layer { name: "relu" type: "ReLU" bottom: "fc1" top: "fc1" }
layer { name: "fc2" type: "InnerProduct" bottom: "fc1" top: "fc2" inner_product_param { num_output: 3 } }
"""


def random_model(path, seed=0):
    return with_random_weights(path, seed)


@pytest.mark.parametrize(
    "mode, text, folded, reshaped",
    [
        (EXACT, FLATTEN_NET, ["flat"], []),
        (FCN, FLATTEN_NET, ["flat"], []),
        (EXACT, SHARED_FLATTEN_NET, [], ["fc1_reshape"]),
        (EXACT, MLP_NET, [], ["fc1_reshape"]),
        (FCN, MLP_NET, [], ["fc1_reshape"]),
    ],
)
def test_flatten_and_2d_inputs(write_text, tmp_path, mode, text, folded, reshaped):
    model = random_model(write_text("n.prototxt", text))
    plan, converted = convert(model, mode=mode)
    assert [e.name for e in plan.edits if e.action == "remove"] == folded
    assert [e.name for e in plan.edits if e.action == "insert" and e.op == "Reshape"] == reshaped
    names = [layer.name for layer in converted.net.layer]
    assert all(name not in names for name in folded)
    original = save(model, tmp_path, "o")
    result = save(converted, tmp_path, mode)
    shape = batch_one(model)["data"]
    x = {"data": np.random.RandomState(2).standard_normal(shape).astype(np.float32)}
    blobs = sorted(set(output_blobs(model.net)) | {"fc2"})
    want = opencv_blobs(*original, model.net, x, blobs)
    got = opencv_blobs(*result, converted.net, x, blobs)
    for layer in want:
        value = (
            got[layer]
            if mode == EXACT or got[layer].shape == want[layer].shape
            else got[layer].reshape(want[layer].shape)
        )
        assert_close(value, want[layer], what=f"{mode} {layer}")
    if mode == EXACT:
        final = infer_shapes(converted.net)
        for blob, shape in infer_shapes(model.net).blobs.items():
            if blob in final.blobs and blob in ("prob", "fc2", "also"):
                assert final.blobs[blob] == shape


def test_fcn_refuses_a_net_that_needs_the_flat_output(write_text):
    """Concat of the flat blob with the FC output only works in exact mode: fcn says so."""
    model = load_caffe(write_text("n.prototxt", SHARED_FLATTEN_NET), weights=None)
    with pytest.raises(RewriteCheckError, match="layer 'also'|Concat") as info:
        plan_caffe_rewrite(model, CaffeRewriteOptions(mode=FCN))
    assert "mode exact" in info.value.hint and "--mode exact" in info.value.with_flags().hint


# --- selection, skips and their reasons ------------------------------------------------------

AXIS_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 4 axis: 2 } }
layer { name: "fc_ok" type: "InnerProduct" bottom: "data" top: "fc_ok" inner_product_param { num_output: 4 } }
"""
SHARED_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 } } }
layer { name: "a" type: "InnerProduct" bottom: "data" top: "a" param { name: "w" } inner_product_param { num_output: 4 bias_term: false } }
layer { name: "b" type: "InnerProduct" bottom: "a" top: "b" param { name: "w" } inner_product_param { num_output: 4 bias_term: false } }
"""
UNKNOWN_NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 dim: 2 dim: 2 } } }
layer { name: "py" type: "Python" bottom: "data" top: "py" python_param { module: "m" layer: "L" } }
layer { name: "fc" type: "InnerProduct" bottom: "py" top: "fc" inner_product_param { num_output: 4 } }
"""


@pytest.mark.parametrize(
    "text, layer, reason",
    [
        (AXIS_NET, "fc", Reason.UNSUPPORTED_AXIS),
        (SHARED_NET, "a", Reason.SHARED_WEIGHTS),
        (UNKNOWN_NET, "fc", Reason.INPUT_SHAPE_UNKNOWN),
    ],
)
def test_skip_reasons_and_explicit_request_errors(write_text, text, layer, reason):
    model = load_caffe(write_text("s.prototxt", text), weights=None)
    plan = plan_caffe_rewrite(model)
    assert (layer, reason) in [(s.name, s.reason) for s in plan.skips]
    assert layer not in [r.name for r in plan.rewrites]
    with pytest.raises(RewriteRefused) as info:
        plan_caffe_rewrite(model, CaffeRewriteOptions(selection=Selection.from_options(only=layer)))
    assert info.value.reason == reason.value and info.value.location.layer == layer


def test_element_count_mismatch_is_a_skip_never_a_coercion(write_text):
    """The nasty case: the weight has C*H*W values, but not as (M, C*H*W)."""
    model = load_caffe(write_text("t.prototxt", TRANSPOSED.replace(" transpose: true", "")), weights=None)
    model.weights = {"fc": [np.zeros((48, 5), np.float32), np.zeros(5, np.float32)]}  # 240 values, wrong layout
    plan = plan_caffe_rewrite(model)
    assert [(s.name, s.reason) for s in plan.skips] == [("fc", Reason.ELEMENT_COUNT_MISMATCH)]
    with pytest.raises(RewriteRefused, match="needs \\[5, 48\\]"):
        plan_caffe_rewrite(model, CaffeRewriteOptions(selection=Selection.from_options(only="fc")))


def test_selection_options():
    model = load_caffe(corpus_file("bvlc_reference_caffenet.prototxt"), weights=None)
    plan = plan_caffe_rewrite(model, CaffeRewriteOptions(selection=Selection.from_options(exclude="fc8")))
    assert [r.name for r in plan.rewrites] == ["fc6", "fc7"]
    assert [(s.name, s.reason) for s in plan.skips] == [("fc8", Reason.NOT_SELECTED)]
    plan = plan_caffe_rewrite(model, CaffeRewriteOptions(selection=Selection.from_options(match="fc[67]")))
    assert [r.name for r in plan.rewrites] == ["fc6", "fc7"]
    with pytest.raises(UsageError, match="fc9"):
        plan_caffe_rewrite(model, CaffeRewriteOptions(selection=Selection.from_options(only="fc9")))


def test_plan_round_trips_through_json():
    model = load_caffe(ROOT / "samples" / "lenet" / "lenet.prototxt")
    plan = plan_caffe_rewrite(model, CaffeRewriteOptions(mode=EXACT, rename_suffix="-conv"))
    again = RewritePlan.from_dict(plan.to_dict())
    assert again == plan
    assert apply_caffe_plan(model, again).net == apply_caffe_plan(model, plan).net


# --- idempotence and determinism ----------------------------------------------------------------


def test_converting_twice_changes_nothing(tmp_path):
    model = load_caffe(ROOT / "samples" / "caffenet_mini" / "caffenet_mini.prototxt")
    _, once = convert(model)
    first = save(once, tmp_path, "once")
    plan, twice = convert(load_caffe(first[0], first[1]))
    assert not plan.changes_anything and not plan.skips
    second = save(twice, tmp_path, "twice")
    assert first[0].read_bytes() == second[0].read_bytes()
    assert first[1].read_bytes() == second[1].read_bytes()


def test_output_is_byte_deterministic_across_processes(tmp_path):
    sample = ROOT / "samples" / "lenet" / "lenet.prototxt"
    code = (
        "import sys; from proto_rewrite.cli import main; "
        "sys.exit(main(['convert', sys.argv[1], '-o', sys.argv[2], '-q']))"
    )
    outputs = []
    for run in range(2):
        out = tmp_path / f"run{run}.prototxt"
        subprocess.run([sys.executable, "-c", code, str(sample), str(out)], check=True, cwd=ROOT)
        outputs.append((out.read_bytes(), out.with_suffix(".caffemodel").read_bytes()))
    assert outputs[0] == outputs[1]
