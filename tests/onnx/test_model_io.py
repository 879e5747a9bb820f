"""load_onnx / save_onnx: lazy weights written back as they came, external data, atomic output,
and a typed error naming the file (and node) for every kind of bad input."""

import os

import numpy as np
import onnx
import onnx_zoo as zoo
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_check import assert_close, convert, feeds_for, run, run_path

from proto_rewrite.errors import InputFileError, OutputError
from proto_rewrite.onnx import writer
from proto_rewrite.onnx.model import OnnxModel, load_onnx, save_onnx
from proto_rewrite.onnx.tensors import StoredTensor


def test_load_save_is_byte_identical_to_onnx_save(tmp_path):
    original = zoo.matmul_add(13, np.float32)
    source = tmp_path / "m.onnx"
    onnx.save(original, source)
    model = load_onnx(source)
    save_onnx(model, tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx").read_bytes() == source.read_bytes()
    assert model.to_proto() == original


def test_weights_stay_in_the_file(tmp_path):
    source = tmp_path / "m.onnx"
    onnx.save(zoo.flatten_gemm(13, np.float32), source)
    model = load_onnx(source)
    assert not model.graph.initializer  # the skeleton holds no weights
    weight = model.initializers["fc6_w"]
    assert isinstance(weight, StoredTensor) and weight.dims == (8, 144)
    array = weight.array()
    assert not array.flags.writeable and not array.flags.owndata


def test_untouched_initializers_are_the_same_bytes(tmp_path):
    source = tmp_path / "m.onnx"
    onnx.save(zoo.flatten_gemm(13, np.float32, trans_b=0), source)
    _, new = convert(load_onnx(source), mode="fcn")
    save_onnx(new, tmp_path / "out.onnx")
    before = {t.name: t.SerializeToString() for t in onnx.load(source).graph.initializer}
    after = {t.name: t.SerializeToString() for t in onnx.load(tmp_path / "out.onnx").graph.initializer}
    changed = {name for name in before if before[name] != after.get(name)}
    assert changed == {"fc6_w", "fc7_w"}  # transposed; biases and the conv untouched


def test_input_model_is_not_modified(tmp_path):
    model = OnnxModel.from_proto(zoo.dynamic_chain(13, np.float32))
    skeleton = model.proto.SerializeToString()
    tensors = dict(model.initializers)
    _, new = convert(model, mode="fcn")
    assert model.proto.SerializeToString() == skeleton and model.initializers == tensors
    assert new.initializers["conv_w"] is model.initializers["conv_w"]  # shared, never copied


def _external(tmp_path, proto, name="m.onnx"):
    folder = tmp_path / "src"
    folder.mkdir(exist_ok=True)
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)  # onnx.save moves the data out of the proto it is given
    onnx.save(
        copy,
        folder / name,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=f"{name}.weights",
        size_threshold=0,
    )
    return folder / name


def test_external_data_in_and_out(tmp_path):
    original = zoo.flatten_gemm(13, np.float32, trans_b=0)
    source = _external(tmp_path, original)
    model = load_onnx(source)
    assert model.has_external_data and model.external_data_files() == [str(source.parent / "m.onnx.weights")]
    _, new = convert(model, mode="exact")
    out = tmp_path / "out" / "converted.onnx"
    out.parent.mkdir()
    save_onnx(new, out)
    assert (out.parent / "converted.onnx.data").is_file()
    assert sorted(os.listdir(out.parent)) == ["converted.onnx", "converted.onnx.data"]
    loaded = onnx.load(out, load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in loaded.graph.initializer)
    onnx.checker.check_model(str(out), full_check=True)
    feeds = feeds_for(original)
    for want, got in zip(run(original, feeds), run_path(out, feeds)):
        assert_close(want, got)
    before = {t.name: numpy_helper.to_array(t) for t in original.graph.initializer}
    for tensor in onnx.load(out).graph.initializer:
        if tensor.name in ("conv_w", "conv_b", "fc6_b"):
            assert numpy_helper.to_array(tensor).tobytes() == before[tensor.name].tobytes()


def test_over_2gb_goes_external(tmp_path, monkeypatch):
    monkeypatch.setattr(writer, "PROTOBUF_LIMIT", 4096)
    original = zoo.flatten_gemm(13, np.float32)
    model = OnnxModel.from_proto(original)
    save_onnx(model, tmp_path / "big.onnx")
    assert (tmp_path / "big.onnx.data").is_file()
    loaded = onnx.load(tmp_path / "big.onnx", load_external_data=False)
    external = {t.name for t in loaded.graph.initializer if t.data_location == TensorProto.EXTERNAL}
    assert "fc6_w" in external and "fc7_b" not in external  # small tensors stay inline
    feeds = feeds_for(original)
    assert_close(run(original, feeds)[0], run_path(tmp_path / "big.onnx", feeds)[0])


@pytest.mark.parametrize("external", [True, False])
def test_save_is_atomic(tmp_path, monkeypatch, external):
    proto = zoo.flatten_gemm(13, np.float32)
    model = load_onnx(_external(tmp_path, proto)) if external else OnnxModel.from_proto(proto)

    def broken(self):
        yield b"\0" * 10
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(StoredTensor, "data_chunks", broken)
    monkeypatch.setattr(StoredTensor, "record", lambda self: None)
    with pytest.raises(OutputError, match="Input/output error"):
        save_onnx(model, tmp_path / "out.onnx")
    assert sorted(os.listdir(tmp_path)) == (["src"] if external else [])


def test_external_data_replaced_after_loading(tmp_path):
    """The data files are mapped when loaded: replacing them (say, by saving over them) changes nothing."""
    original = zoo.flatten_gemm(13, np.float32)
    source = _external(tmp_path, original)
    model = load_onnx(source)
    data = source.parent / "m.onnx.weights"
    replacement = tmp_path / "other"
    replacement.write_bytes(b"\1" * data.stat().st_size)
    os.replace(replacement, data)
    assert np.array_equal(
        model.initializers["fc6_w"].array(),
        numpy_helper.to_array(next(t for t in original.graph.initializer if t.name == "fc6_w")),
    )


def test_save_into_missing_folder(tmp_path):
    with pytest.raises(OutputError):
        save_onnx(OnnxModel.from_proto(zoo.mlp(13, np.float32)), tmp_path / "nowhere" / "m.onnx")


# -- bad input -------------------------------------------------------------------------------


def _write(tmp_path, data: bytes, name="bad.onnx"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _model_bytes() -> bytes:
    return zoo.mlp(13, np.float32).SerializeToString()


@pytest.mark.parametrize(
    "case,data,words",
    [
        ("empty", b"", "empty"),
        ("text", b'name: "LeNet"\nlayer { name: "data" type: "Input" }\n', "text file"),
        ("garbage", bytes(range(256)) * 4, "not a valid ONNX model"),
        ("truncated", None, "not a valid ONNX model"),
        ("no graph", onnx.ModelProto(ir_version=8).SerializeToString(), "no graph"),
    ],
)
def test_bad_files(tmp_path, case, data, words):
    if data is None:
        data = _model_bytes()[:-7]
    with pytest.raises(InputFileError) as caught:
        load_onnx(_write(tmp_path, data))
    assert words in str(caught.value)
    assert caught.value.location.path == str(tmp_path / "bad.onnx") and caught.value.hint


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        load_onnx(tmp_path / "absent.onnx")
    with pytest.raises(InputFileError, match="folder"):
        load_onnx(tmp_path)
    with pytest.raises(InputFileError, match="Caffe"):
        load_onnx(tmp_path / "net.prototxt")


def test_undefined_tensor_names_the_node(tmp_path):
    proto = zoo.mlp(13, np.float32)
    proto.graph.node[1].input[0] = "nowhere"
    with pytest.raises(InputFileError) as caught:
        load_onnx(_write(tmp_path, proto.SerializeToString()))
    assert caught.value.location.layer == "tanh" and "nowhere" in caught.value.message


def test_two_producers_name_the_node(tmp_path):
    proto = zoo.mlp(13, np.float32)
    proto.graph.node[1].output[0] = proto.graph.node[0].output[0]
    with pytest.raises(InputFileError) as caught:
        load_onnx(_write(tmp_path, proto.SerializeToString()))
    assert caught.value.location.layer == "tanh"


def test_short_raw_data_names_the_initializer(tmp_path):
    proto = zoo.mlp(13, np.float32)
    proto.graph.initializer[0].raw_data = proto.graph.initializer[0].raw_data[:-4]
    with pytest.raises(InputFileError) as caught:
        load_onnx(_write(tmp_path, proto.SerializeToString()))
    assert caught.value.location.layer == "fc1_w" and "bytes" in caught.value.message


def test_short_typed_data_names_the_initializer(tmp_path):
    proto = zoo.mlp(13, np.float32)
    tensor = proto.graph.initializer[1]
    values = numpy_helper.to_array(tensor)
    tensor.ClearField("raw_data")
    tensor.float_data.extend(values.reshape(-1)[:-1].tolist())
    with pytest.raises(InputFileError) as caught:
        load_onnx(_write(tmp_path, proto.SerializeToString()))
    assert caught.value.location.layer == tensor.name and "float_data" in caught.value.message


def test_typed_data_is_read(tmp_path):
    """Weights stored in float_data (no raw_data) are converted too."""
    original = zoo.flatten_gemm(13, np.float32, trans_b=0)
    stored = onnx.ModelProto()
    stored.CopyFrom(original)
    for tensor in stored.graph.initializer:
        values = numpy_helper.to_array(tensor)
        tensor.ClearField("raw_data")
        tensor.float_data.extend(values.reshape(-1).tolist())
    _, new = convert(load_onnx(_write(tmp_path, stored.SerializeToString())), mode="exact")
    feeds = feeds_for(original)
    assert_close(run(original, feeds)[0], run(new, feeds)[0])


@pytest.mark.parametrize("problem", ["missing", "short", "outside"])
def test_bad_external_data(tmp_path, problem):
    source = _external(tmp_path, zoo.mlp(13, np.float32))
    data = source.parent / "m.onnx.weights"
    if problem == "missing":
        data.unlink()
    elif problem == "short":
        data.write_bytes(data.read_bytes()[:100])
    else:
        proto = onnx.load(source, load_external_data=False)
        for entry in proto.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = "../escape.bin"
        source.write_bytes(proto.SerializeToString())
    with pytest.raises(InputFileError) as caught:
        load_onnx(source)
    assert caught.value.location.layer in {t.name for t in zoo.mlp(13, np.float32).graph.initializer}
    assert caught.value.hint


def test_checker_complaints_are_warnings(tmp_path):
    proto = zoo.mlp(13, np.float32)
    proto.graph.node[0].attribute.append(helper.make_attribute("bogus", 1))
    model = load_onnx(_write(tmp_path, proto.SerializeToString()))
    assert any("onnx.checker" in d.message for d in model.diagnostics)
