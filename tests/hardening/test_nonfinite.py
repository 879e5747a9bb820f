"""NaN and Inf weights: found a chunk at a time (no full-size boolean array, the pages read are
given back), reported naming the tensor, allowed with --allow-nonfinite; the check leaves the
weights as views of the mapped input, so the streaming writers still copy them file to file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from proto_rewrite import nonfinite
from proto_rewrite.caffe.caffemodel import write_caffemodel
from proto_rewrite.caffe.model import load_caffe, save_caffe
from proto_rewrite.caffe.prototxt import parse_net_text
from proto_rewrite.errors import NonFiniteWeightsError
from proto_rewrite.nonfinite import (
    CHUNK_ELEMENTS,
    check_caffe_weights,
    check_onnx_weights,
    scan,
    scan_chunks,
)
from proto_rewrite.onnx.model import load_onnx, save_onnx

ROOT = Path(__file__).resolve().parents[2]


def test_scan_finds_counts_and_the_first_position():
    values = np.zeros((3, CHUNK_ELEMENTS), np.float32)
    values[2, 5] = np.inf
    values[2, 9] = np.nan
    values[1, 7] = -np.inf
    found = scan(values)
    assert (found.nan, found.inf, found.first) == (1, 2, (1, 7))
    assert "1 NaN and 2 Inf values (the first at index [1, 7])" in found.describe()
    assert scan(np.ones((4, 4), np.float32)) is None
    assert scan(np.arange(10)) is None  # integers hold no NaN
    assert scan(np.zeros((0, 3), np.float32)) is None


def test_scan_of_non_contiguous_and_other_floats():
    values = np.zeros((5, 7), np.float64)
    values[3, 1] = np.nan
    assert scan(values.T).first == (1, 3)
    assert scan(values.astype(np.float16)[1::2]).first == (1, 1)
    bits = np.zeros(6, np.uint16)
    bits[4] = 0x7F80  # bfloat16 +Inf
    bits[5] = 0x7FC1  # bfloat16 NaN
    found = scan(bits, bfloat16=True)
    assert (found.nan, found.inf, found.first) == (1, 1, (4,))


def test_scan_chunks_counts_across_blocks():
    values = np.zeros(10, "<f4")
    values[7] = np.nan
    blocks = [values[:4].tobytes(), values[4:].tobytes()]
    assert scan_chunks(blocks, np.dtype("<f4"), (2, 5)).first == (1, 2)


def test_never_a_full_size_boolean_array(monkeypatch):
    sizes = []
    real = np.isfinite

    def recording(array, *args, **kwargs):
        sizes.append(np.asarray(array).size)
        return real(array, *args, **kwargs)

    monkeypatch.setattr(nonfinite.np, "isfinite", recording)
    values = np.zeros(5 * CHUNK_ELEMENTS + 3, np.float32)
    values[-1] = np.nan
    assert scan(values).first == (values.size - 1,)
    assert len(sizes) == 6 and max(sizes) <= CHUNK_ELEMENTS


NET = """
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 256 dim: 4 dim: 4 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 128 } }
"""


def _caffe_model(folder: Path, bad: bool = False) -> Path:
    prototxt = folder / "wide.prototxt"
    prototxt.write_text(NET)
    weight = np.random.default_rng(0).standard_normal((128, 4096)).astype(np.float32)
    if bad:
        weight[100, 4000] = np.nan
    write_caffemodel(
        folder / "wide.caffemodel", parse_net_text(NET, "wide"), {"fc": [weight, np.zeros(128, np.float32)]}
    )
    return prototxt


def test_caffe_check_then_streaming_save(tmp_path):
    model = load_caffe(_caffe_model(tmp_path))
    check_caffe_weights(model)
    report = save_caffe(model, tmp_path / "out.prototxt", tmp_path / "out.caffemodel")
    assert report.streaming and report.stats.copied >= 128 * 4096 * 4  # still copied file to file
    assert (tmp_path / "out.caffemodel").read_bytes() == (tmp_path / "wide.caffemodel").read_bytes()


def test_caffe_error_names_the_layer(tmp_path):
    model = load_caffe(_caffe_model(tmp_path, bad=True))
    with pytest.raises(NonFiniteWeightsError) as info:
        check_caffe_weights(model)
    err = info.value
    assert err.location.layer == "fc" and str(err.location.path).endswith("wide.caffemodel")
    assert "blob 0 of layer 'fc' holds 1 NaN value (the first at index [100, 4000])" in err.message


def _onnx_model(folder: Path, value: float | None = None, data_type=TensorProto.FLOAT) -> Path:
    dtype = helper.tensor_dtype_to_np_dtype(data_type)
    weight = np.random.default_rng(1).standard_normal((256, 512)).astype(dtype)
    if value is not None:
        weight[3, 4] = value
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)],
        "g",
        [helper.make_tensor_value_info("x", data_type, [1, 512])],
        [helper.make_tensor_value_info("y", data_type, [1, 256])],
        [numpy_helper.from_array(weight, "w")],
    )
    path = folder / "fc.onnx"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("data_type", [TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE])
def test_onnx_error_names_the_initializer(data_type, tmp_path):
    model = load_onnx(_onnx_model(tmp_path, -np.inf, data_type))
    with pytest.raises(NonFiniteWeightsError) as info:
        check_onnx_weights(model)
    assert info.value.location.layer == "w" and "1 Inf value (the first at index [3, 4])" in info.value.message


def test_onnx_check_then_streaming_save(tmp_path):
    model = load_onnx(_onnx_model(tmp_path))
    check_onnx_weights(model)
    report = save_onnx(model, tmp_path / "copy.onnx")
    assert report.streaming and report.stats.copied >= 256 * 512 * 4


RUNNER = """
import sys
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.nonfinite import check_caffe_weights
def status(key):
    return int([l for l in open("/proc/self/status") if l.startswith(key)][0].split()[1]) / 1024
model = load_caffe(sys.argv[1])
before = status("VmRSS")
check_caffe_weights(model)
print(before, status("VmHWM"), status("VmRSS"))
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc (Linux)")
def test_checking_a_large_caffemodel_does_not_grow_the_process(tmp_path):
    """64 MiB of weights scanned: the resident set grows by a few chunks, not by the weights."""
    prototxt = tmp_path / "big.prototxt"
    text = NET.replace("num_output: 128", "num_output: 4096")
    prototxt.write_text(text)
    weight = np.ones((4096, 4096), np.float32)
    write_caffemodel(
        tmp_path / "big.caffemodel", parse_net_text(text, "big"), {"fc": [weight, np.zeros(4096, np.float32)]}
    )
    del weight
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RUNNER), str(prototxt)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    before, peak, _ = map(float, result.stdout.split())
    assert peak - before < 24, result.stdout  # MiB; without giving the pages back: + 64
