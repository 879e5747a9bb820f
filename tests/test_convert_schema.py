"""convert --format json follows schemas/convert.schema.json, for every kind of plan the samples
and the exporter idioms give (fcn proved and blocked, exact, pooled, classifier before pool, Caffe)."""

import io
import json
import sys

import jsonschema
import onnx
import pytest
from corpus import ROOT, SAMPLES

from proto_rewrite.cli import main

sys.path.insert(0, str(ROOT / "tests" / "onnx"))
import test_exporter_idioms as idioms  # noqa: E402

SCHEMA = json.loads((ROOT / "schemas" / "convert.schema.json").read_text())


def _report(args) -> dict:
    out, err = io.StringIO(), io.StringIO()
    assert main([*map(str, args), "--format", "json"], stdout=out, stderr=err) == 0, err.getvalue()
    report = json.loads(out.getvalue())
    jsonschema.validate(report, SCHEMA)
    return report


@pytest.mark.parametrize(
    "args",
    [
        [SAMPLES / "onnx" / "vgg_mini.onnx", "--dry-run"],
        [SAMPLES / "onnx" / "lenet.onnx", "--dry-run", "--mode", "exact"],
        [SAMPLES / "onnx" / "lenet.onnx", "--dry-run", "--pool-scores", "probs-avg"],
        [SAMPLES / "caffenet_mini" / "caffenet_mini.prototxt", "--dry-run", "--rename=-conv"],
        [SAMPLES / "lenet" / "lenet.prototxt", "--dry-run", "--mode", "exact"],
    ],
)
def test_samples(args):
    report = _report(["convert", *args])
    assert report["plan"]["rewrites"] and report["written"] == []


@pytest.mark.parametrize(
    "build,proved",
    [
        (idioms.token_model, False),
        (idioms.keras_mtcnn_onet, True),
        (lambda: idioms.pooled_head("gap", "hardswish", opset=14), True),
    ],
)
def test_idioms(tmp_path, build, proved):
    path = tmp_path / "m.onnx"
    onnx.save(build(), path)
    report = _report(["convert", path, "-o", tmp_path / "out.onnx", "--classifier-before-pool"])
    assert report["plan"]["fcn"]["fully_convolutional"] is proved and report["written"] == [str(tmp_path / "out.onnx")]
