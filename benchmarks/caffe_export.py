"""Caffe -> ONNX export of a VGG16-size model (~528 MiB of random weights), against loading the
caffemodel and saving the same arrays as ONNX initializers.

    python benchmarks/caffe_export.py [--keep DIR] [--scale 1.0] [--repeat 3]

Each step runs in a fresh Python process (its peak RSS, read from VmHWM, is its own); the best
time of ``--repeat`` runs is shown. Ratios are to the baseline measured in the same run:

* baseline: ``load_caffe`` (memory-mapped caffemodel), then every weight array as an initializer
  with onnx's own API (``numpy_helper.from_array``, ``make_graph``, ``make_model``,
  ``onnx.save_model``), i.e. the same bytes written as ONNX, without any graph;
* lean baseline: the same, with the initializers filled in place in one ModelProto and
  serialized once (the least a ModelProto-based writer can copy);
* export (CLI): what ``proto-rewrite export`` does: load, ``build_onnx``, ``OnnxExport.write``
  (the weights streamed from the caffemodel's memory map to the file);
* export_onnx + write_onnx: the API returning a complete ModelProto, then writing it.

Target: export within 1.2x of the baseline in time and peak RSS. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from caffemodel_io import build_model, run_step  # noqa: E402 - beside this script

STEPS = {
    "baseline: load + onnx save": """
        import onnx
        from onnx import helper, numpy_helper
        from proto_rewrite.caffe.model import load_caffe
        model = load_caffe(PROTOTXT, MODEL)
        tensors = [numpy_helper.from_array(array, f"{name}/{index}")
                   for name, arrays in model.weights.items() for index, array in enumerate(arrays)]
        graph = helper.make_graph([], "weights", [], [], tensors)
        onnx.save_model(helper.make_model(graph), OUT)
    """,
    "lean baseline: load + save": """
        import onnx
        from onnx import helper
        from proto_rewrite.caffe.model import load_caffe
        model = load_caffe(PROTOTXT, MODEL)
        proto = onnx.ModelProto()
        for name, arrays in model.weights.items():
            for index, array in enumerate(arrays):
                tensor = proto.graph.initializer.add()
                tensor.name, tensor.data_type = f"{name}/{index}", onnx.TensorProto.FLOAT
                tensor.dims.extend(array.shape)
                tensor.raw_data = array.tobytes()
        data = proto.SerializeToString()
        with open(OUT, "wb") as handle:
            handle.write(data)
    """,
    "export (CLI: build_onnx + write)": """
        from proto_rewrite.caffe.model import load_caffe
        from proto_rewrite.caffe.onnx_export import build_onnx
        model = load_caffe(PROTOTXT, MODEL)
        build_onnx(model).write(OUT)
    """,
    "export_onnx + write_onnx": """
        from proto_rewrite.caffe.model import load_caffe
        from proto_rewrite.caffe.onnx_export import export_onnx, write_onnx
        model = load_caffe(PROTOTXT, MODEL)
        write_onnx(export_onnx(model), OUT)
    """,
}

CHECK = """
import numpy as np, onnx
from proto_rewrite.caffe.model import load_caffe
model = load_caffe(PROTOTXT, MODEL)
loaded = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(OUT).graph.initializer}
assert all(np.array_equal(loaded[f"{name}/{role}"], array) for name, arrays in model.weights.items()
           for role, array in zip(("weight", "bias"), arrays)), "exported weights differ"
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="build the files in this folder and keep them")
    parser.add_argument("--scale", type=float, default=1.0, help="scale of the FC widths (1.0 = VGG16)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step; the best time is shown")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        prototxt, model = build_model(folder, args.scale)
        print(f"model: {model} ({model.stat().st_size / 2**20:.0f} MiB)")
        out = folder / "out.onnx"
        results = {name: run_step(body, model, prototxt, out, args.repeat) for name, body in STEPS.items()}
        base = results["baseline: load + onnx save"]
        lean = results["lean baseline: load + save"]
        print(
            f"{'step':34} {'seconds':>8} {'x base':>7} {'x lean':>7} {'peak RSS MiB':>13} {'x base':>7} {'x lean':>7}"
        )
        for name, result in results.items():
            print(
                f"{name:34} {result['seconds']:8.2f} {result['seconds'] / base['seconds']:7.2f} "
                f"{result['seconds'] / lean['seconds']:7.2f} {result['peak_rss_mb']:13.0f} "
                f"{result['peak_rss_mb'] / base['peak_rss_mb']:7.2f} "
                f"{result['peak_rss_mb'] / lean['peak_rss_mb']:7.2f}"
            )
        run_step(STEPS["export (CLI: build_onnx + write)"], model, prototxt, out, 1)
        run_step(CHECK, model, prototxt, out, 1)
        print(f"exported weights equal to the caffemodel's: yes ({out.stat().st_size / 2**20:.0f} MiB written)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
