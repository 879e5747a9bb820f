"""The Python API (``import proto_rewrite as pr``): every command as a call, both formats."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from corpus import ROOT, SAMPLES

import proto_rewrite as pr
from proto_rewrite.cli import main
from proto_rewrite.errors import OutputError, PlanMismatchError, UsageError

VGG = SAMPLES / "onnx" / "vgg_mini.onnx"
LENET_ONNX = SAMPLES / "onnx" / "lenet.onnx"
MINI = SAMPLES / "caffenet_mini" / "caffenet_mini.prototxt"


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_import_is_cheap_and_lists_the_api():
    code = (
        "import sys, proto_rewrite as pr; assert 'numpy' not in sys.modules and 'onnx' not in sys.modules; "
        "print(sorted(set(pr.__all__) - {'__version__'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "convert" in out and "validate" in out
    with pytest.raises(AttributeError):
        pr.no_such_thing  # noqa: B018


def test_onnx_step_by_step(tmp_path):
    model = pr.load(VGG)
    plan = pr.plan(model, mode="fcn")
    assert [r.name for r in plan.rewrites] == ["fc1", "fc2", "fc3"] and plan.fcn.fully_convolutional
    assert json.loads(plan.to_json()) == plan.to_dict()
    converted = pr.apply(model, plan)
    out = tmp_path / "vgg_fcn.onnx"
    assert pr.save(converted, out) == [str(out)]
    report = pr.validate(VGG, out)
    assert report.passed and json.loads(report.to_json())["passed"] is True
    changes = pr.diff(VGG, out, plan=plan)
    assert not changes.equal and json.loads(changes.to_json())["equal"] is False
    assert "<html" in changes.to_html().lower() and "fc1" in changes.render_text()
    assert pr.diff(VGG, VGG).equal


def test_caffe_step_by_step(tmp_path):
    model = pr.load(MINI)
    plan = pr.plan(model, mode="exact", rename="-conv")
    converted = pr.apply(model, plan)
    written = pr.save(converted, tmp_path / "mini.prototxt")
    assert written == [str(tmp_path / "mini.prototxt"), str(tmp_path / "mini.caffemodel")]
    assert pr.validate(MINI, tmp_path / "mini.prototxt").passed
    assert pr.validate(model, converted).passed  # loaded models work too


def test_convert_is_the_cli_convert(tmp_path):
    result = pr.convert(VGG, tmp_path / "a.onnx", mode="fcn", validate=True)
    assert result.passed and result.written == [str(tmp_path / "a.onnx")] and result.validation.passed
    assert main(["convert", str(VGG), "-o", str(tmp_path / "b.onnx"), "--validate"]) == 0
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    dry = pr.convert(VGG, dry_run=True)
    assert dry.written == [] and dry.plan.to_dict() == result.plan.to_dict()


@pytest.mark.parametrize("source,suffix", [(VGG, ".onnx"), (MINI, ".prototxt")])
def test_reviewed_plan_round_trip(tmp_path, source, suffix):
    """Dry-run in one job, apply exactly that in the next: the same bytes as a direct convert."""
    plan_file = tmp_path / "plan.json"
    assert main(["convert", str(source), "--dry-run", "--save-plan", str(plan_file)]) == 0
    assert main(["convert", str(source), "--plan", str(plan_file), "-o", str(tmp_path / f"planned{suffix}")]) == 0
    assert main(["convert", str(source), "-o", str(tmp_path / f"direct{suffix}")]) == 0
    assert _digest(tmp_path / f"planned{suffix}") == _digest(tmp_path / f"direct{suffix}")
    via_api = pr.convert(source, tmp_path / f"api{suffix}", plan=str(plan_file))
    assert _digest(tmp_path / f"api{suffix}") == _digest(tmp_path / f"direct{suffix}")
    assert via_api.plan.fingerprint == json.loads(plan_file.read_text())["fingerprint"]


def test_tampered_and_foreign_plans_write_nothing(tmp_path):
    plan = pr.plan(pr.load(VGG))
    tampered = pr.RewritePlan.from_dict(plan.to_dict())
    first = tampered.rewrites[0]
    tampered.rewrites[0] = type(first)(**{**first.__dict__, "kernel": (16, 1)})
    out = tmp_path / "out.onnx"
    with pytest.raises(PlanMismatchError, match="kernel"):
        pr.convert(VGG, out, plan=tampered)
    with pytest.raises(PlanMismatchError, match="another model"):
        pr.convert(LENET_ONNX, out, plan=plan)
    assert list(tmp_path.iterdir()) == []
    plan_file = tmp_path / "tampered.json"
    plan_file.write_text(tampered.to_json())
    before = _digest(VGG)
    code = main(["convert", str(VGG), "--plan", str(plan_file), "-o", str(out)])
    assert code == 2 and not out.exists() and _digest(VGG) == before


def test_errors_name_python_options(tmp_path):
    with pytest.raises(UsageError, match="^rename applies to Caffe models only") as err:
        pr.plan(pr.load(VGG), rename="-conv")
    assert err.value.with_flags().message.startswith("--rename applies")
    with pytest.raises(UsageError, match="no output given"):
        pr.convert(VGG)
    with pytest.raises(OutputError, match="is also an input"):
        pr.convert(VGG, VGG)
    model = pr.load(VGG)
    with pytest.raises(OutputError):
        pr.save(model, VGG)


def test_validate_options_as_keywords():
    report = pr.validate(VGG, VGG, seed=3, trials=2)
    assert report.passed and report.options.trials == 2
    with pytest.raises(TypeError):
        pr.validate(VGG, VGG, no_such_option=1)


def test_readme_api_example_runs(tmp_path, monkeypatch):
    """The README's Python example, as written there (paths made local)."""
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- api-example -->", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "samples").symlink_to(SAMPLES)
    scope: dict = {}
    exec(compile(block, "README.md", "exec"), scope)  # noqa: S102 - our own README
    assert scope["report"].passed and not scope["changes"].equal and scope["result"].passed
    assert scope["summary"].to_dict()["totals"]["parameters"] == 378058
    assert scope["exported"].written == [Path("mini.onnx")] and scope["exported"].random_weights is None
    assert scope["random"].layers == 8 and (tmp_path / "random.caffemodel").stat().st_size > 4 * 378058
    assert np.isfinite(scope["report"].outputs[0].comparison.absolute.max)


def test_load_takes_its_limits_as_arguments():
    from proto_rewrite import limits
    from proto_rewrite.errors import TensorTooLargeError

    before = limits.max_tensor_bytes()
    with pytest.raises(TensorTooLargeError):
        pr.load(MINI, max_tensor_bytes=1000)
    assert limits.max_tensor_bytes() == before  # the call's limit ended with it
    assert pr.load(MINI, weights=None).weights == {}


def test_inspect_export_and_init_weights_as_calls(tmp_path):
    summary = pr.inspect(MINI)
    as_json = summary.to_dict()
    assert as_json == pr.inspect(pr.load(MINI)).to_dict()
    fc6 = next(layer for layer in as_json["layers"] if layer["name"] == "fc6")
    assert fc6["type"] == "InnerProduct" and fc6["output_shapes"] == [[1, 256]]
    assert fc6["weights"][0]["shape"] == [256, 576] and fc6["parameters"] == 256 * 576 + 256
    wider = pr.inspect(MINI, input_shapes={"data": [2, 3, 115, 115]}).to_dict()
    assert wider["inputs"][0]["shape"] == [2, 3, 115, 115] and as_json["inputs"][0]["shape"] == [1, 3, 115, 115]
    assert next(layer for layer in wider["layers"] if layer["name"] == "fc6")["output_shapes"] == [[2, 256]]
    loaded_wider = pr.inspect(pr.load(MINI), input_shapes={"data": [2, 3, 115, 115]}).to_dict()
    assert loaded_wider["layers"] == wider["layers"]
    onnx_summary = pr.inspect(LENET_ONNX).to_dict()
    assert (
        onnx_summary["totals"]["parameters"]
        == 431080
        == sum(layer["parameters"] or 0 for layer in onnx_summary["layers"])
    )

    exported = pr.export(MINI, tmp_path / "mini.onnx", dynamic_batch=True)
    assert exported.written == [tmp_path / "mini.onnx"] and exported.random_weights is None
    assert exported.to_dict()["inputs"][0]["shape"] == ["N", 3, 115, 115]
    assert pr.validate(MINI, tmp_path / "mini.onnx").passed  # the exported net computes what Caffe's does

    weights = tmp_path / "random.caffemodel"
    result = pr.init_weights(MINI, weights, seed=7)
    assert result.layers == 8 and result.parameters == sum(
        array.size for arrays in pr.load(MINI, weights).weights.values() for array in arrays
    )
    again = tmp_path / "again.caffemodel"
    pr.init_weights(pr.load(MINI, None), again, seed=7)
    assert again.read_bytes() == weights.read_bytes()
    random_export = pr.export(pr.load(MINI, None), tmp_path / "random.onnx", seed=3)
    assert random_export.random_weights and "NOT a trained model" in random_export.random_weights
    with pytest.raises(UsageError, match="seed"):
        pr.init_weights(MINI, tmp_path / "x.caffemodel", seed=-1)
    with pytest.raises(UsageError, match="the output is the model itself"):
        pr.export(MINI, MINI)
    assert not (tmp_path / "x.caffemodel").exists()


def test_library_errors_name_python_options_and_the_cli_shows_flags(tmp_path):
    """The same mistake through the library and through the CLI: the library's message names the
    Python keyword, the CLI's stderr names the flag (an irregular one too: input_shapes is
    --input-shape), in errors and in warnings alike."""
    import io

    from proto_rewrite.caffe.onnx_export.errors import ExportError

    with pytest.raises(UsageError, match="^pool_scores avg needs mode fcn") as err:
        pr.plan(pr.load(VGG), mode="exact", pool_scores="avg")
    assert "convert with mode fcn" in err.value.hint and "--" not in str(err.value)
    stderr = io.StringIO()
    argv = ["convert", str(VGG), "--mode", "exact", "--pool-scores", "avg", "--dry-run"]
    assert main(argv, stdout=io.StringIO(), stderr=stderr) == 2
    assert "error: --pool-scores avg needs --mode fcn" in stderr.getvalue()
    assert "convert with --mode fcn" in stderr.getvalue()

    net = tmp_path / "shapeless.prototxt"
    net.write_text(
        'layer { name: "data" type: "Input" top: "data" }\nlayer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
    )
    with pytest.raises(ExportError, match="the shape of input 'data' is not known") as err:
        pr.export(net, tmp_path / "a.onnx", weights=None)
    assert err.value.hint.endswith("in input_shapes") and "--" not in str(err.value)
    warning = next(d for d in pr.load(net, weights=None).diagnostics if d.level == "warning")
    assert warning.hint == "give the shape of 'data' in input_shapes"
    stderr = io.StringIO()
    argv = ["export", str(net), "--no-weights", "-o", str(tmp_path / "b.onnx")]
    assert main(argv, stdout=io.StringIO(), stderr=stderr) == 2
    assert "in --input-shape" in stderr.getvalue() and "input_shapes" not in stderr.getvalue()
    assert "(hint: give the shape of 'data' in --input-shape)" in stderr.getvalue()  # the loader's warning
    assert not (tmp_path / "a.onnx").exists() and not (tmp_path / "b.onnx").exists()


def test_the_callers_model_is_left_as_it_was(tmp_path):
    """export's random weights go to a copy; init_weights and export never write over the model's
    own files; a loaded model's input shapes are the default; loader arguments with a loaded model
    are refused."""
    bare = pr.load(MINI, None)
    result = pr.export(bare, tmp_path / "random.onnx")
    assert result.random_weights and bare.weights == {}
    trained = pr.load(MINI)
    before = {name: [array.copy() for array in arrays] for name, arrays in trained.weights.items()}
    assert pr.export(trained, tmp_path / "trained.onnx").random_weights is None
    assert all(np.array_equal(a, b) for name in before for a, b in zip(before[name], trained.weights[name]))
    copy = tmp_path / "net.prototxt"
    copy.write_bytes(MINI.read_bytes())
    (tmp_path / "net.caffemodel").write_bytes(MINI.with_suffix(".caffemodel").read_bytes())
    own = pr.load(copy)
    digest = _digest(tmp_path / "net.caffemodel")
    for call in (pr.init_weights, pr.export):
        with pytest.raises(UsageError, match="the output is the model's weights file"):
            call(own, tmp_path / "net.caffemodel")
    assert _digest(tmp_path / "net.caffemodel") == digest
    small = pr.load(MINI, None, input_shapes={"data": [1, 3, 99, 99]})
    pr.init_weights(small, tmp_path / "small.caffemodel")
    reread = pr.load(MINI, tmp_path / "small.caffemodel", input_shapes={"data": [1, 3, 99, 99]})
    assert reread.weights["fc6"][0].shape == (256, 64 * 2 * 2)  # pool5 is 64 x 2 x 2 at 99 x 99 (3 x 3 at 115)
    assert pr.export(small, tmp_path / "small.onnx").to_dict()["inputs"][0]["shape"] == [1, 3, 99, 99]
    with pytest.raises(UsageError, match="phase applies when the model is given as a path"):
        pr.export(trained, tmp_path / "x.onnx", phase="TRAIN")
