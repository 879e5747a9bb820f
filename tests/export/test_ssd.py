"""SSD's PriorBox and DetectionOutput against the numpy port of the SSD fork's code: the priors
within float32 rounding, the detections row for row in Caffe's order (image, label, score)."""

from __future__ import annotations

import caffe_reference as ref
import numpy as np
import pytest
from export_helpers import (
    assert_rel,
    caffe_net,
    canonical_rows,
    input_layer,
    rng_input,
    run,
)

PRIOR_CASES = {  # name: (arguments of the reference, prior_box_param)
    "ssd conv4_3": (
        {"min_sizes": [30], "max_sizes": [60], "aspect_ratios": [2], "variance": (0.1, 0.1, 0.2, 0.2), "step": 8},
        (
            "min_size: 30 max_size: 60 aspect_ratio: 2 flip: true clip: false variance: 0.1 variance: 0.1 "
            "variance: 0.2 variance: 0.2 step: 8 offset: 0.5"
        ),
    ),
    "two min sizes, ratios, clip": (
        {"min_sizes": [20, 41.5], "max_sizes": [40, 80], "aspect_ratios": [2, 3, 2.0000001], "clip": True},
        (
            "min_size: 20 min_size: 41.5 max_size: 40 max_size: 80 aspect_ratio: 2 aspect_ratio: 3 "
            "aspect_ratio: 2.0000001 clip: true"
        ),
    ),
    "no max, no flip, one variance": (
        {"min_sizes": [25], "aspect_ratios": [0.5], "flip": False, "variance": (0.2,), "offset": 0.3},
        "min_size: 25 aspect_ratio: 0.5 flip: false variance: 0.2 offset: 0.3",
    ),
}


@pytest.mark.parametrize("case", sorted(PRIOR_CASES))
def test_prior_box(tmp_path, case):
    expected_args, params = PRIOR_CASES[case]
    text = (
        input_layer(1, 4, 5, 6, name="feature")
        + input_layer(1, 3, 60, 75)
        + f'layer {{ name: "y" type: "PriorBox" bottom: "feature" bottom: "data" top: "y" '
        f"prior_box_param {{ {params} }} }}\n"
    )
    model = caffe_net(tmp_path, text, weights={})
    y = run(model, {"feature": rng_input((1, 4, 5, 6)), "data": rng_input((1, 3, 60, 75))})["y"]
    expected = ref.prior_box(5, 6, 60, 75, **expected_args)
    assert y.shape == expected.shape
    assert_rel(y, expected, 1e-6)


def test_prior_box_matches_opencv(tmp_path):
    cv2 = pytest.importorskip("cv2")
    _, params = PRIOR_CASES["ssd conv4_3"]
    text = (
        input_layer(1, 4, 5, 6, name="feature")
        + input_layer(1, 3, 60, 75)
        + f'layer {{ name: "y" type: "PriorBox" bottom: "feature" bottom: "data" top: "y" '
        f"prior_box_param {{ {params} }} }}\n"
    )
    model = caffe_net(tmp_path, text, weights={})
    feeds = {"feature": rng_input((1, 4, 5, 6)), "data": rng_input((1, 3, 60, 75))}
    y = run(model, feeds)["y"]
    net = cv2.dnn.readNetFromCaffe(str(tmp_path / "net.prototxt"))
    for key, value in feeds.items():
        net.setInput(value, key)
    assert_rel(y, net.forward("y"), 1e-6)


def _detection_inputs(batch, priors, classes, loc_classes, seed=0):
    rs = np.random.RandomState(seed)
    centers = rs.uniform(0.1, 0.9, (priors, 2))
    sizes = rs.uniform(0.05, 0.4, (priors, 2))
    boxes = np.concatenate([centers - sizes / 2, centers + sizes / 2], axis=1)
    variances = np.tile([0.1, 0.1, 0.2, 0.2], (priors, 1))
    prior = np.stack([boxes.reshape(-1), variances.reshape(-1)])[None].astype(np.float32)
    loc = rs.standard_normal((batch, priors * loc_classes * 4)).astype(np.float32)
    logits = rs.standard_normal((batch, priors, classes)) * 2
    conf = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    return loc, conf.reshape(batch, -1).astype(np.float32), prior


DETECTION_CASES = {  # params: detection_output_param; kwargs: arguments of the reference
    "ssd voc": {
        "params": "nms_param { nms_threshold: 0.45 top_k: 40 } keep_top_k: 30 code_type: CENTER_SIZE "
        "confidence_threshold: 0.01",
        "kwargs": {"nms_threshold": 0.45, "top_k": 40, "keep_top_k": 30, "confidence_threshold": 0.01},
    },
    "batch of 3, keep_top_k cuts per image": {
        "batch": 3,
        "params": "nms_param { nms_threshold: 0.5 top_k: 50 } keep_top_k: 7 code_type: CENTER_SIZE",
        "kwargs": {"nms_threshold": 0.5, "top_k": 50, "keep_top_k": 7},
    },
    "no background, no top_k, no keep_top_k": {
        "params": "background_label_id: -1 nms_param { nms_threshold: 0.3 } code_type: CENTER_SIZE",
        "kwargs": {"background": -1, "nms_threshold": 0.3},
    },
    "background 2, threshold": {
        "params": "background_label_id: 2 nms_param { nms_threshold: 0.4 top_k: 20 } confidence_threshold: 0.3 "
        "code_type: CENTER_SIZE",
        "kwargs": {"background": 2, "nms_threshold": 0.4, "top_k": 20, "confidence_threshold": 0.3},
    },
    "locations per class": {
        "share": False,
        "params": "share_location: false nms_param { nms_threshold: 0.45 top_k: 30 } keep_top_k: 25 "
        "code_type: CENTER_SIZE",
        "kwargs": {"share_location": False, "nms_threshold": 0.45, "top_k": 30, "keep_top_k": 25},
    },
    "corner": {
        "params": "nms_param { nms_threshold: 0.45 top_k: 30 } code_type: CORNER",
        "kwargs": {"nms_threshold": 0.45, "top_k": 30, "code_type": "CORNER"},
        "loc_scale": 0.05,
    },
    "corner size, variance in target": {
        "params": "nms_param { nms_threshold: 0.45 top_k: 30 } code_type: CORNER_SIZE variance_encoded_in_target: true",
        "kwargs": {"nms_threshold": 0.45, "top_k": 30, "code_type": "CORNER_SIZE", "encoded": True},
        "loc_scale": 0.05,
    },
    "nothing above the threshold": {
        "batch": 2,
        "params": "nms_param { nms_threshold: 0.45 } confidence_threshold: 0.99 code_type: CENTER_SIZE",
        "kwargs": {"nms_threshold": 0.45, "confidence_threshold": 0.99},
    },
}


@pytest.mark.parametrize("case", sorted(DETECTION_CASES))
def test_detection_output(tmp_path, case):
    spec = DETECTION_CASES[case]
    batch, priors, classes = spec.get("batch", 1), 60, 4
    loc_classes = 1 if spec.get("share", True) else classes
    loc, conf, prior = _detection_inputs(batch, priors, classes, loc_classes)
    loc *= spec.get("loc_scale", 1.0)
    text = (
        input_layer(batch, priors * loc_classes * 4, name="loc")
        + input_layer(batch, priors * classes, name="conf")
        + input_layer(1, 2, priors * 4, name="prior")
        + f'layer {{ name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "prior" top: "det" '
        f"detection_output_param {{ num_classes: {classes} {spec['params']} }} }}\n"
    )
    model = caffe_net(tmp_path, text, weights={})
    got = run(model, {"loc": loc, "conf": conf, "prior": prior})["det"]
    expected = ref.detection_output(loc, conf, prior, classes, **spec["kwargs"])
    assert got.shape == expected.shape, (got.shape, expected.shape)
    assert_rel(got, expected, 1e-5)  # row for row: Caffe's order


def test_detection_output_matches_opencv_as_a_set(tmp_path):
    cv2 = pytest.importorskip("cv2")
    spec = DETECTION_CASES["ssd voc"]
    loc, conf, prior = _detection_inputs(1, 60, 4, 1, seed=3)
    text = (
        input_layer(1, 240, name="loc")
        + input_layer(1, 240, name="conf")
        + input_layer(1, 2, 240, name="prior")
        + 'layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "prior" top: "det" '
        f"detection_output_param {{ num_classes: 4 share_location: true background_label_id: 0 "
        f"{spec['params']} }} }}\n"
    )  # OpenCV wants the defaults spelled out
    model = caffe_net(tmp_path, text, weights={})
    got = run(model, {"loc": loc, "conf": conf, "prior": prior})["det"]
    net = cv2.dnn.readNetFromCaffe(str(tmp_path / "net.prototxt"))
    for key, value in {"loc": loc, "conf": conf, "prior": prior}.items():
        net.setInput(value, key)
    want = net.forward("det")
    assert_rel(canonical_rows(got), canonical_rows(want), 1e-5)
