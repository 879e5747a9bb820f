"""The command line: in-process through main(), and once through the installed console script."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from corpus import CAFFE_DATA, ROOT, SAMPLES

from proto_rewrite import __version__
from proto_rewrite.cli import main


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_version_and_help():
    code, out, _ = run(["--version"])
    assert code == 0
    code, _, err = run([])
    assert code == 2 and "COMMAND" in err
    assert run(["inspect", "--help"])[0] == 0


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys; from proto_rewrite.cli import main; "
        "rc = main(['--help'], stdout=open('/dev/null', 'w')); "
        "heavy = [m for m in ('onnxruntime', 'onnx', 'numpy', 'google.protobuf') if m in sys.modules]; "
        "print(rc, heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "0 []"


def test_inspect_text_on_a_sample():
    code, out, err = run(["inspect", str(SAMPLES / "lenet" / "lenet.prototxt")])
    assert code == 0, err
    assert "weights: " in out and "lenet.caffemodel" in out
    assert "ip1    InnerProduct  pool2 -> ip1" in out
    assert "9 layers, 431,080 parameters" in out


def test_inspect_json_conforms_to_schema():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((ROOT / "schemas" / "inspect.schema.json").read_text())
    for path in [
        SAMPLES / "caffenet_mini" / "caffenet_mini.prototxt",
        CAFFE_DATA / "caffenet_v0.prototxt",
        CAFFE_DATA / "ssd300_vgg16_voc.prototxt",
    ]:
        code, out, err = run(["inspect", str(path), "--format", "json"])
        assert code == 0, err
        report = json.loads(out)
        jsonschema.validate(report, schema)
        assert report["layers"] and all("name" in layer for layer in report["layers"])
    assert report["upgrades"] == ["net input fields -> Input layer"]


def test_inspect_json_counts_parameters_from_weights():
    code, out, _ = run(["inspect", str(SAMPLES / "caffenet_mini" / "caffenet_mini.prototxt"), "--format", "json"])
    report = json.loads(out)
    fc6 = next(layer for layer in report["layers"] if layer["name"] == "fc6")
    assert fc6["weights"] == [{"shape": [256, 576], "dtype": "float32"}, {"shape": [256], "dtype": "float32"}]
    assert fc6["parameters"] == 256 * 576 + 256
    assert report["totals"]["parameters"] == 378058


def test_error_as_json_on_stdout(tmp_path):
    bad = tmp_path / "bad.prototxt"
    bad.write_text("layer { name: 'x' typo: 1 }\n")
    code, out, err = run(["inspect", str(bad), "--format", "json"])
    assert code == 2 and err.startswith("error: ")
    assert json.loads(out)["error"] == "UnknownFieldError"


def test_warnings_go_to_stderr_and_quiet_silences_them(tmp_path):
    path = tmp_path / "u.prototxt"
    path.write_text(
        'layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 1 } } }\n'
        'layer { name: "u" type: "Mystery" bottom: "d" top: "u" }\n'
    )
    code, out, err = run(["inspect", str(path)])
    assert code == 0 and "unknown layer type 'Mystery'" in err and "Mystery" in out
    assert run(["inspect", str(path), "-q"])[2] == ""


def test_internal_errors_exit_3_with_traceback(monkeypatch):
    from proto_rewrite.cli import inspect_cmd

    def broken(args, console):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(inspect_cmd, "run", broken)
    code, _, err = run(["inspect", "x.prototxt"])
    assert code == 3 and "Traceback" in err and "bug in proto-rewrite" in err


def test_python_dash_m():
    result = subprocess.run(
        [sys.executable, "-m", "proto_rewrite", "--version"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0 and __version__ in result.stdout


def test_installed_console_script():
    script = shutil.which("proto-rewrite", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("proto-rewrite is not installed in this environment (pip install .)")
    result = subprocess.run(
        [script, "inspect", str(SAMPLES / "lenet" / "lenet.prototxt"), "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["totals"]["parameters"] == 431080


FORK_FIELD_NET = (
    'layer { name: "d" type: "Input" top: "d" input_param { shape { dim: 1 dim: 3 } } }\n'
    'layer { name: "w" type: "Warp" bottom: "d" top: "w" warp_param { strength: 2 } }\n'
)


def test_another_forks_schema_can_be_passed(tmp_path):
    """A field no known fork has: refused with a hint, then read with the fork's compiled schema."""
    pytest.importorskip("grpc_tools", reason="grpcio-tools (test extra) compiles the fork's .proto")
    from grpc_tools import protoc

    model = tmp_path / "warp.prototxt"
    model.write_text(FORK_FIELD_NET)
    code, _, err = run(["inspect", str(model)])
    assert code == 2 and "unknown field 'warp_param'" in err and "--caffe-schema" in err

    proto = (ROOT / "schemas" / "caffe.proto").read_text()
    proto = proto.replace(
        "message LayerParameter {",
        "message WarpParameter { optional float strength = 1; }\n"
        "message LayerParameter {\n  optional WarpParameter warp_param = 777777;",
        1,
    )
    (tmp_path / "caffe.proto").write_text(proto)
    descriptor = tmp_path / "fork.pb"
    assert (
        protoc.main(["protoc", f"-I{tmp_path}", f"--descriptor_set_out={descriptor}", str(tmp_path / "caffe.proto")])
        == 0
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "proto_rewrite",
            "inspect",
            str(model),
            "--caffe-schema",
            str(descriptor),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert [layer["type"] for layer in json.loads(result.stdout)["layers"]] == ["Input", "Warp"]

    not_a_schema = subprocess.run(
        [sys.executable, "-m", "proto_rewrite", "inspect", str(model), "--caffe-schema", str(model)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert not_a_schema.returncode == 2 and "not a compiled Caffe schema" in not_a_schema.stderr
    assert "Traceback" not in not_a_schema.stderr


def test_warnings_name_flags_on_stderr_and_in_json(tmp_path):
    """The library's warning names input_shapes; the CLI shows --input-shape, in text and JSON."""
    model = tmp_path / "undeclared.prototxt"
    model.write_text(
        'layer { name: "data" type: "Input" top: "data" }\nlayer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
    )
    out, err = io.StringIO(), io.StringIO()
    assert main(["inspect", str(model), "--format", "json"], stdout=out, stderr=err) == 0
    (note,) = json.loads(out.getvalue())["diagnostics"]
    assert note["hint"] == "give the shape of 'data' in --input-shape" and "--input-shape" in err.getvalue()


def test_a_quoted_name_is_not_taken_for_an_option():
    from proto_rewrite.errors import UsageError

    shown = UsageError("layer 'mode' needs mode fcn", options=("mode",)).with_flags()
    assert shown.message == "layer 'mode' needs --mode fcn"
