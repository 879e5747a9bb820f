"""proto-rewrite convert (Caffe side) through the command line."""

import io
import json

from corpus import ROOT

from proto_rewrite.cli import main

LENET = ROOT / "samples" / "lenet" / "lenet.prototxt"
MINI = ROOT / "samples" / "caffenet_mini" / "caffenet_mini.prototxt"


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    return main([str(a) for a in argv], stdout=out, stderr=err), out.getvalue(), err.getvalue()


def test_convert_writes_prototxt_and_weights(tmp_path):
    code, out, err = run(["convert", MINI, "-o", tmp_path / "fcn.prototxt"])
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fcn.caffemodel", "fcn.prototxt"]
    assert "rewrite fc6: InnerProduct -> Convolution 3x3 kernel" in out
    code, out, _ = run(["inspect", tmp_path / "fcn.prototxt", "--format", "json"])
    types = {layer["name"]: layer["type"] for layer in json.loads(out)["layers"]}
    assert types["fc6"] == types["fc7"] == types["fc8"] == "Convolution"


def test_dry_run_writes_nothing_and_prints_the_plan(tmp_path):
    code, out, _ = run(["convert", LENET, "-o", tmp_path / "x.prototxt", "--dry-run", "--format", "json"])
    assert code == 0 and list(tmp_path.iterdir()) == []
    report = json.loads(out)
    assert report["dry_run"] and report["written"] == []
    assert [r["name"] for r in report["plan"]["rewrites"]] == ["ip1", "ip2"]
    assert report["plan"]["rewrites"][0]["weights"][0]["transform"] == "reshape"


def test_save_plan(tmp_path):
    plan = tmp_path / "plan.json"
    assert run(["convert", LENET, "--dry-run", "--save-plan", plan, "--exclude", "ip2"])[0] == 0
    data = json.loads(plan.read_text())
    assert data["skips"][0]["reason"] == "not-selected" and data["skips"][0]["name"] == "ip2"


def test_explicit_request_that_cannot_be_done_is_an_error(tmp_path, write_text):
    model = write_text(
        "axis.prototxt",
        """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 4 axis: 2 } }
""",
    )
    code, out, err = run(["convert", model, "-o", tmp_path / "out.prototxt", "--only", "fc", "--format", "json"])
    assert code == 2 and "unsupported-axis" in out and "flattens from an axis other than 1" in err
    assert not (tmp_path / "out.prototxt").exists()
    code, _, err = run(["convert", model, "-o", tmp_path / "out.prototxt", "--only", "fc9"])
    assert code == 2 and "fc9" in err


def test_refuses_to_overwrite_its_input(tmp_path):
    source = tmp_path / "lenet.prototxt"
    source.write_text(LENET.read_text())
    before = source.read_bytes()
    code, _, err = run(["convert", source, "-o", source, "--no-weights"])
    assert code == 2 and "also an input" in err
    assert source.read_bytes() == before


def test_output_weights_options(tmp_path):
    code, _, _ = run(["convert", LENET, "-o", tmp_path / "a.prototxt", "--output-weights", tmp_path / "w.caffemodel"])
    assert code == 0 and (tmp_path / "w.caffemodel").exists() and not (tmp_path / "a.caffemodel").exists()
    code, _, err = run(
        ["convert", LENET, "--no-weights", "-o", tmp_path / "b.prototxt", "--output-weights", tmp_path / "v.caffemodel"]
    )
    assert code == 2 and "no weights" in err
    code, _, _ = run(["convert", LENET, "--no-weights", "-o", tmp_path / "c.prototxt"])
    assert code == 0 and not (tmp_path / "c.caffemodel").exists()


def test_missing_output_is_a_usage_error():
    code, _, err = run(["convert", LENET])
    assert code == 2 and "-o OUT" in err


ONNX_SAMPLE = ROOT / "samples" / "onnx" / "vgg_mini.onnx"


def test_convert_validate_passes_and_writes(tmp_path):
    code, out, err = run(["convert", ONNX_SAMPLE, "-o", tmp_path / "fcn.onnx", "--validate", "--format", "json"])
    assert code == 0 and err.startswith("PASSED")
    assert json.loads(out)["validation"]["passed"] is True
    assert (tmp_path / "fcn.onnx").exists()


def test_convert_validate_failure_writes_nothing(tmp_path, monkeypatch):
    """A converted model that differs (one weight perturbed after the rewrite) is caught."""
    from onnx import numpy_helper

    from proto_rewrite.validation import compare_models

    real = compare_models.validate_models

    def perturbed(original, converted, *args, **kwargs):
        weight = converted.graph.initializer[-2]
        values = numpy_helper.to_array(weight).copy()
        values.flat[0] += 1.0
        weight.CopyFrom(numpy_helper.from_array(values, weight.name))
        return real(original, converted, *args, **kwargs)

    monkeypatch.setattr(compare_models, "validate_models", perturbed)
    code, _, err = run(["convert", ONNX_SAMPLE, "-o", tmp_path / "fcn.onnx", "--validate"])
    assert code == 1 and "FAILED" in err and "nothing written" in err
    assert list(tmp_path.iterdir()) == []
    code, _, _ = run(["convert", ONNX_SAMPLE, "-o", tmp_path / "fcn.onnx", "--validate", "--keep-on-failure"])
    assert code == 1 and (tmp_path / "fcn.onnx").exists()


def test_pool_scores_for_onnx_through_the_command(tmp_path):
    code, out, _ = run(["convert", ONNX_SAMPLE, "--dry-run", "--pool-scores", "max"])
    assert code == 0 and "insert fc3_pool (GlobalMaxPool)" in out
    code, _, err = run(["convert", ONNX_SAMPLE, "-o", tmp_path / "p.onnx", "--pool-scores", "avg", "--validate"])
    assert code == 0 and err.startswith("PASSED")
