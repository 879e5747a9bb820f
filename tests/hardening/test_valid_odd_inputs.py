"""Issue 14, valid inputs that were refused or slow: a caffemodel with unpacked floats, a sparse
initializer as a Gemm weight, an Eltwise of 10 000 bottoms, a prototxt with a UTF-8 byte-order
mark. Each is accepted, and what comes out computes the right numbers (onnxruntime, graph
optimisations off, fp32 error <= 1e-5 x max|out|)."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from bounded_run import ROOT, snapshot
from cli_run import run_cli
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite.caffe.caffemodel import read_caffemodel
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.caffe.schema import bundled_schema
from proto_rewrite.wire import len_header

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite

LENET = ROOT / "samples" / "lenet" / "lenet.prototxt"


def _session(model) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    data = model if isinstance(model, bytes) else open(model, "rb").read()
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _close(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    assert np.abs(a - b).max() <= 1e-5 * max(np.abs(b).max(), 1e-30)


# --- unpacked floats ------------------------------------------------------------------------------


def _unpacked_blob(values: np.ndarray, *, double: bool = False, split: int | None = None) -> bytes:
    """A BlobProto with ``shape`` and each value as its own field record (tag + fixed32/64); with
    ``split``, the first ``split`` values packed and the rest unpacked (both in one blob)."""
    shape = schema.BlobShape(dim=list(values.shape)).SerializeToString()
    number, dtype, tag = (8, "<f8", 0x41) if double else (5, "<f4", 0x2D)
    flat = np.ascontiguousarray(values, dtype=dtype).reshape(-1)
    body = len_header(7, len(shape)) + shape
    if split:
        packed = flat[:split].tobytes()
        body += len_header(number, len(packed)) + packed
        flat = flat[split:]
    records = np.empty((flat.size, 1 + flat.itemsize), np.uint8)
    records[:, 0] = tag
    records[:, 1:] = flat.view(np.uint8).reshape(flat.size, flat.itemsize)
    return body + records.tobytes()


def _unpacked_caffemodel(source, target) -> None:
    """``source`` rewritten with every blob's floats unpacked (its first blob half packed)."""
    stored = read_caffemodel(source)
    out = bytearray()
    for index, (layer, kept) in enumerate(zip(stored.net.layer, stored.layers)):
        message = layer.SerializeToString()
        for number, blob in enumerate(kept.blobs):
            data = _unpacked_blob(blob.values, split=blob.values.size // 2 if number == 0 and index % 2 else None)
            message += len_header(7, len(data)) + data
        out += len_header(100, len(message)) + message
    target.write_bytes(bytes(out))


def test_unpacked_floats_read_as_packed_ones(tmp_path):
    for suffix in (".prototxt", ".caffemodel"):
        shutil.copy(LENET.with_suffix(suffix), tmp_path / f"packed{suffix}")
    shutil.copy(LENET, tmp_path / "unpacked.prototxt")
    _unpacked_caffemodel(tmp_path / "packed.caffemodel", tmp_path / "unpacked.caffemodel")
    # valid protobuf: protobuf's own parser reads the same values
    parsed = schema.NetParameter.FromString((tmp_path / "unpacked.caffemodel").read_bytes())
    packed = load_caffe(tmp_path / "packed.prototxt")
    unpacked = load_caffe(tmp_path / "unpacked.prototxt")
    assert np.array_equal(np.array(parsed.layer[1].blobs[0].data, np.float32), packed.weights["conv1"][0].reshape(-1))
    for name, arrays in packed.weights.items():
        for a, b in zip(arrays, unpacked.weights[name]):
            assert a.shape == b.shape and np.array_equal(a, b)
    before = snapshot(tmp_path)
    (tmp_path / "out").mkdir()
    run = run_cli(["convert", tmp_path / "unpacked.prototxt", "-o", tmp_path / "out" / "fcn.prototxt", "--validate"])
    assert run.code == 0 and "PASSED" in run.stderr, run.stderr
    converted = load_caffe(tmp_path / "out" / "fcn.prototxt")
    assert [layer.type for layer in converted.net.layer if layer.name.startswith("ip")] == ["Convolution"] * 2
    assert {k: v for k, v in snapshot(tmp_path)[str(tmp_path)].items() if not k.startswith("out")} == before[
        str(tmp_path)
    ]


def test_unpacked_doubles_and_large_blobs(tmp_path):
    values = np.random.default_rng(0).standard_normal((500, 2000)).astype(np.float32)  # 1M floats, 5 MB
    bias = np.linspace(-1, 1, 500)
    layer = schema.LayerParameter(name="fc", type="InnerProduct").SerializeToString()
    for blob in (_unpacked_blob(values), _unpacked_blob(bias, double=True)):
        layer += len_header(7, len(blob)) + blob
    path = tmp_path / "fc.caffemodel"
    path.write_bytes(len_header(100, len(layer)) + layer)
    stored = read_caffemodel(path)
    assert np.array_equal(stored.layers[0].blobs[0].values, values)
    assert stored.layers[0].blobs[1].values.dtype == np.float64
    assert np.array_equal(stored.layers[0].blobs[1].values, bias)


# --- a sparse initializer as the Gemm weight ------------------------------------------------------


def _sparse_gemm(path) -> np.ndarray:
    rng = np.random.default_rng(3)
    dense = rng.standard_normal((6, 48)).astype(np.float32)
    dense[rng.random(dense.shape) < 0.7] = 0.0
    flat = dense.reshape(-1)
    where = np.flatnonzero(flat)
    sparse = helper.make_sparse_tensor(
        numpy_helper.from_array(flat[where], "fc_w"),
        numpy_helper.from_array(where.astype(np.int64), "fc_w_indices"),
        [6, 48],
    )
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "sparse",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        [numpy_helper.from_array(np.arange(6, dtype=np.float32), "fc_b")],
        sparse_initializer=[sparse],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    return dense


def test_a_sparse_gemm_weight_is_densified_and_converted(tmp_path):
    source = tmp_path / "sparse.onnx"
    dense = _sparse_gemm(source)
    before = snapshot(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    from proto_rewrite.onnx.model import load_onnx

    notes = [str(d) for d in load_onnx(source).diagnostics]
    assert any("sparse initializer 'fc_w'" in note and "dense" in note for note in notes), notes
    run = run_cli(["convert", source, "-o", out / "fcn.onnx"])
    assert run.code == 0, run.stderr
    converted = onnx.load(out / "fcn.onnx")
    assert [n.op_type for n in converted.graph.node] == ["Conv"]
    assert not converted.graph.sparse_initializer
    kernel = numpy_helper.to_array(next(t for t in converted.graph.initializer if t.name == "fc_w"))
    assert kernel.shape == (6, 3, 4, 4) and np.array_equal(kernel.reshape(6, 48), dense)
    x = np.random.default_rng(4).standard_normal((1, 3, 4, 4)).astype(np.float32)
    (expected,) = _session(source).run(None, {"x": x})  # onnxruntime runs the sparse original
    (got,) = _session(out / "fcn.onnx").run(None, {"x": x})
    _close(got.reshape(expected.shape), expected)
    assert run_cli(["validate", source, out / "fcn.onnx"]).code == 0
    assert snapshot(tmp_path)[str(tmp_path)] == {
        **before[str(tmp_path)],
        **{k: v for k, v in snapshot(tmp_path)[str(tmp_path)].items() if k.startswith("out")},
    }


# --- an Eltwise of 10 000 bottoms -----------------------------------------------------------------


def test_eltwise_with_10000_bottoms(tmp_path):
    count = 10_000
    tops = " ".join(f'top: "s{i}"' for i in range(count))
    bottoms = " ".join(f'bottom: "s{i}"' for i in range(count))
    model = tmp_path / "wide_sum.prototxt"
    model.write_text(
        'input: "data" input_dim: 1 input_dim: 2 input_dim: 3 input_dim: 3\n'
        f'layer {{ name: "split" type: "Split" bottom: "data" {tops} }}\n'
        f'layer {{ name: "sum" type: "Eltwise" {bottoms} top: "sum" }}\n'
    )
    from bounded_run import run_bounded

    peak = run_bounded(
        ["inspect", model, "--no-weights"],
        driver=(
            "import resource, sys; from proto_rewrite.cli.main import main; code = main(sys.argv[1:]); "
            "print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss); sys.exit(code)"
        ),
    )
    assert peak.code == 0 and "3 layers" in peak.stdout, peak.stderr
    assert int(peak.stdout.split("PEAK_KB")[-1]) < 400 * 1024  # the table once padded every row: 1.7 GB
    exported = tmp_path / "wide_sum.onnx"
    run = run_cli(["export", model, "-o", exported])  # shape inference, then the ONNX graph
    assert run.code == 0 and "output sum: 1x2x3x3" in run.stdout, run.stderr
    # small integers: the fp32 sum of 10 000 of them is exact, whatever the order
    x = np.random.default_rng(5).integers(-4, 5, (1, 2, 3, 3)).astype(np.float32)
    session = _session(exported)
    (got,) = session.run(None, {session.get_inputs()[0].name: x})
    _close(got, x * count)


# --- a UTF-8 byte-order mark ----------------------------------------------------------------------


@pytest.mark.parametrize("command", ["inspect", "convert"])
def test_a_byte_order_mark_is_skipped(tmp_path, command):
    plain, marked = tmp_path / "plain", tmp_path / "marked"
    for folder in (plain, marked):
        folder.mkdir()
        shutil.copy(LENET.with_suffix(".caffemodel"), folder / "lenet.caffemodel")
    (plain / "lenet.prototxt").write_text(LENET.read_text(), encoding="utf-8")
    (marked / "lenet.prototxt").write_bytes(b"\xef\xbb\xbf" + LENET.read_bytes())
    results = []
    for folder in (plain, marked):
        argv = [command, folder / "lenet.prototxt"] + (["-o", folder / "out.prototxt"] if command == "convert" else [])
        run = run_cli(argv)
        assert run.code == 0, run.stderr
        results.append(run.stdout.replace(str(folder), "X"))
    assert results[0] == results[1]
    if command == "convert":
        assert (plain / "out.prototxt").read_bytes() == (marked / "out.prototxt").read_bytes()
        assert (plain / "out.caffemodel").read_bytes() == (marked / "out.caffemodel").read_bytes()


# --- a fork's schema without a field Caffe added later --------------------------------------------


def _schema_without(tmp_path, message: str, field: str, rename: str | None = None):
    from importlib import resources

    from google.protobuf import descriptor_pb2

    data = resources.files("proto_rewrite.caffe").joinpath("caffe_descriptor.pb").read_bytes()
    file_set = descriptor_pb2.FileDescriptorSet.FromString(data)
    for file_proto in file_set.file:
        for item in file_proto.message_type:
            if item.name == message:
                index = next(i for i, f in enumerate(item.field) if f.name == field)
                if rename:
                    item.field[index].name = rename
                else:
                    del item.field[index]
    path = tmp_path / "fork.pb"
    path.write_bytes(file_set.SerializeToString())
    return path


def test_an_older_forks_schema_gets_the_fields_it_lacks(tmp_path):
    from bounded_run import assert_refused, run_bounded

    fork = _schema_without(tmp_path, "InnerProductParameter", "transpose")  # BVLC added it in 2016
    out = tmp_path / "out"
    out.mkdir()
    run = run_bounded(["convert", LENET, "--caffe-schema", fork, "-o", out / "fcn.prototxt", "--validate"])
    assert run.code == 0 and "PASSED" in run.stderr, run.stderr
    renamed = _schema_without(tmp_path, "InnerProductParameter", "transpose", rename="contrastUpper")
    run = run_bounded(["inspect", LENET, "--caffe-schema", renamed])
    assert_refused(run, renamed, message="field number 6 of caffe.InnerProductParameter is 'contrastUpper'")
