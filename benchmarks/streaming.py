"""Convert VGG16-size models streaming, in memory, and compare with a plain ``cp`` of the same files.

    python benchmarks/streaming.py [--formats onnx,caffe] [--sizes 1,4] [--repeat 2]
                                   [--variant gemm|matmul] [--folder DIR]

For each format and size a VGG16 with random weights is generated in a temporary folder (``--folder``
to choose where): 1x is the real VGG16 (ONNX ~528 MiB, caffemodel ~528 MiB); 4x widens fc6 and
fc7 until the file is four times as large. An ONNX model that large does not fit in one protobuf
(2 GB), so it is written with its weights in an external data file, as exporters do; the
caffemodel stays one file (proto-rewrite reads and writes it without parsing it whole).

Steps, each in a fresh process (so that its peak RSS, VmHWM from /proc/self/status, is its own):

- ``cp``: the coreutils command, model file (and data file) to a new name;
- ``streaming``: load, plan, apply, save: the default path (untouched bytes copied file to file);
- ``in-memory``: the same with the files read into memory and the output serialized by protobuf
  as one message (the fallback path);
- ``onnx.load + onnx.save`` (ONNX, 1x): the full parse the issue measured, for reference.

Printed per step: ``convert s`` (load to save, after the imports), ``process s`` (the whole
process: interpreter start and imports included), both as a ratio to ``cp``, and peak RSS (for
``cp``, the cp process's). The streaming and in-memory outputs are compared byte for byte; each
output is deleted once measured, and ``sync`` runs before each step, so that no step pays for
writing back the previous one's output. Nothing is asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from vgg16_graph import FLAT, VGG16_BLOCKS, vgg16_nodes  # noqa: E402


def fc_width(size: float) -> int:
    """The fc6/fc7 width that makes VGG16 ``size`` times as large as with 4096."""
    conv = sum(_conv_params())
    base = conv + _fc_params(4096)
    target = size * base
    # fc params: FLAT*w + w + w*w + w + 1000*w + 1000 = w^2 + (FLAT + 1002) w + 1000
    a, b, c = 1.0, FLAT + 1002.0, 1000.0 + conv - target
    return round((-b + math.sqrt(b * b - 4 * a * c)) / (2 * a))


def _conv_params() -> list[int]:
    params, channels = [], 3
    for repeats, out in VGG16_BLOCKS:
        for _ in range(repeats):
            params.append(out * channels * 9 + out)
            channels = out
    return params


def _fc_params(width: int) -> int:
    return FLAT * width + width + width * width + width + 1000 * width + 1000


# ---------------------------------------------------------------------------------------------
# Models


def build_onnx(path: Path, width: int, variant: str) -> list[Path]:
    """VGG16 as PyTorch exports it (Gemm transB=1; ``matmul``: MatMul + Add, weights (K, M)),
    written by proto-rewrite's own writer from weights generated a block at a time."""
    import numpy as np
    from onnx import TensorProto, helper

    from proto_rewrite.onnx.model import OnnxModel, save_onnx
    from proto_rewrite.onnx.tensors import DerivedTensor

    nodes, tensors = [], {}

    def weight(name, shape):
        seed = len(tensors)

        def blocks(shape=shape, seed=seed):
            local = np.random.default_rng(seed)
            rows = max(1, (8 * 2**20) // (4 * max(1, math.prod(shape[1:]))))
            for first in range(0, shape[0], rows):
                count = min(rows, shape[0] - first)
                yield (local.standard_normal((count, *shape[1:]), dtype=np.float32) * 0.01)

        tensors[name] = DerivedTensor(name, shape, TensorProto.FLOAT, blocks)
        return name

    more, x = vgg16_nodes(weight, width, variant)
    nodes += more
    graph = helper.make_graph(
        nodes,
        "vgg16",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 1000])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="benchmark")
    proto.ir_version = 8
    report = save_onnx(OnnxModel(proto, tensors, None, str(path.parent)), path)
    return [Path(p) for p in report.paths]


def build_caffe(folder: Path, width: int) -> tuple[Path, Path]:
    import numpy as np
    from caffemodel_io import vgg16_prototxt
    from google.protobuf import text_format

    from proto_rewrite.caffe.schema import bundled_schema

    schema = bundled_schema()
    from proto_rewrite.caffe.caffemodel import write_caffemodel

    prototxt = folder / "vgg16.prototxt"
    prototxt.write_text(vgg16_prototxt(width / 4096))
    net = text_format.Parse(prototxt.read_text(), schema.NetParameter())
    shapes, channels = {}, 3
    for block, (repeats, out) in enumerate(VGG16_BLOCKS, start=1):
        for index in range(1, repeats + 1):
            shapes[f"conv{block}_{index}"] = [(out, channels, 3, 3), (out,)]
            channels = out
    fc = int(4096 * (width / 4096))
    shapes.update(fc6=[(fc, FLAT), (fc,)], fc7=[(fc, fc), (fc,)], fc8=[(1000, fc), (1000,)])
    rng = np.random.default_rng(0)
    weights = {
        name: [rng.standard_normal(shape, dtype=np.float32) for shape in layer] for name, layer in shapes.items()
    }
    caffemodel = folder / "vgg16.caffemodel"
    write_caffemodel(caffemodel, net, weights)
    return prototxt, caffemodel


# ---------------------------------------------------------------------------------------------
# Steps

ONNX_STEPS = {
    "streaming": """
        from proto_rewrite.onnx.model import load_onnx, save_onnx
        from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite
        START()
        model = load_onnx(MODEL)
        report = save_onnx(apply_onnx_plan(model, plan_onnx_rewrite(model)), OUT)
    """,
    "in-memory": """
        from proto_rewrite.onnx.model import load_onnx, save_onnx
        from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite
        START()
        model = load_onnx(MODEL, streaming=False)
        report = save_onnx(apply_onnx_plan(model, plan_onnx_rewrite(model)), OUT, streaming=False)
    """,
    "onnx.load + onnx.save": """
        import onnx
        START()
        onnx.save(onnx.load(MODEL), OUT)
        report = None
    """,
}

CAFFE_STEPS = {
    "streaming": """
        from proto_rewrite.caffe.fc_to_conv import apply_caffe_plan, plan_caffe_rewrite
        from proto_rewrite.caffe.model import load_caffe, save_caffe
        START()
        model = load_caffe(PROTOTXT, MODEL)
        report = save_caffe(apply_caffe_plan(model, plan_caffe_rewrite(model)), OUT + ".prototxt", OUT)
    """,
    "in-memory": """
        from proto_rewrite.caffe.fc_to_conv import apply_caffe_plan, plan_caffe_rewrite
        from proto_rewrite.caffe.model import load_caffe, save_caffe
        from proto_rewrite.filecopy import read_into_memory
        START()
        with read_into_memory():
            model = load_caffe(PROTOTXT, MODEL)
        report = save_caffe(apply_caffe_plan(model, plan_caffe_rewrite(model)), OUT + ".prototxt", OUT,
                            streaming=False)
    """,
}

CP_STEP = """
import json, resource, subprocess, sys, time
MODEL, OUT, DATA = sys.argv[1], sys.argv[2], sys.argv[4]
start = time.perf_counter()
subprocess.run(["cp", MODEL, OUT], check=True)
if DATA:
    subprocess.run(["cp", DATA, OUT + ".data"], check=True)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"seconds": elapsed, "peak_rss_mb": peak, "report": "cp"}))
"""

# Peak RSS is read from VmHWM: unlike ru_maxrss, it is not inherited from the parent process.
RUNNER = """
import json, sys, time
MODEL, OUT, PROTOTXT = sys.argv[1:4]
_start = [None]
def START():
    _start[0] = time.perf_counter()
{body}
elapsed = time.perf_counter() - _start[0]
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
print(json.dumps({{"seconds": elapsed, "peak_rss_mb": int(hwm) / 1024,
                  "report": report.describe() if report is not None else ""}}))
"""


def run_step(code: str, args: list[str]) -> dict:
    os.sync()  # every step starts with nothing left to write back (the previous steps wrote GBs)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, check=False)
    total = time.perf_counter() - start
    if result.returncode:
        return {"error": (result.stderr.strip().splitlines() or ["failed"])[-1]}
    data = json.loads(result.stdout.strip().splitlines()[-1])
    data["process"] = total
    return data


def best(runs: list[dict]) -> dict:
    good = [r for r in runs if "error" not in r]
    if not good:
        return runs[0]
    return {
        "seconds": min(r["seconds"] for r in good),
        "process": min(r["process"] for r in good),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in good),
        "report": good[0]["report"],
    }


def outputs_of(out: Path) -> list[Path]:
    return [p for p in (out, Path(f"{out}.data"), Path(f"{out}.prototxt")) if p.exists()]


def remove(paths) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def measure(fmt: str, size: float, folder: Path, repeat: int, variant: str) -> list[tuple[str, dict]]:
    width = fc_width(size)
    if fmt == "onnx":
        model = folder / f"vgg16_{variant}_x{size:g}.onnx"
        files = build_onnx(model, width, variant)
        prototxt = Path("")
        steps = dict(ONNX_STEPS)
        if len(files) > 1 or size != 1:
            steps.pop("onnx.load + onnx.save")
        suffix = ".onnx"
    else:
        prototxt, model = build_caffe(folder, width)
        files = [model]
        steps = dict(CAFFE_STEPS)
        suffix = ".caffemodel"
    data = str(files[1]) if len(files) > 1 else ""
    size_mb = sum(p.stat().st_size for p in files) / 2**20
    print(
        f"\n{fmt} x{size:g}: {', '.join(p.name for p in files)} ({size_mb:.0f} MiB, fc6/fc7 width {width})", flush=True
    )
    results = []
    kept = {}
    for name, body in [("cp", None), *steps.items()]:
        # Same file name in each step's own folder: an ONNX data file's name is inside the model.
        step_folder = folder / name.split()[0].replace(".", "_")
        step_folder.mkdir(exist_ok=True)
        out = step_folder / f"converted{suffix}"
        runs = []
        for _ in range(repeat):
            remove(outputs_of(out))
            if body is None:
                runs.append(run_step(CP_STEP, [str(model), str(out), str(prototxt), data]))
            else:
                code = RUNNER.format(body=textwrap.indent(textwrap.dedent(body).strip(), ""))
                runs.append(run_step(code, [str(model), str(out), str(prototxt)]))
        results.append((name, best(runs)))
        if name in ("streaming", "in-memory"):
            kept[name] = out
        else:
            remove(outputs_of(out))
    if len(kept) == 2:
        pairs = zip(outputs_of(kept["streaming"]), outputs_of(kept["in-memory"]))
        same = all(filecmp.cmp(a, b, shallow=False) for a, b in pairs)
        results.append(("identical", {"same": same}))
        for out in kept.values():
            remove(outputs_of(out))
    remove(files + ([prototxt] if fmt == "caffe" else []))
    return results


def print_table(title: str, results: list[tuple[str, dict]]) -> None:
    cp = dict(results)["cp"]
    print(f"{'step':24} {'convert s':>9} {'x cp':>6} {'process s':>9} {'x cp':>6} {'peak RSS MiB':>12}")
    for name, result in results:
        if name == "identical":
            print(f"streaming and in-memory outputs byte-identical: {result['same']}")
            continue
        if "error" in result:
            print(f"{name:24} failed: {result['error']}")
            continue
        print(
            f"{name:24} {result['seconds']:9.2f} {result['seconds'] / cp['seconds']:6.2f} "
            f"{result['process']:9.2f} {result['process'] / cp['process']:6.2f} {result['peak_rss_mb']:12.0f}"
        )
    for name, result in results:
        if result.get("report") and result["report"] != "cp":
            print(f"  {name}: {result['report']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", default="onnx,caffe")
    parser.add_argument("--sizes", default="1,4", help="model sizes, as multiples of VGG16")
    parser.add_argument("--repeat", type=int, default=2, help="runs per step: best time, highest peak RSS")
    parser.add_argument(
        "--variant",
        choices=("gemm", "matmul"),
        default="gemm",
        help="ONNX: Gemm transB=1 (reshape only) or MatMul (every FC weight transposed)",
    )
    parser.add_argument("--folder", type=Path, help="where to generate the models (default: a temp folder)")
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}; free disk: {shutil.disk_usage(args.folder or tempfile.gettempdir()).free / 2**30:.0f} GiB"
    )
    with tempfile.TemporaryDirectory(dir=args.folder) as tmp:
        for fmt in args.formats.split(","):
            for size in (float(s) for s in args.sizes.split(",")):
                results = measure(fmt, size, Path(tmp), args.repeat, args.variant)
                print_table(f"{fmt} x{size:g}", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
