"""Issue 14, hangs and unbounded reads: pipes and devices, a huge prototxt, random weights past
the limits, validate inputs past the limits or forged, a model too large to inline, an input
truncated while it is mapped. Each refused case: exit 2, no traceback, the file named, nothing
written, inputs byte-identical, inside a time bound (and a 2 GiB address-space bound where the
unbounded version would allocate)."""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from bounded_run import ROOT, assert_refused, run_bounded, snapshot
from cli_run import run_cli
from onnx import TensorProto, helper, numpy_helper

SAMPLES = ROOT / "samples"
LENET = SAMPLES / "lenet" / "lenet.prototxt"
LENET_ONNX = SAMPLES / "onnx" / "lenet.onnx"

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX only")


@pytest.fixture(autouse=True)
def _default_limits():
    """The CLI sets the limits per command, for the process: library calls after an in-process
    run must not inherit a --max-*-bytes from it."""
    from proto_rewrite import limits

    yield
    limits.set_max_tensor_bytes(None)
    limits.set_max_text_bytes(None)
    limits.set_max_random_bytes(None)


def _lenet_copy(folder: Path) -> Path:
    folder.mkdir(exist_ok=True)
    for suffix in (".prototxt", ".caffemodel"):
        shutil.copy(LENET.with_suffix(suffix), folder / f"lenet{suffix}")
    return folder / "lenet.prototxt"


# --- pipes and devices ----------------------------------------------------------------------------


def test_a_fifo_as_the_model_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "model.prototxt"
    os.mkfifo(fifo)  # nobody writes: opening it for reading would block forever
    before = snapshot(tmp_path)
    run = run_cli(["inspect", fifo], seconds=20)
    assert_refused(run, fifo, message="named pipe")
    assert snapshot(tmp_path) == before


def test_a_fifo_as_the_weights_is_refused(tmp_path):
    model = _lenet_copy(tmp_path / "in")
    fifo = tmp_path / "in" / "weights.caffemodel"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    out.mkdir()
    before = snapshot(tmp_path)
    run = run_cli(["convert", model, "--weights", fifo, "-o", out / "c.prototxt"], seconds=20)
    assert_refused(run, fifo, message="named pipe")
    assert snapshot(tmp_path) == before


def test_a_fifo_inside_a_batch_folder_fails_alone(tmp_path):
    folder = tmp_path / "models"
    _lenet_copy(folder)
    fifo = folder / "stuck.prototxt"
    os.mkfifo(fifo)
    before = snapshot(folder)
    run = run_cli(["convert", folder, "-o", tmp_path / "out"], seconds=60)
    assert run.code == 2 and "Traceback" not in run.stderr, run.stderr
    assert f"{fifo}: prototxt is a named pipe" in run.stderr, run.stderr
    assert (tmp_path / "out" / "lenet.prototxt").is_file()  # the good model is converted
    assert not (tmp_path / "out" / "stuck.prototxt").exists()
    assert snapshot(folder) == before


@pytest.mark.parametrize("device, role", [("/dev/zero", "weights"), ("/dev/urandom", "model")])
def test_endless_devices_are_refused(tmp_path, device, role):
    if not os.path.exists(device):
        pytest.skip(f"no {device}")
    model = _lenet_copy(tmp_path)
    argv = ["inspect", model, "--weights", device] if role == "weights" else ["inspect", device]
    run = run_bounded(argv, seconds=30)
    assert_refused(run, device, message="character device")


# --- model text size ------------------------------------------------------------------------------


def test_a_prototxt_over_the_text_limit_is_refused_from_its_size(tmp_path):
    big = tmp_path / "big.prototxt"
    line = "# " + "x" * 1021 + "\n"
    with open(big, "w") as handle:  # 17 MiB of comments: over the 16 MiB default
        handle.write('name: "big"\n' + line * (17 * 1024))
    before = snapshot(tmp_path)
    run = run_bounded(["inspect", big, "--no-weights"], seconds=30)
    assert_refused(run, big, message="--max-text-bytes")
    assert "PROTO_REWRITE_MAX_TEXT_BYTES" in run.stderr
    assert snapshot(tmp_path) == before


def test_the_text_limit_can_be_lowered_and_raised(tmp_path):
    run = run_cli(["inspect", LENET, "--no-weights", "--max-text-bytes", "100"])
    assert_refused(run, LENET, message="over the limit of 100 bytes")
    assert run_cli(["inspect", LENET, "--no-weights", "--max-text-bytes", "1M"]).code == 0


def test_a_plan_over_the_text_limit_is_refused_from_its_size(tmp_path, monkeypatch):
    monkeypatch.setenv("PROTO_REWRITE_MAX_TEXT_BYTES", "8000")  # the models pass, the plan does not
    plan = tmp_path / "plan.json"
    plan.write_text('{"plan_version": 1, "padding": "' + "x" * 9000 + '"}')
    before = snapshot(tmp_path)
    for argv in (
        ["diff", LENET, LENET, "--no-weights", "--plan", plan],
        ["validate", LENET_ONNX, LENET_ONNX, "--localize", "--plan", plan],
    ):
        run = run_cli(argv, seconds=30)
        assert run.code == 2, run.stderr
        assert_refused(run, plan, message="over the limit")
    assert snapshot(tmp_path) == before


# --- random weights -------------------------------------------------------------------------------

HUGE_FC = """input: "data" input_dim: 1 input_dim: 1 input_dim: 32768 input_dim: 16384
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 4 } }
"""


@pytest.mark.parametrize("command", ["export", "init-weights"])
def test_random_weights_of_8_gib_are_refused_before_allocating(tmp_path, command):
    model = tmp_path / "huge.prototxt"
    model.write_text(HUGE_FC)
    assert model.stat().st_size < 200
    out = tmp_path / ("out.onnx" if command == "export" else "out.caffemodel")
    before = snapshot(tmp_path)
    run = run_bounded([command, model, "-o", out], seconds=60)  # 2 GiB of address space at most
    assert_refused(run, model, message="--max-random-bytes")
    assert "8 GiB" in run.stderr and "'fc'" in run.stderr
    assert snapshot(tmp_path) == before


def test_init_weights_honours_max_tensor_bytes(tmp_path):
    out = tmp_path / "w.caffemodel"
    run = run_cli(["init-weights", LENET, "-o", out, "--max-tensor-bytes", "100000"])
    assert_refused(run, LENET, message="--max-tensor-bytes")
    assert not out.exists()


WIDE = 'input: "data" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 2048\n' + "".join(
    f'layer {{ name: "fc{i}" type: "InnerProduct" bottom: "{"data" if i == 0 else f"fc{i - 1}"}" top: "fc{i}" '
    "inner_product_param { num_output: 2048 } }\n"
    for i in range(10)
)  # 10 x 16 MiB of weights

PEAK_DRIVER = r"""
import resource, sys
from proto_rewrite.cli.main import main
code = main(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def _peak_kb(argv) -> int:
    run = run_bounded(argv, driver=PEAK_DRIVER)
    assert run.code == 0, run.stderr
    return int(run.stdout.split("PEAK_KB")[-1])


@pytest.mark.parametrize("command", ["init-weights", "export"])
def test_random_weights_are_drawn_and_written_one_layer_at_a_time(tmp_path, command):
    from proto_rewrite.caffe.caffemodel import write_caffemodel
    from proto_rewrite.caffe.init_weights import random_weights
    from proto_rewrite.caffe.model import load_caffe

    wide = tmp_path / "wide.prototxt"
    wide.write_text(WIDE)
    tiny = tmp_path / "tiny.prototxt"
    tiny.write_text(WIDE.replace("2048", "8"))
    suffix = ".caffemodel" if command == "init-weights" else ".onnx"
    out = tmp_path / f"wide{suffix}"
    growth_kb = _peak_kb([command, wide, "-o", out]) - _peak_kb([command, tiny, "-o", tmp_path / f"tiny{suffix}"])
    assert growth_kb < 80 * 1024, growth_kb  # all ten layers at once would be 160 MiB
    model = load_caffe(wide, None)
    eager = random_weights(model.net, model.shapes, 0)
    if command == "init-weights":
        expected = tmp_path / "eager.caffemodel"
        write_caffemodel(expected, model.net, eager)
        assert out.read_bytes() == expected.read_bytes()  # the same bytes as drawing everything first
        return
    exported = onnx.load(out)
    assert [node.op_type for node in exported.graph.node].count("Gemm") == 10
    stored = {t.name: numpy_helper.to_array(t) for t in exported.graph.initializer}
    weight = next(array for name, array in stored.items() if name.startswith("fc9") and array.ndim == 2)
    assert np.array_equal(weight, eager["fc9"][0])  # the values init-weights draws for the same seed


# --- validate inputs ------------------------------------------------------------------------------


def test_batch_on_a_fixed_batch_model_is_refused_before_drawing():
    run = run_bounded(["validate", LENET_ONNX, LENET_ONNX, "--batch", "300000"], seconds=60)
    assert_refused(run, "--batch 300000", message="fixed batch size of 1")


def _lenet_input() -> str:
    import onnxruntime as ort

    return ort.InferenceSession(str(LENET_ONNX), providers=["CPUExecutionProvider"]).get_inputs()[0].name


def _npy_header(shape, descr="<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _make_npz(kind: str, path: Path, name: str) -> None:
    good = np.zeros((1, 1, 28, 28), np.float32)
    if kind == "npy":
        with open(path, "wb") as handle:
            np.save(handle, good)
    elif kind == "truncated":
        np.savez(path.with_suffix(".tmp.npz"), **{name: good})
        data = path.with_suffix(".tmp.npz").read_bytes()
        path.with_suffix(".tmp.npz").unlink()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "bomb":  # 256 MiB of zeros in a few hundred KiB, as one member
        with (
            zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive,
            archive.open(name + ".npy", "w", force_zip64=True) as member,
        ):
            member.write(_npy_header((1, 1, 8192, 8192)))
            block = bytes(1 << 24)
            for _ in range(16):
                member.write(block)
    elif kind == "huge":  # declares 2^42 elements, holds 64 bytes
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr(name + ".npy", _npy_header((2**42,)) + bytes(64))
    elif kind == "shape":
        np.savez(path, **{name: np.zeros((1, 1, 30, 30), np.float32)})


@pytest.mark.parametrize(
    "kind, message",
    [
        ("npy", "is a .npy file"),
        ("truncated", "not a complete .npz"),
        ("bomb", "has shape (1, 1, 8192, 8192)"),
        ("huge", "declares shape (4398046511104)"),
        ("shape", "has shape (1, 1, 30, 30) in the file"),
    ],
)
def test_bad_npz_inputs_are_blamed_on_the_npz(tmp_path, kind, message):
    npz = tmp_path / f"{kind}.npz"
    _make_npz(kind, npz, _lenet_input())
    before = snapshot(tmp_path)
    run = run_bounded(["validate", LENET_ONNX, LENET_ONNX, "--inputs", npz], seconds=60)
    assert_refused(run, npz, message=message)
    assert snapshot(tmp_path) == before


# --- a model too large to inline ------------------------------------------------------------------


def _external_model(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((10, 48), dtype=np.float32), "fc_w")
    bias = numpy_helper.from_array(rng.standard_normal(10, dtype=np.float32), "fc_b")
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["y"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "ext",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    folder.mkdir()
    path = folder / "ext.onnx"
    onnx.save_model(model, path, save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    return path


def test_a_model_over_the_inline_limit_runs_with_its_external_data(tmp_path, monkeypatch):
    import onnxruntime as ort

    from proto_rewrite.validation import runtime
    from proto_rewrite.validation.load import load_for_validation

    source = _external_model(tmp_path / "in")
    (tmp_path / "out").mkdir()
    converted = tmp_path / "out" / "fcn.onnx"
    assert run_cli(["convert", source, "-o", converted]).code == 0
    assert [n.op_type for n in onnx.load(converted, load_external_data=False).graph.node] == ["Conv"]
    before = snapshot(tmp_path)
    monkeypatch.setattr(runtime, "INLINE_LIMIT", 0)  # as if the weights passed 2 GB
    proto = load_for_validation(source)
    assert runtime.external_folder(proto) == str(source.parent)
    assert all(t.data_location == TensorProto.EXTERNAL and not t.raw_data for t in proto.graph.initializer)
    run = run_cli(["validate", source, converted])
    assert run.code == 0 and "PASSED" in run.stderr, run.stderr
    # The session made from the kept references computes what onnxruntime computes from the file.
    x = np.random.default_rng(1).standard_normal((1, 3, 4, 4), dtype=np.float32)
    session = runtime.make_session(
        proto.SerializeToString(), runtime.RuntimeOptions(), external_folder=runtime.external_folder(proto)
    )
    reference = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    (ours,), (theirs,) = session.run(None, {"x": x}), reference.run(None, {"x": x})
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()
    assert snapshot(tmp_path) == before


# --- an input truncated while it is mapped --------------------------------------------------------

TRUNCATE_DRIVER = r"""
import os, subprocess, sys, time
import proto_rewrite.nonfinite as nonfinite
WEIGHTS = sys.argv[-1]
real_scan, started = nonfinite.scan, []

def scan(array, **kw):  # the first weight scan: the file is mapped and being read
    if not started:
        started.append(subprocess.Popen([sys.executable, "-c", f"import os; os.truncate({WEIGHTS!r}, 100)"]))
        time.sleep(1.0)  # the truncating process is held by the lease; its SIGIO arrives here
    return real_scan(array, **kw)

nonfinite.scan = scan
from proto_rewrite.cli.main import main
sys.exit(main(sys.argv[1:-1]))
"""


def test_an_input_truncated_while_mapped_is_an_error_not_sigbus(tmp_path):
    from proto_rewrite.caffe.caffemodel import write_caffemodel
    from proto_rewrite.caffe.model import load_caffe

    model = tmp_path / "net.prototxt"
    model.write_text(
        'input: "data" input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 2048\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" '
        "inner_product_param { num_output: 2048 } }\n"
    )
    weights = tmp_path / "net.caffemodel"
    net = load_caffe(model, None).net
    write_caffemodel(weights, net, {"fc": [np.ones((2048, 2048), np.float32), np.zeros(2048, np.float32)]})
    out = tmp_path / "out"
    out.mkdir()
    run = run_bounded(["convert", model, "-o", out / "c.prototxt", weights], driver=TRUNCATE_DRIVER)
    assert run.code == 2, (run.code, run.stderr)  # SIGBUS would be -7
    assert_refused(run, weights, message="truncated by another process")
    assert list(out.iterdir()) == []
