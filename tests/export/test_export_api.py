"""export_onnx as an API: names, refusals, weights stored once, opsets, dynamic sizes, legacy
formats, and write_onnx (atomic, external data over the size limit)."""

from __future__ import annotations

import sys

import caffe_reference as ref
import numpy as np
import onnx
import pytest
from export_helpers import (
    assert_rel,
    caffe_net,
    input_layer,
    newest_runnable_opset,
    rng_input,
    run,
    session,
)
from google.protobuf import text_format

from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.caffe.onnx_export import (
    DEFAULT_OPSET,
    MIN_OPSET,
    ExportError,
    UnsupportedLayerError,
    build_onnx,
    export_onnx,
    max_opset,
    supported_layer_types,
    write_onnx,
)
from proto_rewrite.caffe.schema import bundled_schema
from proto_rewrite.errors import OutputError, ProtoRewriteError, UsageError

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite

SMALL = (
    input_layer(2, 3, 8, 8) + 'layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" '
    "convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n"
    + 'layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }\n'
    + 'layer { name: "drop" type: "Dropout" bottom: "conv" top: "conv" }\n'
    + 'layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool" '
    "pooling_param { pool: AVE kernel_size: 3 stride: 2 pad: 1 } }\n"
    + 'layer { name: "fc" type: "InnerProduct" bottom: "pool" top: "fc" inner_product_param { num_output: 5 } }\n'
    + 'layer { name: "fc_relu" type: "ReLU" bottom: "fc" top: "fc" }\n'
)


def values_of(proto) -> list[str]:
    return [value for node in proto.graph.node for value in node.output]


def test_names_follow_the_blobs_and_in_place_layers(tmp_path):
    model = caffe_net(tmp_path, SMALL)
    proto = export_onnx(model)
    assert [v.name for v in proto.graph.input] == ["data"]
    assert [v.name for v in proto.graph.output] == ["fc"]  # the blob's last value keeps its name
    values = values_of(proto)
    assert {"conv@conv", "conv", "pool", "fc@fc", "fc"} <= set(values)
    assert len(values) == len(set(values))
    assert not any("drop" in value for value in values), "Dropout computes nothing at inference"
    got = run(model, {"data": rng_input((2, 3, 8, 8))}, extra_outputs={"conv@conv": 4, "fc@fc": 2})
    assert np.all(got["fc"] >= 0) and np.any(got["fc@fc"] < 0)
    assert np.any(got["conv@conv"] < 0)


def test_an_input_rewritten_in_place_keeps_its_name(tmp_path):
    text = (
        input_layer(1, 3)
        + 'layer { name: "abs" type: "AbsVal" bottom: "data" top: "data" }\n'
        + 'layer { name: "exp" type: "Exp" bottom: "data" top: "data" }\n'
    )
    model = caffe_net(tmp_path, text, weights={})
    proto = export_onnx(model)
    assert [v.name for v in proto.graph.input] == ["data"]
    assert [v.name for v in proto.graph.output] == ["data@exp"]
    x = rng_input((1, 3))
    assert_rel(run(model, {"data": x})["data@exp"], np.exp(np.abs(x)))


def test_python_layers_are_refused_by_name_and_never_imported(tmp_path):
    module = "proto_rewrite_test_module_that_must_not_be_imported"
    (tmp_path / f"{module}.py").write_text("raise SystemExit('imported!')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        text = (
            input_layer(1, 3)
            + 'layer { name: "relu" type: "ReLU" bottom: "data" top: "r" }\n'
            + f'layer {{ name: "custom" type: "Python" bottom: "r" top: "y" '
            f'python_param {{ module: "{module}" layer: "Custom" }} }}\n'
        )
        model = caffe_net(tmp_path, text, weights={})
        with pytest.raises(UnsupportedLayerError) as caught:
            export_onnx(model)
    finally:
        sys.path.remove(str(tmp_path))
    error = caught.value
    assert error.location.layer == "custom" and error.location.line == 3
    assert error.layer_type == "Python" and module in error.message
    assert module not in sys.modules
    assert isinstance(error, ProtoRewriteError) and error.exit_code == 2


@pytest.mark.parametrize(
    "text, kind, hint",
    [
        (
            (
                'layer { name: "roi" type: "ROIPooling" bottom: "data" bottom: "data" top: "y" '
                "roi_pooling_param { pooled_h: 2 pooled_w: 2 } }"
            ),
            "ROIPooling",
            "converts",
        ),
        (
            'layer { name: "loss" type: "SoftmaxWithLoss" bottom: "data" bottom: "data" top: "y" }',
            "SoftmaxWithLoss",
            "deploy",
        ),
    ],
)
def test_unsupported_layers_are_typed_errors(tmp_path, text, kind, hint):
    model = caffe_net(tmp_path, input_layer(1, 3, 4, 4) + text + "\n", weights={})
    with pytest.raises(UnsupportedLayerError, match=kind) as caught:
        export_onnx(model)
    assert caught.value.location.line == 2 and hint in caught.value.hint


def test_missing_weights_are_an_error(tmp_path):
    model = caffe_net(tmp_path, SMALL, weights={})
    with pytest.raises(ExportError, match="blob 0 is missing") as caught:
        export_onnx(model)
    assert caught.value.location.layer == "conv"


def test_weights_of_the_wrong_shape_are_an_error(tmp_path):
    model = caffe_net(tmp_path, SMALL)
    model.weights["conv"][0] = np.zeros((4, 3, 2, 2), np.float32)
    with pytest.raises(ExportError, match=r"\(4, 3, 3, 3\)"):
        export_onnx(model)


def test_weights_are_stored_once(tmp_path):
    shared = 'param { name: "w" } param { name: "b" } convolution_param { num_output: 3 kernel_size: 1 } }\n'
    text = (
        input_layer(1, 3, 4, 4)
        + 'layer { name: "c1" type: "Convolution" bottom: "data" top: "c1" '
        + shared
        + 'layer { name: "c2" type: "Convolution" bottom: "c1" top: "c2" '
        + shared
    )
    model = caffe_net(tmp_path, text)
    model.weights["c2"] = model.weights["c1"]
    proto = export_onnx(model)
    assert [t.name for t in proto.graph.initializer] == ["c1/weight", "c1/bias"]
    x = rng_input((1, 3, 4, 4))
    w, b = model.weights["c1"]
    once = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], x) + b[:, None, None]
    twice = np.einsum("oc,nchw->nohw", w[:, :, 0, 0], once) + b[:, None, None]
    assert_rel(run(model, {"data": x})["c2"], twice)


def test_initializers_are_the_caffe_weights_byte_for_byte(tmp_path):
    model = caffe_net(tmp_path, SMALL)
    proto = export_onnx(model)
    tensors = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    for layer in ("conv", "fc"):
        np.testing.assert_array_equal(tensors[f"{layer}/weight"], model.weights[layer][0])
        np.testing.assert_array_equal(tensors[f"{layer}/bias"], model.weights[layer][1])


@pytest.mark.parametrize("opset", [MIN_OPSET, 12, 13, DEFAULT_OPSET, 18])
def test_opsets(tmp_path, opset):
    model = caffe_net(tmp_path, SMALL + 'layer { name: "prob" type: "Softmax" bottom: "fc" top: "prob" }\n')
    proto = export_onnx(model, opset=opset)
    assert proto.opset_import[0].version == opset
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    x = rng_input((2, 3, 8, 8))
    expected = run(model, {"data": x}, opset=newest_runnable_opset())["prob"]
    assert_rel(run(model, {"data": x}, opset=opset)["prob"], expected, 1e-6)


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, max_opset() + 1])
def test_opsets_out_of_range(tmp_path, opset):
    model = caffe_net(tmp_path, SMALL)
    with pytest.raises(UsageError, match=f"opset {opset}"):
        export_onnx(model, opset=opset)


def test_supported_layer_types():
    wanted = {
        "Convolution",
        "Deconvolution",
        "Pooling",
        "InnerProduct",
        "LRN",
        "BatchNorm",
        "Scale",
        "Bias",
        "Eltwise",
        "Concat",
        "Slice",
        "Split",
        "Flatten",
        "Reshape",
        "Crop",
        "Softmax",
        "ReLU",
        "PReLU",
        "ELU",
        "Sigmoid",
        "TanH",
        "AbsVal",
        "Power",
        "Exp",
        "Log",
        "BNLL",
        "Threshold",
        "Dropout",
        "ArgMax",
        "MVN",
        "Permute",
        "Normalize",
        "PriorBox",
        "DetectionOutput",
        "Input",
    }
    assert wanted <= supported_layer_types()
    assert "Python" not in supported_layer_types()


def test_dynamic_batch(tmp_path):
    model = caffe_net(tmp_path, SMALL)
    proto = export_onnx(model, dynamic_batch=True)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == [3, 8, 8]
    assert proto.graph.output[0].type.tensor_type.shape.dim[0].dim_param == "N"
    sess = session(proto)
    for batch in (1, 3):
        x = rng_input((batch, 3, 8, 8), seed=batch)
        static = run(model, {"data": x}, input_shapes={"data": x.shape})["fc"]
        assert_rel(sess.run(None, {"data": x})[0], static, 1e-6)


FULLY_CONVOLUTIONAL = (
    input_layer(1, 3, 20, 22) + 'layer { name: "c1" type: "Convolution" bottom: "data" top: "c1" '
    "convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }\n"
    + 'layer { name: "p1" type: "Pooling" bottom: "c1" top: "p1" pooling_param { pool: MAX kernel_size: 3 stride: 2 pad: 1 } }\n'
    + 'layer { name: "p2" type: "Pooling" bottom: "p1" top: "p2" pooling_param { pool: AVE kernel_size: 3 stride: 2 } }\n'
    + 'layer { name: "p3" type: "Pooling" bottom: "p2" top: "p3" pooling_param { pool: AVE kernel_size: 2 stride: 2 pad: 1 } }\n'
    + 'layer { name: "up" type: "Deconvolution" bottom: "p3" top: "up" '
    "convolution_param { num_output: 2 kernel_size: 16 stride: 8 } }\n"
    + 'layer { name: "crop" type: "Crop" bottom: "up" bottom: "data" top: "crop" crop_param { axis: 2 offset: 3 } }\n'
    + 'layer { name: "flat" type: "Flatten" bottom: "crop" top: "flat" flatten_param { axis: 2 } }\n'
    + 'layer { name: "prob" type: "Softmax" bottom: "flat" top: "prob" }\n'
)


def test_dynamic_size(tmp_path):
    model = caffe_net(tmp_path, FULLY_CONVOLUTIONAL)
    proto = export_onnx(model, dynamic_size=True, dynamic_batch=True)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 3, "H", "W"]
    sess = session(proto)
    for shape in [(1, 3, 20, 22), (2, 3, 17, 31), (1, 3, 24, 9), (1, 3, 33, 33)]:
        x = rng_input(shape, seed=shape[2])
        static = run(model, {"data": x}, input_shapes={"data": shape})["prob"]
        assert_rel(sess.run(None, {"data": x})[0], static, 1e-6, str(shape))


def test_dynamic_size_refused_where_a_layer_needs_a_fixed_size(tmp_path):
    model = caffe_net(tmp_path, SMALL)
    with pytest.raises(ExportError, match="InnerProduct") as caught:
        export_onnx(model, dynamic_size=True)
    assert caught.value.location.layer == "fc"


LENET_V1 = """
name: "LeNet"
input: "data"
input_dim: 2 input_dim: 1 input_dim: 28 input_dim: 28
layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" convolution_param { num_output: 4 kernel_size: 5 } }
layers { name: "pool1" type: POOLING bottom: "conv1" top: "pool1" pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layers { name: "ip1" type: INNER_PRODUCT bottom: "pool1" top: "ip1" inner_product_param { num_output: 10 } }
layers { name: "relu1" type: RELU bottom: "ip1" top: "ip1" }
layers { name: "prob" type: SOFTMAX bottom: "ip1" top: "prob" }
"""


def _legacy_caffemodel(text: str, weights: dict) -> bytes:
    """A caffemodel as old Caffe wrote it: V1 layers, blobs with num/channels/height/width."""
    net = text_format.Parse(text, schema.NetParameter())
    for layer in net.layers:
        for array in weights.get(layer.name, []):
            blob = layer.blobs.add()
            blob.data.extend(array.ravel().tolist())
            blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - array.ndim) + array.shape
    return net.SerializeToString()


def test_v1_prototxt_with_legacy_blob_shapes(tmp_path):
    rs = np.random.RandomState(0)
    weights = {
        "conv1": [
            (rs.standard_normal((4, 1, 5, 5)) * 0.2).astype(np.float32),
            rs.standard_normal(4).astype(np.float32),
        ],
        "ip1": [(rs.standard_normal((10, 576)) * 0.05).astype(np.float32), rs.standard_normal(10).astype(np.float32)],
    }
    (tmp_path / "lenet.prototxt").write_text(LENET_V1)
    (tmp_path / "lenet.caffemodel").write_bytes(_legacy_caffemodel(LENET_V1, weights))
    model = load_caffe(tmp_path / "lenet.prototxt", tmp_path / "lenet.caffemodel")
    assert model.source_format == "V1"
    x = rng_input((2, 1, 28, 28))
    got = run(model, {"data": x})["prob"]
    pooled = ref.pool2d(ref.conv2d(x, *weights["conv1"]), (2, 2), (2, 2), (0, 0))
    logits = np.maximum(pooled.reshape(2, -1) @ weights["ip1"][0].T + weights["ip1"][1], 0)
    assert_rel(got, ref.softmax(logits, 1), 1e-5)


V0_NET = """
name: "tiny_v0"
input: "data"
input_dim: 1 input_dim: 3 input_dim: 10 input_dim: 10
layers { layer { name: "conv1" type: "conv" num_output: 4 kernelsize: 3 stride: 1 } bottom: "data" top: "conv1" }
layers { layer { name: "relu1" type: "relu" } bottom: "conv1" top: "conv1" }
layers { layer { name: "pool1" type: "pool" pool: MAX kernelsize: 2 stride: 2 } bottom: "conv1" top: "pool1" }
layers { layer { name: "fc" type: "innerproduct" num_output: 3 } bottom: "pool1" top: "fc" }
layers { layer { name: "prob" type: "softmax" } bottom: "fc" top: "prob" }
"""


def test_v0_prototxt_exports_every_layer(tmp_path):
    model = caffe_net(tmp_path, V0_NET)
    assert model.source_format == "V0"
    proto = export_onnx(model)
    assert [node.op_type for node in proto.graph.node] == ["Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Softmax"]
    assert [v.name for v in proto.graph.output] == ["prob"]
    got = run(model, {"data": rng_input((1, 3, 10, 10))})["prob"]
    assert got.shape == (1, 3) and abs(float(got.sum()) - 1) < 1e-5


def test_unknown_input_shape_is_an_error(tmp_path):
    text = (
        'layer { name: "data" type: "Input" top: "data" }\nlayer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n'
    )
    model = caffe_net(tmp_path, text, weights={})
    with pytest.raises(ExportError, match="input 'data'") as caught:
        export_onnx(model)
    assert "input_shapes" in caught.value.hint
    proto = export_onnx(model, input_shapes={"data": [2, 5]})
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim] == [2, 5]


# ---------------------------------------------------------------------------------------------
# write_onnx


def test_write_onnx_writes_what_onnx_save_writes(tmp_path):
    proto = export_onnx(caffe_net(tmp_path, SMALL))
    path = tmp_path / "out.onnx"
    assert write_onnx(proto, path) == [path]
    assert path.read_bytes() == proto.SerializeToString()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_write_onnx_uses_external_data_over_the_limit(tmp_path):
    import onnxruntime as ort

    model = caffe_net(tmp_path, SMALL)
    x = rng_input((2, 3, 8, 8))
    expected = run(model, {"data": x})["fc"]
    proto = export_onnx(model)
    path = tmp_path / "out.onnx"
    written = write_onnx(proto, path, size_limit=1000)
    assert written == [path, tmp_path / "out.onnx.data"]
    assert path.stat().st_size < 5000 and written[1].stat().st_size > 4 * 5 * 64
    loaded = onnx.load(str(path))
    onnx.checker.check_model(str(path), full_check=True)
    weight = next(t for t in loaded.graph.initializer if t.name == "fc/weight")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(weight), model.weights["fc"][0])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert_rel(sess.run(None, {"data": x})[0], expected, 1e-6)


def test_write_onnx_failure_leaves_nothing(tmp_path):
    proto = export_onnx(caffe_net(tmp_path, SMALL))
    with pytest.raises(OutputError):
        write_onnx(proto, tmp_path / "missing" / "out.onnx")
    (tmp_path / "folder.onnx").mkdir()
    with pytest.raises(OutputError):
        write_onnx(proto, tmp_path / "folder.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.onnx", "net.prototxt"]


def _same_model(loaded, proto) -> None:
    assert list(loaded.graph.node) == list(proto.graph.node)
    assert list(loaded.graph.input) == list(proto.graph.input) and list(loaded.graph.output) == list(proto.graph.output)
    assert [t.name for t in loaded.graph.initializer] == [t.name for t in proto.graph.initializer]
    for got, want in zip(loaded.graph.initializer, proto.graph.initializer):
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(got), onnx.numpy_helper.to_array(want))


@pytest.mark.parametrize("size_limit, files", [(None, ["out.onnx"]), (0, ["out.onnx", "out.onnx.data"])])
def test_streamed_export_is_the_same_model(tmp_path, size_limit, files):
    model = caffe_net(tmp_path, SMALL)
    exported = build_onnx(model)
    assert set(exported.deferred) == {"fc/weight"}  # the tensors of 1 KiB or more (conv/weight: 432 bytes)
    folder = tmp_path / "out"
    folder.mkdir()
    written = exported.write(folder / "out.onnx", **({} if size_limit is None else {"size_limit": size_limit}))
    assert [p.name for p in written] == files == sorted(p.name for p in folder.iterdir())
    assert all(not t.HasField("raw_data") for t in exported.proto.graph.initializer if t.name in exported.deferred)
    complete = exported.materialize()
    loaded = onnx.load(str(folder / "out.onnx"))
    _same_model(loaded, complete)
    if size_limit is None:  # one writer for every model: the bytes protobuf serializes
        assert (folder / "out.onnx").read_bytes() == complete.SerializeToString()
    onnx.checker.check_model(str(folder / "out.onnx"), full_check=True)


def test_streamed_export_failure_leaves_nothing(tmp_path):
    exported = build_onnx(caffe_net(tmp_path, SMALL))
    with pytest.raises(OutputError):
        exported.write(tmp_path / "missing" / "out.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.prototxt"]


def test_write_onnx_refuses_two_initializers_of_one_name(tmp_path):
    proto = export_onnx(caffe_net(tmp_path, SMALL))
    proto.graph.initializer.add().CopyFrom(proto.graph.initializer[0])
    with pytest.raises(OutputError, match="two initializers are named"):
        write_onnx(proto, tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()
