"""Convert a VGG16-size ONNX model (~528 MB, random weights) and compare with onnx.load + onnx.save.

    python benchmarks/onnx_convert.py [--keep DIR] [--repeat 3] [--variant gemm|matmul]

The model is VGG16 at 224 x 224 as PyTorch exports it: 13 Conv + ReLU, 5 MaxPool, Flatten, then
fc6 (4096 x 25088), fc7, fc8 as Gemm with transB=1 (``--variant matmul``: MatMul + Add with the
weights stored (K, M), as TensorFlow exports them, so every FC weight is transposed).

Each step runs in a fresh Python process so that its peak RSS (VmHWM, read from
/proc/self/status) is its own. Printed: wall time and peak RSS of each step and the ratio to the
baseline, onnx.load + onnx.save of the same file, measured in the same run. Nothing is asserted:
this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from vgg16_graph import vgg16_nodes  # noqa: E402


def build_vgg16(path: Path, variant: str) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, initializers = [], []

    def weight(name, shape):
        initializers.append(numpy_helper.from_array(rng.standard_normal(shape, dtype=np.float32) * 0.01, name))
        return name

    more, x = vgg16_nodes(weight, 4096, variant)
    nodes += more
    graph = helper.make_graph(
        nodes,
        "vgg16",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 3, 224, 224])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["N", 1000])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="benchmark")
    model.ir_version = 8
    onnx.save(model, path)


STEPS = {
    "onnx.load + onnx.save (baseline)": """
        import onnx
        onnx.save(onnx.load(MODEL), OUT)
    """,
    "load_onnx + save_onnx (round trip)": """
        from proto_rewrite.onnx.model import load_onnx, save_onnx
        save_onnx(load_onnx(MODEL), OUT)
    """,
    "convert fcn (load, plan, apply, save)": """
        from proto_rewrite.onnx.model import load_onnx, save_onnx
        from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite
        model = load_onnx(MODEL)
        save_onnx(apply_onnx_plan(model, plan_onnx_rewrite(model, mode="fcn")), OUT)
    """,
    "convert exact (load, plan, apply, save)": """
        from proto_rewrite.onnx.model import load_onnx, save_onnx
        from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite
        model = load_onnx(MODEL)
        save_onnx(apply_onnx_plan(model, plan_onnx_rewrite(model, mode="exact")), OUT)
    """,
}

# Peak RSS is read from VmHWM: unlike ru_maxrss, it is not inherited from the parent process.
RUNNER = """
import json, sys, time
MODEL, OUT = sys.argv[1:3]
start = time.perf_counter()
{body}
elapsed = time.perf_counter() - start
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
print(json.dumps({{"seconds": elapsed, "peak_rss_mb": int(hwm) / 1024}}))
"""


def run_step(body: str, model: Path, out: Path, repeat: int) -> dict:
    """Best time and highest peak RSS over ``repeat`` fresh processes."""
    code = RUNNER.format(body=textwrap.dedent(body).strip())
    runs = []
    for _ in range(repeat):
        result = subprocess.run(
            [sys.executable, "-c", code, str(model), str(out)], capture_output=True, text=True, check=True, cwd=ROOT
        )
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return {"seconds": min(r["seconds"] for r in runs), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="build the files in this folder and keep them")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step; the best time is shown")
    parser.add_argument("--variant", choices=("gemm", "matmul"), default="gemm")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        model = folder / f"vgg16_{args.variant}.onnx"
        build_vgg16(model, args.variant)
        print(f"model: {model} ({model.stat().st_size / 2**20:.0f} MiB, {args.variant})")
        results = {name: run_step(body, model, folder / "out.onnx", args.repeat) for name, body in STEPS.items()}
        base = results["onnx.load + onnx.save (baseline)"]
        print(f"{'step':40} {'seconds':>8} {'x base':>7} {'peak RSS MiB':>13} {'x base':>7}")
        for name, result in results.items():
            print(
                f"{name:40} {result['seconds']:8.2f} {result['seconds'] / base['seconds']:7.2f} "
                f"{result['peak_rss_mb']:13.0f} {result['peak_rss_mb'] / base['peak_rss_mb']:7.2f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
