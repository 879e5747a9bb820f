"""Regenerate the sample ONNX models, byte for byte.

    python samples/make_onnx_samples.py            # rewrite samples/onnx/*.onnx
    python samples/make_onnx_samples.py --out DIR  # write them under DIR instead

The graphs are written out node by node with onnx.helper, in the shapes PyTorch exports (Flatten
+ Gemm with transB=1; the ``x.view(x.size(0), -1)`` chain Shape -> Gather -> Unsqueeze -> Concat
-> Reshape). The weights are random (He-style normal, scaled by each layer's fan-in) and
deterministic: numpy's legacy RandomState, whose stream never changes between numpy versions,
seeded per sample. IR version, opset and producer are fixed, so the bytes do not depend on the
installed onnx.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
IR_VERSION = 8
OPSET = 13

# name -> (seed, input shape, layers). Layers: ("conv", out, kernel, pad), ("pool",), ("flatten",),
# ("view",) (the dynamic reshape chain), ("fc", out), ("relu",), ("dropout",), ("softmax",)
SAMPLES = {
    "lenet": (
        1,
        (1, 1, 28, 28),
        [
            ("conv", 20, 5, 0),
            ("pool",),
            ("conv", 50, 5, 0),
            ("pool",),
            ("flatten",),
            ("fc", 500),
            ("relu",),
            ("fc", 10),
            ("softmax",),
        ],
    ),
    "vgg_mini": (
        2,
        (1, 3, 64, 64),
        [
            ("conv", 16, 3, 1),
            ("relu",),
            ("pool",),
            ("conv", 32, 3, 1),
            ("relu",),
            ("pool",),
            ("conv", 64, 3, 1),
            ("relu",),
            ("conv", 64, 3, 1),
            ("relu",),
            ("pool",),
            ("conv", 64, 3, 1),
            ("relu",),
            ("conv", 64, 3, 1),
            ("relu",),
            ("pool",),
            ("view",),
            ("fc", 256),
            ("relu",),
            ("dropout",),
            ("fc", 256),
            ("relu",),
            ("dropout",),
            ("fc", 10),
        ],
    ),
}


def build_model(name: str):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    seed, input_shape, layers = SAMPLES[name]
    rng = np.random.RandomState(seed)
    nodes, initializers = [], []
    x = "data"
    channels, height, width = input_shape[1:]
    counts: dict[str, int] = {}

    def fresh(kind: str) -> str:
        counts[kind] = counts.get(kind, 0) + 1
        return f"{kind}{counts[kind]}"

    def weights(layer: str, shape: tuple[int, ...]) -> list[str]:
        fan_in = math.prod(shape[1:])
        weight = (rng.standard_normal(shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)
        bias = (rng.standard_normal(shape[0]) * 0.01).astype(np.float32)
        initializers.append(numpy_helper.from_array(weight, f"{layer}.weight"))
        initializers.append(numpy_helper.from_array(bias, f"{layer}.bias"))
        return [f"{layer}.weight", f"{layer}.bias"]

    flat_size = None
    for spec in layers:
        kind = spec[0]
        layer = fresh(kind)
        out = layer
        if kind == "conv":
            _, out_channels, kernel, pad = spec
            nodes.append(
                helper.make_node(
                    "Conv",
                    [x] + weights(layer, (out_channels, channels, kernel, kernel)),
                    [out],
                    name=layer,
                    kernel_shape=[kernel, kernel],
                    pads=[pad] * 4,
                )
            )
            channels, height, width = out_channels, height + 2 * pad - kernel + 1, width + 2 * pad - kernel + 1
        elif kind == "pool":
            nodes.append(helper.make_node("MaxPool", [x], [out], name=layer, kernel_shape=[2, 2], strides=[2, 2]))
            height, width = height // 2, width // 2
        elif kind == "flatten":
            nodes.append(helper.make_node("Flatten", [x], [out], name=layer, axis=1))
            flat_size = channels * height * width
        elif kind == "view":
            initializers.append(numpy_helper.from_array(np.array(0, np.int64), f"{layer}.index"))
            initializers.append(numpy_helper.from_array(np.array([0], np.int64), f"{layer}.axes"))
            initializers.append(numpy_helper.from_array(np.array([-1], np.int64), f"{layer}.rest"))
            nodes += [
                helper.make_node("Shape", [x], [f"{layer}.shape"], name=f"{layer}.Shape"),
                helper.make_node(
                    "Gather", [f"{layer}.shape", f"{layer}.index"], [f"{layer}.batch"], name=f"{layer}.Gather", axis=0
                ),
                helper.make_node(
                    "Unsqueeze", [f"{layer}.batch", f"{layer}.axes"], [f"{layer}.batch1"], name=f"{layer}.Unsqueeze"
                ),
                helper.make_node(
                    "Concat", [f"{layer}.batch1", f"{layer}.rest"], [f"{layer}.target"], name=f"{layer}.Concat", axis=0
                ),
                helper.make_node("Reshape", [x, f"{layer}.target"], [out], name=f"{layer}.Reshape"),
            ]
            flat_size = channels * height * width
        elif kind == "fc":
            outputs = spec[1]
            nodes.append(
                helper.make_node(
                    "Gemm", [x] + weights(layer, (outputs, flat_size)), [out], name=layer, alpha=1.0, beta=1.0, transB=1
                )
            )
            flat_size = outputs
        elif kind == "relu":
            nodes.append(helper.make_node("Relu", [x], [out], name=layer))
        elif kind == "dropout":
            nodes.append(helper.make_node("Dropout", [x], [out], name=layer))
        elif kind == "softmax":
            nodes.append(helper.make_node("Softmax", [x], [out], name=layer, axis=1))
        x = out

    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, list(input_shape))],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [input_shape[0], flat_size])],
        initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="proto-rewrite samples",
        producer_version="1",
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def build_samples(out_dir: Path) -> list[Path]:
    written = []
    for name in SAMPLES:
        target = Path(out_dir) / "onnx" / f"{name}.onnx"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(build_model(name).SerializeToString())
        written.append(target)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write into (default: samples/)")
    args = parser.parse_args()
    for path in build_samples(args.out):
        print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
