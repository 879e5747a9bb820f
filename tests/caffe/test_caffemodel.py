"""The caffemodel reader and writer, checked against protobuf's own (de)serialization."""

import struct

import numpy as np
import pytest
from google.protobuf import text_format

from proto_rewrite.caffe.caffemodel import read_caffemodel, write_caffemodel
from proto_rewrite.caffe.schema import bundled_schema
from proto_rewrite.errors import CaffemodelError, InputFileError
from proto_rewrite.wire import encode_varint, len_header

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite

NET_TEXT = """
name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        param { lr_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
        convolution_param { num_output: 4 kernel_size: 3 } }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 5 } }
layer { name: "prelu" type: "PReLU" bottom: "fc" top: "fc" prelu_param { channel_shared: true } }
"""


def tiny_net():
    return text_format.Parse(NET_TEXT, schema.NetParameter())


def tiny_weights(dtype=np.float32):
    rng = np.random.RandomState(0)
    return {
        "conv": [rng.randn(4, 2, 3, 3).astype(dtype), rng.randn(4).astype(dtype)],
        "fc": [rng.randn(5, 4).astype(dtype), rng.randn(5).astype(dtype)],
        "prelu": [np.array(0.25, dtype=dtype)],
    }


def protobuf_reference(net, weights) -> bytes:
    """What protobuf itself writes for the same net and weights."""
    full = schema.NetParameter()
    full.CopyFrom(net)
    for layer in full.layer:
        for array in weights.get(layer.name, []):
            blob = layer.blobs.add()
            target = blob.double_data if array.dtype == np.float64 else blob.data
            target.extend(array.ravel().tolist())
            blob.shape.SetInParent()
            blob.shape.dim.extend(array.shape)
    return full.SerializeToString(deterministic=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_writer_matches_protobuf_serialization(tmp_path, dtype):
    net, weights = tiny_net(), tiny_weights(dtype)
    path = tmp_path / "tiny.caffemodel"
    write_caffemodel(path, net, weights)
    assert path.read_bytes() == protobuf_reference(net, weights)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_blob_for_blob_equal(tmp_path, dtype):
    net, weights = tiny_net(), tiny_weights(dtype)
    path = tmp_path / "tiny.caffemodel"
    write_caffemodel(path, net, weights)
    model = read_caffemodel(path)
    assert [layer.name for layer in model.layers] == ["data", "conv", "fc", "prelu"]
    for layer in model.layers:
        arrays = [blob.values for blob in layer.blobs]
        expected = weights.get(layer.name, [])
        assert len(arrays) == len(expected)
        for got, want in zip(arrays, expected):
            assert got.dtype == want.dtype and got.shape == want.shape
            assert got.tobytes() == want.tobytes()
            assert not got.flags.writeable  # a view of the mapped file, never a copy
    assert model.net.layer[1].param[1].lr_mult == 2  # the rest of the layer survives


def test_writing_is_deterministic(tmp_path):
    for name in ("a", "b"):
        write_caffemodel(tmp_path / f"{name}.caffemodel", tiny_net(), tiny_weights())
    assert (tmp_path / "a.caffemodel").read_bytes() == (tmp_path / "b.caffemodel").read_bytes()


def test_reads_protobuf_written_file_with_unpacked_and_split_data(tmp_path):
    """Packed repeated fields may legally arrive unpacked or in several chunks."""
    values = np.arange(6, dtype="<f4")
    unpacked = b"".join(encode_varint((5 << 3) | 5) + struct.pack("<f", v) for v in values[:2])
    packed_rest = len_header(5, 16) + values[2:].tobytes()
    shape = schema.BlobShape(dim=[2, 3]).SerializeToString()
    blob = unpacked + packed_rest + len_header(7, len(shape)) + shape
    layer = schema.LayerParameter(name="p", type="Parameter").SerializeToString() + len_header(7, len(blob)) + blob
    path = tmp_path / "chunks.caffemodel"
    path.write_bytes(len_header(100, len(layer)) + layer)
    (stored,) = read_caffemodel(path).layers
    np.testing.assert_array_equal(stored.blobs[0].values, values.reshape(2, 3))


def v1_caffemodel_bytes() -> bytes:
    """An old-style caffemodel: V1 `layers` with enum types, blobs with legacy 4-D shapes."""
    net = schema.NetParameter(name="old")
    layer = net.layers.add(name="fc", type=schema.V1LayerParameter.INNER_PRODUCT)
    layer.bottom.append("data")
    layer.top.append("fc")
    weight = layer.blobs.add(num=1, channels=1, height=3, width=4)
    weight.data.extend(range(12))
    bias = layer.blobs.add(num=1, channels=1, height=1, width=3)
    bias.data.extend([1, 2, 3])
    return net.SerializeToString()


def test_reads_v1_layers_with_legacy_shapes(tmp_path):
    path = tmp_path / "old.caffemodel"
    path.write_bytes(v1_caffemodel_bytes())
    (stored,) = read_caffemodel(path).layers
    assert (stored.name, stored.type) == ("fc", "INNER_PRODUCT")
    assert [b.values.shape for b in stored.blobs] == [(1, 1, 3, 4), (1, 1, 1, 3)]
    assert all(b.legacy_shape for b in stored.blobs)


def test_reads_v0_nested_layer_blobs(tmp_path):
    net = schema.NetParameter(name="v0")
    outer = net.layers.add()
    outer.layer.name = "ip"
    outer.layer.type = "innerproduct"
    blob = outer.layer.blobs.add(num=1, channels=1, height=2, width=2)
    blob.data.extend([1, 2, 3, 4])
    path = tmp_path / "v0.caffemodel"
    path.write_bytes(net.SerializeToString())
    (stored,) = read_caffemodel(path).layers
    assert (stored.name, stored.type) == ("ip", "innerproduct")
    np.testing.assert_array_equal(stored.blobs[0].values.ravel(), [1, 2, 3, 4])


def test_diff_blobs_are_dropped_and_counted(tmp_path):
    net = schema.NetParameter()
    layer = net.layer.add(name="p", type="Parameter")
    blob = layer.blobs.add()
    blob.shape.dim.append(2)
    blob.data.extend([1, 2])
    blob.diff.extend([9, 9])
    path = tmp_path / "diff.caffemodel"
    path.write_bytes(net.SerializeToString())
    model = read_caffemodel(path)
    assert model.dropped_diffs == 1
    np.testing.assert_array_equal(model.layers[0].blobs[0].values, [1, 2])


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b'name: "LeNet"\nlayer { name: "data" }\n', "not a valid caffemodel"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "not a valid caffemodel"),
    ],
)
def test_bad_files_are_caffemodel_errors(tmp_path, content, message):
    path = tmp_path / "bad.caffemodel"
    path.write_bytes(content)
    with pytest.raises(CaffemodelError, match=message) as info:
        read_caffemodel(path)
    assert info.value.location.path == path


def test_prototxt_as_caffemodel_gets_a_hint(tmp_path):
    path = tmp_path / "deploy.caffemodel"
    path.write_text('name: "LeNet"\nlayer {\n  name: "data"\n  type: "Input"\n}\n')
    with pytest.raises(CaffemodelError) as info:
        read_caffemodel(path)
    assert "prototxt" in info.value.hint


def test_truncated_file_is_an_error(tmp_path):
    path = tmp_path / "cut.caffemodel"
    write_caffemodel(path, tiny_net(), tiny_weights())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 7])
    with pytest.raises(CaffemodelError, match="runs past the end"):
        read_caffemodel(path)


def test_element_count_must_match_shape(tmp_path):
    net = schema.NetParameter()
    blob = net.layer.add(name="p", type="Parameter").blobs.add()
    blob.shape.dim.extend([2, 3])
    blob.data.extend([1, 2, 3, 4, 5])
    path = tmp_path / "count.caffemodel"
    path.write_bytes(net.SerializeToString())
    with pytest.raises(CaffemodelError, match=r"5 values but its shape \[2, 3\] needs 6"):
        read_caffemodel(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputFileError, match="not found"):
        read_caffemodel(tmp_path / "missing.caffemodel")
    with pytest.raises(InputFileError, match="folder"):
        read_caffemodel(tmp_path)


def test_refuses_unstorable_dtype_and_unknown_layer(tmp_path):
    weights = tiny_weights()
    weights["fc"][0] = weights["fc"][0].astype(np.float16)
    with pytest.raises(CaffemodelError, match="float16"):
        write_caffemodel(tmp_path / "x.caffemodel", tiny_net(), weights)
    with pytest.raises(CaffemodelError, match="nope"):
        write_caffemodel(tmp_path / "x.caffemodel", tiny_net(), {"nope": []})
    assert list(tmp_path.iterdir()) == []  # nothing half-written
