"""convert --pool-scores (Caffe): the pooled fcn net equals the original at its input size, and
at a larger size equals the average (or max) over the cells of the unpooled fcn net."""

from __future__ import annotations

import numpy as np
import pytest
from caffe_helpers import assert_close, opencv_blobs, save
from corpus import ROOT

from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions, apply_caffe_plan, plan_caffe_rewrite
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.errors import UsageError

pytest.importorskip("cv2")
MINI = ROOT / "samples" / "caffenet_mini" / "caffenet_mini.prototxt"


def softmax(x, axis=1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pool")
    model = load_caffe(MINI)
    built = {"original": save(model, folder, "original")}
    unpooled = apply_caffe_plan(model, plan_caffe_rewrite(model))
    built["fcn"] = (save(unpooled, folder, "fcn"), unpooled)
    for method in ("avg", "max", "probs-avg"):
        pooled = apply_caffe_plan(model, plan_caffe_rewrite(model, CaffeRewriteOptions(pool_scores=method)))
        built[method] = (save(pooled, folder, method), pooled)
    return model, built


@pytest.mark.parametrize("method", ["avg", "max", "probs-avg"])
def test_pooled_net_equals_original_at_its_size(nets, method):
    model, built = nets
    x = {"data": np.random.RandomState(0).standard_normal((1, 3, 115, 115)).astype(np.float32)}
    want = opencv_blobs(*built["original"], model.net, x, ["prob", "fc8"])
    (files, pooled) = built[method]
    got = opencv_blobs(*files, pooled.net, x, ["prob"])
    assert got["prob"].shape == (1, 10)
    assert_close(got["prob"], want["prob"], what=method)


@pytest.mark.parametrize("method", ["avg", "max", "probs-avg"])
def test_pooled_net_at_a_larger_size_pools_the_cells(nets, method):
    model, built = nets
    x = {"data": np.random.RandomState(1).standard_normal((2, 3, 179, 179)).astype(np.float32)}
    (fcn_files, fcn) = built["fcn"]
    maps = opencv_blobs(*fcn_files, fcn.net, x, ["fc8", "prob"])
    assert maps["fc8"].shape == (2, 10, 3, 3)  # one cell per crop position: a 3 x 3 score map
    (files, pooled) = built[method]
    got = opencv_blobs(*files, pooled.net, x, ["prob"])["prob"]
    assert got.shape == (2, 10)
    if method == "avg":
        want = softmax(maps["fc8"].mean(axis=(2, 3)))
    elif method == "max":
        want = softmax(maps["fc8"].max(axis=(2, 3)))
    else:
        want = softmax(maps["fc8"], axis=1).mean(axis=(2, 3))
    assert_close(got, want.astype(np.float32), rtol=1e-5, what=method)


def test_pool_scores_needs_fcn_mode_and_probs_avg_a_softmax(write_text):
    model = load_caffe(MINI, weights=None)
    with pytest.raises(UsageError, match="needs mode fcn"):
        plan_caffe_rewrite(model, CaffeRewriteOptions(mode="exact", pool_scores="avg"))
    net = MINI.read_text().rsplit('layer {\n  name: "prob"', 1)[0]
    bare = load_caffe(write_text("nosoftmax.prototxt", net), weights=None)
    with pytest.raises(UsageError, match="probs-avg needs a Softmax"):
        plan_caffe_rewrite(bare, CaffeRewriteOptions(pool_scores="probs-avg"))
    plan = plan_caffe_rewrite(bare, CaffeRewriteOptions(pool_scores="max"))
    assert [e.name for e in plan.edits if e.action == "insert"] == ["fc8_pool", "fc8_pool_flatten"]
