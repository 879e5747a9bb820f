"""The cost of fcn mode's proof, against a plain onnxruntime session creation + one run.

fcn mode makes the input size symbolic only after showing that the converted model runs at a
second size (``proto_rewrite.onnx.fcn_proof``): shape inference at that size, then one
onnxruntime session and one run on random data. This script builds VGG16 (random weights; the
FC width is an option so the weights stay under the proof's run limit, 256 MiB, or pass it),
plans the fcn conversion, and times, in the same process, interleaved:

* baseline: ``onnxruntime.InferenceSession(converted bytes)`` + one run at the planning size
  (default session options, as a user would);
* proof: ``prove(converted, program)`` as ``convert`` runs it.

It prints the best of ``--repeat`` runs of each and their ratio (target: <= 1.2x), and which
proof ran. Usage: ``python benchmarks/fcn_proof.py [--fc-width 1024] [--repeat 3]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))


def build(fc_width: int):
    import onnx
    from onnx import helper, numpy_helper
    from vgg16_graph import vgg16_nodes

    from proto_rewrite.onnx.model import OnnxModel

    rng = np.random.default_rng(0)
    initializers = []

    def weight(name, shape):
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        values = (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(fan_in)).astype(np.float32)
        initializers.append(numpy_helper.from_array(values, name))
        return name

    nodes, output = vgg16_nodes(weight, fc_width)
    graph = helper.make_graph(
        nodes,
        "vgg16",
        [helper.make_tensor_value_info("data", onnx.TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    proto.ir_version = 7
    return OnnxModel.from_proto(proto)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fc-width", type=int, default=1024, help="width of fc6 and fc7 (VGG16: 4096)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import onnxruntime as ort

    from proto_rewrite.onnx.build import build_model
    from proto_rewrite.onnx.fcn_proof import prove
    from proto_rewrite.onnx.planner import OnnxRewriteOptions
    from proto_rewrite.onnx.rewrite import plan_program

    model = build(args.fc_width)
    program = plan_program(model, OnnxRewriteOptions(mode="fcn"))
    converted = build_model(model, program)
    weight_mib = sum(t.nbytes for t in converted.initializers.values()) / 2**20
    data = np.random.default_rng(1).standard_normal((1, 3, 224, 224), dtype=np.float32)

    def baseline():
        session = ort.InferenceSession(converted.to_bytes(), providers=["CPUExecutionProvider"])
        session.run(None, {"data": data})

    def proof():
        return prove(converted, program)

    times = {"baseline": [], "proof": []}
    report = None
    for _ in range(args.repeat):
        for name, step in (("baseline", baseline), ("proof", proof)):
            start = time.perf_counter()
            result = step()
            times[name].append(time.perf_counter() - start)
            report = result if name == "proof" else report
    best = {name: min(values) for name, values in times.items()}
    sizes = "; ".join(", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in s.items()) for s in report.checked_sizes)
    print(f"VGG16, fc width {args.fc_width}, {weight_mib:.0f} MiB of weights")
    print(f"  baseline (session + one run at 224 x 224): {best['baseline']:.3f} s")
    print(f"  fcn proof ({report.proof}, at {sizes}): {best['proof']:.3f} s")
    print(
        f"  ratio proof / baseline: {best['proof'] / best['baseline']:.2f}x (target <= 1.2x); "
        f"fully convolutional: {report.fully_convolutional}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
