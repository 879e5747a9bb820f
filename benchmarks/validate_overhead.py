"""validate's own overhead: its wall time against the bare cost of two onnxruntime sessions and
one run of each on the same inputs, measured in the same process.

    python benchmarks/validate_overhead.py [--repeat 5] [--width 1024]

The pair is a VGG-style ONNX model (conv blocks, then FC layers of --width units) and the same
model again; the target is validate <= 1.2x the bare cost.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from proto_rewrite.validation.compare_models import ValidateOptions, validate_models  # noqa: E402
from proto_rewrite.validation.runtime import RuntimeOptions, make_session  # noqa: E402


def vgg_style(width: int) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    nodes, inits, current, channels = [], [], "x", 3
    for block, out in enumerate((32, 64, 128, 128)):
        weight = (rng.standard_normal((out, channels, 3, 3)) * np.sqrt(2 / (channels * 9))).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"w{block}"))
        nodes += [
            helper.make_node("Conv", [current, f"w{block}"], [f"c{block}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{block}"], [f"r{block}"]),
            helper.make_node("MaxPool", [f"r{block}"], [f"p{block}"], kernel_shape=[2, 2], strides=[2, 2]),
        ]
        current, channels = f"p{block}", out
    nodes.append(helper.make_node("Flatten", [current], ["flat"]))
    features = channels * 7 * 7
    current = "flat"
    for index, units in enumerate((width, width, 1000)):
        weight = (rng.standard_normal((units, features)) * np.sqrt(1 / features)).astype(np.float32)
        inits.append(numpy_helper.from_array(weight, f"fc{index}"))
        nodes.append(helper.make_node("Gemm", [current, f"fc{index}"], [f"g{index}"], transB=1))
        current, features = f"g{index}", units
    nodes.append(helper.make_node("Softmax", [current], ["prob"], axis=1))
    graph = helper.make_graph(
        nodes,
        "vgg_style",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, [1, 1000])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def bare(model_a, model_b) -> None:
    runtime = RuntimeOptions()
    feed = {"x": np.random.RandomState(0).standard_normal((1, 3, 112, 112)).astype(np.float32)}
    for model in (model_a, model_b):
        make_session(model.SerializeToString(), runtime).run(None, feed)


def best_interleaved(functions, repeat: int) -> list[float]:
    """Best time of each function, the runs interleaved so that drifting load hits all alike."""
    times = [[] for _ in functions]
    for _ in range(repeat):
        for index, function in enumerate(functions):
            start = time.perf_counter()
            function()
            times[index].append(time.perf_counter() - start)
    return [min(t) for t in times]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--width", type=int, default=1024)
    args = parser.parse_args()
    model = vgg_style(args.width)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    size = model.ByteSize() / 2**20
    base, checked = best_interleaved(
        [lambda: bare(model, copy), lambda: validate_models(model, copy, ValidateOptions())], args.repeat
    )
    print(f"model: VGG-style, {size:.0f} MiB; best of {args.repeat}")
    print(f"bare: two sessions + one run each   {base:.3f} s")
    print(f"validate (same pair, same inputs)   {checked:.3f} s   {checked / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
