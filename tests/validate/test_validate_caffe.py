"""validate and convert --validate on Caffe models (through the exporter)."""

import io

import numpy as np
from corpus import ROOT

from proto_rewrite.caffe.caffemodel import write_caffemodel
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.cli import main

LENET = ROOT / "samples" / "lenet" / "lenet.prototxt"


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    return main([str(a) for a in argv], stdout=out, stderr=err), out.getvalue(), err.getvalue()


def test_caffe_pair_passes_and_dense_is_exact(tmp_path):
    fcn = tmp_path / "fcn.prototxt"
    code, _, err = run(["convert", LENET, "-o", fcn, "--validate"])
    assert code == 0 and "PASSED" in err
    code, out, err = run(["validate", LENET, fcn])
    assert code == 0 and "prob" in out
    code, out, err = run(["validate", LENET, fcn, "--dense", "44", "40", "--input-shape", "data:1,1,28,28"])
    assert code == 0 and "score map 1x10x5x4" in out and "no padding" in out


def test_perturbed_caffe_weights_fail_naming_the_output(tmp_path):
    model = load_caffe(LENET)
    weights = {name: [np.array(a) for a in arrays] for name, arrays in model.weights.items()}
    weights["ip2"][1][3] += 0.5
    other = tmp_path / "other.caffemodel"
    write_caffemodel(other, model.net, weights)
    code, out, err = run(["validate", LENET, LENET, "--weights-b", other])
    assert code == 1 and err.startswith("FAILED: prob") and "FAIL" in out


def test_caffe_model_without_weights_cannot_be_validated(tmp_path):
    bare = tmp_path / "bare.prototxt"
    bare.write_text(LENET.read_text())
    code, _, err = run(["validate", bare, LENET])
    assert code == 2 and "without weights" in err


def test_localize_follows_the_plan_renames(tmp_path):
    import json

    converted, plan = tmp_path / "conv.prototxt", tmp_path / "plan.json"
    assert run(["convert", LENET, "-o", converted, "--rename=-conv", "--save-plan", plan])[0] == 0
    code, out, _ = run(["validate", LENET, converted, "--localize", "--format", "json"])
    without = {t["name"] for t in json.loads(out)["intermediates"]}
    code, out, err = run(["validate", LENET, converted, "--localize", "--plan", plan, "--format", "json"])
    assert code == 0, err
    report = json.loads(out)
    paired = {t["name"] for t in report["intermediates"]}
    assert "ip1" in paired and "ip1" not in without  # ip1 in A is ip1-conv in B
    assert report["first_divergence"] is None
    code, _, err = run(["validate", LENET, converted, "--localize", "--plan", LENET])
    assert code == 2 and "not a proto-rewrite plan" in err
