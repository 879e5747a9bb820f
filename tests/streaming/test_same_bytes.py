"""Streaming and in-memory conversion write the same bytes: the ONNX test zoo and samples (inline and
with external data), the Caffe corpus (random weights), legacy caffemodels, and the inputs that
make the in-memory path run by itself (a pipe, a non-canonical or split ONNX file)."""

import contextlib

import numpy as np
import onnx
import onnx_zoo as zoo
import pytest
from corpus import SAMPLES, corpus_file, corpus_names

from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions, apply_caffe_plan, plan_caffe_rewrite
from proto_rewrite.caffe.init_weights import random_weights
from proto_rewrite.caffe.model import load_caffe, save_caffe
from proto_rewrite.caffe.schema import bundled_schema
from proto_rewrite.caffe.shapes import infer_shapes
from proto_rewrite.filecopy import read_into_memory
from proto_rewrite.onnx.model import load_onnx, save_onnx
from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite
from proto_rewrite.wire import iter_fields, len_header

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite

# (loaded in memory, saved streaming): streaming; the in-memory writer on the mapped model; the
# in-memory path as a whole (files read into memory, then the default choice).
WAYS = {"streaming": (False, None), "in-memory save": (False, False), "in-memory": (True, None)}


def _files(folder) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


# -- ONNX ------------------------------------------------------------------------------------

ZOO = [
    ("flatten_gemm", {}),
    ("flatten_gemm", {"trans_b": 0}),
    ("flatten_gemm", {"alpha": 0.5, "beta": 2.0}),
    ("flatten_gemm", {"bias": "2d"}),
    ("flatten_gemm", {"bias": "scalar"}),
    ("flatten_gemm", {"dtype": np.float16, "trans_b": 0}),
    ("flatten_gemm", {"opset": 9}),
    ("reshape_gemm", {}),
    ("dynamic_chain", {}),
    ("matmul_add", {}),
    ("matmul_add", {"dtype": np.float64}),
    ("matmul_add", {"bias": False}),
    ("gap_gemm", {}),
    ("mlp", {}),
    ("nhwc", {}),
    ("activations", {}),
    ("two_outputs", {}),
    ("trans_a", {}),
    ("weight_input", {}),
    ("shared_weight", {}),
    ("batched_bias", {}),
    ("matmul_nd", {}),
    ("reshape_to_3d_matmul", {}),
    ("quantized", {}),
    ("wrong_flatten", {}),
    ("flatten_axis2", {}),
    ("swapped_hw", {}),
    ("rank3_flatten", {}),
    ("symbolic_size", {}),
    ("qgemm_op", {}),
]


def _save_source(proto: onnx.ModelProto, folder, external: bool):
    folder.mkdir(parents=True, exist_ok=True)
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)  # onnx.save moves the data out of the proto it is given
    onnx.save(
        copy,
        folder / "m.onnx",
        save_as_external_data=external,
        all_tensors_to_one_file=True,
        location="m.onnx.weights",
        size_threshold=0,
    )
    return folder / "m.onnx"


def _onnx_ways(source, tmp_path, **options):
    results = {}
    for way, (in_memory, streaming) in WAYS.items():
        model = load_onnx(source, streaming=False if in_memory else None)
        converted = apply_onnx_plan(model, plan_onnx_rewrite(model, **options))
        folder = tmp_path / way.replace(" ", "_")
        folder.mkdir()
        report = save_onnx(converted, folder / "out.onnx", streaming=streaming)
        assert report.streaming == (way == "streaming"), report.describe()
        results[way] = _files(folder)
    assert results["in-memory save"] == results["streaming"]
    assert results["in-memory"] == results["streaming"]
    return results["streaming"]


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external"])
@pytest.mark.parametrize("builder,kwargs", ZOO, ids=[f"{b}{i}" for i, (b, _) in enumerate(ZOO)])
def test_onnx_zoo(tmp_path, builder, kwargs, external):
    kwargs = dict(kwargs)
    proto = getattr(zoo, builder)(kwargs.pop("opset", 13), kwargs.pop("dtype", np.float32), **kwargs)
    source = _save_source(proto, tmp_path / "src", external)
    written = _onnx_ways(source, tmp_path)
    if not external:  # and loaded then saved as it is, streaming gives what onnx.save gave
        save_onnx(load_onnx(source), tmp_path / "same.onnx")
        assert (tmp_path / "same.onnx").read_bytes() == source.read_bytes()
    assert onnx.load(tmp_path / "streaming" / "out.onnx").graph.node  # a model onnx reads
    assert sorted(written) == (["out.onnx", "out.onnx.data"] if external else ["out.onnx"])


@pytest.mark.parametrize("options", [{"mode": "exact"}, {"classifier_before_pool": True}])
def test_onnx_options(tmp_path, options):
    builder = zoo.gap_gemm if options.get("classifier_before_pool") else zoo.dynamic_chain
    _onnx_ways(_save_source(builder(13, np.float32), tmp_path / "src", False), tmp_path, **options)


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external"])
@pytest.mark.parametrize("name", ["lenet.onnx", "vgg_mini.onnx"])
def test_onnx_samples(tmp_path, name, external):
    source = _save_source(onnx.load(SAMPLES / "onnx" / name), tmp_path / "src", external)
    _onnx_ways(source, tmp_path)


def test_external_data_file_is_copied_as_it_is_when_no_tensor_in_it_changes(tmp_path):
    source = _save_source(zoo.flatten_gemm(13, np.float32), tmp_path / "src", True)  # transB=1: reshapes
    written = _onnx_ways(source, tmp_path)
    assert written["out.onnx.data"] == (source.parent / "m.onnx.weights").read_bytes()
    headers = onnx.load(tmp_path / "streaming" / "out.onnx", load_external_data=False).graph.initializer
    assert {entry.value for t in headers for entry in t.external_data if entry.key == "location"} == {"out.onnx.data"}


def test_external_data_is_laid_out_anew_when_a_tensor_changes(tmp_path):
    source = _save_source(zoo.flatten_gemm(13, np.float32, trans_b=0), tmp_path / "src", True)  # transposed
    written = _onnx_ways(source, tmp_path)
    assert written["out.onnx.data"] != (source.parent / "m.onnx.weights").read_bytes()


def _reordered_initializer(proto: onnx.ModelProto) -> bytes:
    """The model's bytes with its first initializer's fields out of number order (name first):
    legal protobuf that onnx never writes."""
    data = bytearray(proto.SerializeToString())
    graph = next(r for r in iter_fields(data) if r.number == 7)
    tensor = next(r for r in iter_fields(data, graph.value_start, graph.end) if r.number == 5)
    fields = list(iter_fields(data, tensor.value_start, tensor.end))
    name = [f for f in fields if f.number == 8]
    reordered = b"".join(bytes(data[f.start : f.end]) for f in name + [f for f in fields if f.number != 8])
    data[tensor.value_start : tensor.end] = reordered
    return bytes(data)


def test_non_canonical_initializers_are_written_canonically(tmp_path):
    proto = zoo.flatten_gemm(13, np.float32)
    path = tmp_path / "src" / "m.onnx"
    path.parent.mkdir()
    path.write_bytes(_reordered_initializer(proto))
    assert path.read_bytes() != proto.SerializeToString() and onnx.load(path) == proto
    save_onnx(load_onnx(path), tmp_path / "same.onnx")
    assert (tmp_path / "same.onnx").read_bytes() == proto.SerializeToString()
    _onnx_ways(path, tmp_path)


def test_a_graph_in_several_records_runs_the_in_memory_path(tmp_path):
    proto = zoo.flatten_gemm(13, np.float32)
    data = proto.SerializeToString()
    graph = next(r for r in iter_fields(data) if r.number == 7)
    fields = list(iter_fields(data, graph.value_start, graph.end))
    parts = [
        b"".join(data[f.start : f.end] for f in fields if (f.number == 5) == initializers)
        for initializers in (False, True)
    ]
    split = data[: graph.start] + b"".join(len_header(7, len(p)) + p for p in parts) + data[graph.end :]
    path = tmp_path / "split.onnx"
    path.write_bytes(split)
    assert onnx.load(path) == proto
    model = load_onnx(path)
    report = save_onnx(apply_onnx_plan(model, plan_onnx_rewrite(model)), tmp_path / "auto.onnx")
    assert not report.streaming and "several records" in report.reason
    path.write_bytes(data)
    model = load_onnx(path)
    assert save_onnx(apply_onnx_plan(model, plan_onnx_rewrite(model)), tmp_path / "streamed.onnx").streaming
    assert (tmp_path / "auto.onnx").read_bytes() == (tmp_path / "streamed.onnx").read_bytes()


@contextlib.contextmanager
def _pipe(path, data: bytes):
    """``path`` holds ``data`` and is read as a pipe would be: into memory, not mapped (a real
    pipe is refused before it is opened: tests/hardening/test_unbounded.py)."""
    path.write_bytes(data)
    with read_into_memory("the file is not a regular file (a pipe or a device): it cannot be mapped"):
        yield path


def test_an_onnx_model_from_a_pipe_runs_the_in_memory_path(tmp_path):
    proto = zoo.dynamic_chain(13, np.float32)
    regular = _save_source(proto, tmp_path / "src", False)
    with _pipe(tmp_path / "pipe.onnx", regular.read_bytes()) as pipe:
        model = load_onnx(pipe)
    report = save_onnx(apply_onnx_plan(model, plan_onnx_rewrite(model)), tmp_path / "piped.onnx")
    assert not report.streaming and "not a regular file" in report.reason
    assert "in-memory path" in report.describe() and "not a regular file" in report.describe()
    model = load_onnx(regular)
    assert save_onnx(apply_onnx_plan(model, plan_onnx_rewrite(model)), tmp_path / "file.onnx").streaming
    assert (tmp_path / "piped.onnx").read_bytes() == (tmp_path / "file.onnx").read_bytes()


# -- Caffe -----------------------------------------------------------------------------------

FC_OUTPUTS, CONV_OUTPUTS = 32, 128  # caps that keep the corpus' weights to a few MB per net


def _shrink(net) -> None:
    """Narrow the wide layers (the structure stays: types, groups, branches that must match)."""
    for layer in net.layer:
        if layer.type == "InnerProduct":
            param = layer.inner_product_param
            param.num_output = min(param.num_output, FC_OUTPUTS)
        elif layer.type in ("Convolution", "Deconvolution") and layer.convolution_param.num_output > CONV_OUTPUTS:
            param = layer.convolution_param
            group = param.group or 1
            if group == param.num_output:  # depthwise
                param.num_output = param.group = CONV_OUTPUTS
            else:
                param.num_output = CONV_OUTPUTS // group * group


def _caffe_source(prototxt, folder, shrink=True):
    model = load_caffe(prototxt, weights=None)
    if shrink:
        _shrink(model.net)
    shapes = {}
    for layer in model.net.layer:
        if layer.type == "Input":
            declared = [tuple(s.dim) for s in layer.input_param.shape]
            for top, shape in zip(layer.top, declared * len(layer.top) if len(declared) == 1 else declared):
                shapes[top] = (1, *shape[1:])
    model.weights = random_weights(model.net, infer_shapes(model.net, shapes), 0)
    folder.mkdir()
    save_caffe(model, folder / "net.prototxt", folder / "net.caffemodel")
    return folder / "net.prototxt", folder / "net.caffemodel"


def _caffe_ways(prototxt, caffemodel, tmp_path, options=None):
    results, reports = {}, {}
    for way, (in_memory, streaming) in WAYS.items():
        with read_into_memory() if in_memory else contextlib.nullcontext():
            model = load_caffe(prototxt, caffemodel)
        converted = apply_caffe_plan(model, plan_caffe_rewrite(model, options))
        folder = tmp_path / way.replace(" ", "_")
        folder.mkdir()
        reports[way] = save_caffe(converted, folder / "out.prototxt", folder / "out.caffemodel", streaming=streaming)
        assert reports[way].streaming == (way == "streaming"), reports[way].describe()
        results[way] = _files(folder)
    assert results["in-memory save"] == results["streaming"]
    assert results["in-memory"] == results["streaming"]
    return reports["streaming"]


@pytest.mark.parametrize("name", corpus_names())
def test_caffe_corpus(tmp_path, name):
    prototxt, caffemodel = _caffe_source(corpus_file(name), tmp_path / "src")
    report = _caffe_ways(prototxt, caffemodel, tmp_path)
    weights = caffemodel.stat().st_size
    assert report.stats.copied + report.stats.written >= weights * 0.9


@pytest.mark.parametrize("name", ["lenet", "caffenet_mini"])
def test_caffe_samples(tmp_path, name):
    report = _caffe_ways(SAMPLES / name / f"{name}.prototxt", SAMPLES / name / f"{name}.caffemodel", tmp_path)
    assert report.stats.copied > 0 and report.stats.methods


def test_caffe_rename_and_pool_scores(tmp_path):
    prototxt = SAMPLES / "caffenet_mini" / "caffenet_mini.prototxt"
    options = CaffeRewriteOptions(rename_suffix="-conv", pool_scores="avg")
    _caffe_ways(prototxt, prototxt.with_suffix(".caffemodel"), tmp_path, options)


def _legacy_caffemodel(path, weights_from, v0: bool) -> None:
    """The weights of ``weights_from`` as an old Caffe wrote them: V1 ``layers`` (or V0 ``layers {
    layer }``) and blobs with num / channels / height / width instead of a shape."""
    model = load_caffe(weights_from)
    net = schema.NetParameter(name="legacy")
    for layer in model.net.layer:
        v1 = net.layers.add(name=layer.name)
        holder = v1.layer if v0 else v1
        if v0:
            holder.name, holder.type = layer.name, layer.type.lower()
        else:
            v1.type = schema.V1LayerParameter.LayerType.Value(_V1_TYPES.get(layer.type, "NONE"))
        for array in model.weights.get(layer.name, []):
            blob = holder.blobs.add()
            dims = (1,) * (4 - array.ndim) + array.shape
            blob.num, blob.channels, blob.height, blob.width = dims
            blob.MergeFromString(len_header(5, array.nbytes) + np.ascontiguousarray(array, "<f4").tobytes())
    path.write_bytes(net.SerializeToString())


_V1_TYPES = {
    "Convolution": "CONVOLUTION",
    "InnerProduct": "INNER_PRODUCT",
    "Pooling": "POOLING",
    "ReLU": "RELU",
    "Softmax": "SOFTMAX",
    "Input": "NONE",
}


@pytest.mark.parametrize("v0", [False, True], ids=["V1", "V0"])
def test_legacy_caffemodel(tmp_path, v0):
    prototxt = SAMPLES / "lenet" / "lenet.prototxt"
    legacy = tmp_path / "legacy.caffemodel"
    _legacy_caffemodel(legacy, prototxt, v0)
    report = _caffe_ways(prototxt, legacy, tmp_path)
    assert report.stats.copied >= 800 * 500 * 4  # ip1's weight: copied from the legacy file as it is
    modern = load_caffe(tmp_path / "streaming" / "out.prototxt")
    assert {name: [a.shape for a in arrays] for name, arrays in modern.weights.items()}["ip1"][0] == (500, 50, 4, 4)


def test_caffe_weights_from_a_pipe_run_the_in_memory_path(tmp_path):
    prototxt = SAMPLES / "lenet" / "lenet.prototxt"
    data = prototxt.with_suffix(".caffemodel").read_bytes()
    with _pipe(tmp_path / "pipe.caffemodel", data) as pipe:
        model = load_caffe(prototxt, pipe)
    report = save_caffe(
        apply_caffe_plan(model, plan_caffe_rewrite(model)), tmp_path / "p.prototxt", tmp_path / "piped.caffemodel"
    )
    assert not report.streaming and "not a regular file" in report.reason
    model = load_caffe(prototxt)
    assert save_caffe(
        apply_caffe_plan(model, plan_caffe_rewrite(model)), tmp_path / "f.prototxt", tmp_path / "file.caffemodel"
    ).streaming
    assert (tmp_path / "piped.caffemodel").read_bytes() == (tmp_path / "file.caffemodel").read_bytes()


def test_caffe_in_memory_writer_past_protobufs_limit(tmp_path, monkeypatch):
    """Past 2 GB the in-memory writer serializes layer by layer: the same bytes."""
    from proto_rewrite.caffe import caffemodel

    prototxt = SAMPLES / "caffenet_mini" / "caffenet_mini.prototxt"
    model = load_caffe(prototxt)
    save_caffe(model, tmp_path / "a.prototxt", tmp_path / "a.caffemodel", streaming=False)
    monkeypatch.setattr(caffemodel, "PROTOBUF_LIMIT", 4096)
    save_caffe(model, tmp_path / "b.prototxt", tmp_path / "b.caffemodel", streaming=False)
    assert (tmp_path / "a.caffemodel").read_bytes() == (tmp_path / "b.caffemodel").read_bytes()
