"""The Caffe schema is an argument of each load: models of two forks side by side in one process,
nothing read from the environment by the library, the CLI's --caffe-schema and its variable."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys

import pytest
from corpus import SAMPLES
from google.protobuf import descriptor_pb2

import proto_rewrite as pr
from proto_rewrite.caffe.schema import bundled_schema, load_schema, schema_of
from proto_rewrite.cli.main import main
from proto_rewrite.errors import InputFileError, UnknownFieldError, UsageError

MINI = SAMPLES / "caffenet_mini" / "caffenet_mini.prototxt"
FORK_NUMBER = 9001  # a LayerParameter field number no schema uses


def _fork_schema(path, field_name: str):
    """The bundled schema with one more LayerParameter field, ``field_name`` (int32)."""
    file_set = descriptor_pb2.FileDescriptorSet()
    file_set.CopyFrom(bundled_schema().file_set)
    layer = next(m for f in file_set.file for m in f.message_type if m.name == "LayerParameter")
    assert FORK_NUMBER not in {field.number for field in layer.field}
    layer.field.add(
        name=field_name,
        number=FORK_NUMBER,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL,
    )
    path.write_bytes(file_set.SerializeToString(deterministic=True))
    return path


def _fork_net(folder, field_name: str):
    """caffenet_mini with ``field_name: 7`` on relu1, and its weights."""
    folder.mkdir()
    text = MINI.read_text()
    marker = '  name: "relu1"\n  type: "ReLU"\n'
    assert marker in text
    prototxt = folder / "net.prototxt"
    prototxt.write_text(text.replace(marker, marker + f"  {field_name}: 7\n"))
    shutil.copy(MINI.with_suffix(".caffemodel"), folder / "net.caffemodel")
    return prototxt


@pytest.fixture
def forks(tmp_path):
    """Two forks that give field number 9001 of LayerParameter different names, and a net of each."""
    return {
        name: (_fork_schema(tmp_path / f"{name}.pb", name), _fork_net(tmp_path / name, name))
        for name in ("alpha_flag", "beta_mode")
    }


def test_two_forks_side_by_side(forks, tmp_path):
    models = {name: pr.load(net, caffe_schema=schema) for name, (schema, net) in forks.items()}
    models["bundled"] = pr.load(MINI)
    schemas = {name: schema_of(model.net) for name, model in models.items()}
    assert len({id(schema) for schema in schemas.values()}) == 3 and schemas["bundled"] is bundled_schema()
    for name, model in models.items():
        converted = pr.apply(model, pr.plan(model, mode="fcn"))
        assert schema_of(converted.net) is schemas[name]
        assert [layer.type for layer in converted.net.layer if layer.name.startswith("fc")] == ["Convolution"] * 3
        out = tmp_path / f"{name}_fcn.prototxt"
        pr.save(converted, out)
        text = out.read_text()
        if name != "bundled":
            assert f"{name}: 7" in text  # the fork's field is kept on the untouched layer
            (other,) = set(forks) - {name}
            assert other not in text
        source = MINI if name == "bundled" else forks[name][1]
        schema_path = None if name == "bundled" else forks[name][0]
        report = pr.validate(source, out, caffe_schema=schema_path)
        assert report.passed, report.render_text()
        reread = pr.load(out, caffe_schema=schema_path)
        assert [layer.name for layer in reread.net.layer] == [layer.name for layer in converted.net.layer]


def test_a_net_read_with_the_wrong_schema(forks):
    (alpha_schema, alpha_net), (beta_schema, _) = forks["alpha_flag"], forks["beta_mode"]
    for schema in (None, beta_schema):
        with pytest.raises(UnknownFieldError) as caught:
            pr.load(alpha_net, caffe_schema=schema)
        assert caught.value.location.path == str(alpha_net) and caught.value.location.line is not None
        assert "alpha_flag" in str(caught.value) and "as caffe_schema" in caught.value.hint
        assert "as --caffe-schema" in caught.value.with_flags().hint
    assert pr.load(alpha_net, caffe_schema=alpha_schema).net.layer[2].alpha_flag == 7


def test_the_same_schema_file_gives_the_same_schema(forks, tmp_path):
    schema_path, _ = forks["alpha_flag"]
    first = load_schema(schema_path)
    assert load_schema(schema_path) is first
    copy = tmp_path / "copy.pb"
    shutil.copy(schema_path, copy)
    assert load_schema(copy) is not first


def test_a_schema_path_that_is_not_a_file(tmp_path):
    with pytest.raises(InputFileError) as caught:
        pr.load(MINI, caffe_schema=tmp_path / "missing.pb")
    assert str(tmp_path / "missing.pb") in str(caught.value.location.path)


def test_a_message_from_elsewhere_has_no_schema():
    with pytest.raises(UsageError, match="no proto-rewrite Caffe schema made"):
        schema_of(descriptor_pb2.FileDescriptorSet())


def test_the_library_reads_no_environment(forks, monkeypatch, tmp_path):
    monkeypatch.setenv("PROTO_REWRITE_CAFFE_SCHEMA", str(tmp_path / "missing.pb"))
    assert schema_of(pr.load(MINI).net) is bundled_schema()
    code = "import proto_rewrite.caffe.model, proto_rewrite.caffe.schema, proto_rewrite.api"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_the_cli_takes_the_schema_from_its_option_or_variable(forks, monkeypatch):
    schema_path, net = forks["alpha_flag"]

    def inspect(*extra):
        out, err = io.StringIO(), io.StringIO()
        return main(["inspect", str(net), "--no-weights", *extra], out, err), err.getvalue()

    code, err = inspect()
    assert code == 2 and "unknown field 'alpha_flag'" in err
    assert inspect("--caffe-schema", str(schema_path))[0] == 0
    monkeypatch.setenv("PROTO_REWRITE_CAFFE_SCHEMA", str(schema_path))
    assert inspect()[0] == 0
    code, err = inspect("--caffe-schema", str(forks["beta_mode"][0]))  # the option wins
    assert code == 2 and "unknown field 'alpha_flag'" in err


def test_convert_and_diff_take_the_schema(forks, tmp_path):
    schema_path, net = forks["beta_mode"]
    out = tmp_path / "beta_fcn.prototxt"
    result = pr.convert(net, out, mode="fcn", caffe_schema=str(schema_path), validate=True)
    assert result.passed and [r.name for r in result.plan.rewrites] == ["fc6", "fc7", "fc8"]
    assert "beta_mode: 7" in out.read_text()
    changes = pr.diff(net, out, plan=result.plan, caffe_schema=schema_path)
    assert not changes.equal and "fc6" in changes.render_text()
    with pytest.raises(UnknownFieldError):
        pr.diff(net, out)
