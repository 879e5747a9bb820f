"""Load, save and convert a VGG16-size caffemodel (~553 MB, random weights), against a plain copy
and against a load + save round trip.

    python benchmarks/caffemodel_io.py [--keep DIR] [--scale 1.0]

Each step runs in a fresh Python process so that its peak RSS is its own. Printed: wall time
and peak RSS of each step, and the ratio to the baseline (a plain file copy, in the same run).
Nothing is asserted: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from vgg16_graph import VGG16_BLOCKS  # noqa: E402  (the same layer plan as the ONNX benchmarks)


def vgg16_prototxt(width_scale: float = 1.0) -> str:
    """VGG16 (deploy, V2 spelling), 1 x 3 x 224 x 224. ``width_scale`` shrinks the FC layers."""
    lines = [
        'name: "VGG_ILSVRC_16_layers"',
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 224 dim: 224 } } }',
    ]
    bottom = "data"
    for block, (repeats, channels) in enumerate(VGG16_BLOCKS, start=1):
        for index in range(1, repeats + 1):
            name = f"conv{block}_{index}"
            lines.append(
                f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}" '
                f"convolution_param {{ num_output: {channels} pad: 1 kernel_size: 3 }} }}"
            )
            lines.append(f'layer {{ name: "relu{block}_{index}" type: "ReLU" bottom: "{name}" top: "{name}" }}')
            bottom = name
        lines.append(
            f'layer {{ name: "pool{block}" type: "Pooling" bottom: "{bottom}" top: "pool{block}" '
            "pooling_param { pool: MAX kernel_size: 2 stride: 2 } }"
        )
        bottom = f"pool{block}"
    fc = int(4096 * width_scale)
    for name, outputs in (("fc6", fc), ("fc7", fc), ("fc8", 1000)):
        lines.append(
            f'layer {{ name: "{name}" type: "InnerProduct" bottom: "{bottom}" top: "{name}" '
            f"inner_product_param {{ num_output: {outputs} }} }}"
        )
        bottom = name
    lines.append(f'layer {{ name: "prob" type: "Softmax" bottom: "{bottom}" top: "prob" }}')
    return "\n".join(lines) + "\n"


def vgg16_weight_shapes(width_scale: float = 1.0) -> dict[str, list[tuple[int, ...]]]:
    shapes = {}
    channels_in = 3
    for block, (repeats, channels) in enumerate(VGG16_BLOCKS, start=1):
        for index in range(1, repeats + 1):
            shapes[f"conv{block}_{index}"] = [(channels, channels_in, 3, 3), (channels,)]
            channels_in = channels
    fc = int(4096 * width_scale)
    shapes["fc6"] = [(fc, 512 * 7 * 7), (fc,)]
    shapes["fc7"] = [(fc, fc), (fc,)]
    shapes["fc8"] = [(1000, fc), (1000,)]
    return shapes


STEPS = {
    "copy (baseline)": """
        import shutil
        shutil.copyfile(MODEL, OUT)
    """,
    "protobuf parse (reference)": """
        from proto_rewrite.caffe.schema import bundled_schema

        schema = bundled_schema()
        with open(MODEL, "rb") as handle:
            net = schema.NetParameter.FromString(handle.read())
    """,
    "load (lazy: mmap + parse)": """
        from proto_rewrite.caffe.model import load_caffe
        model = load_caffe(PROTOTXT, MODEL)
    """,
    "load + read every weight": """
        from proto_rewrite.caffe.model import load_caffe
        model = load_caffe(PROTOTXT, MODEL)
        total = sum(float(a.sum(dtype="float64")) for arrays in model.weights.values() for a in arrays)
    """,
    "load + save": """
        from proto_rewrite.caffe.model import load_caffe, save_caffe
        model = load_caffe(PROTOTXT, MODEL)
        save_caffe(model, OUT + ".prototxt", OUT)
    """,
    "convert (fcn)": """
        from proto_rewrite.caffe.fc_to_conv import apply_caffe_plan, plan_caffe_rewrite
        from proto_rewrite.caffe.model import load_caffe, save_caffe
        model = load_caffe(PROTOTXT, MODEL)
        save_caffe(apply_caffe_plan(model, plan_caffe_rewrite(model)), OUT + ".prototxt", OUT)
    """,
}

# Peak RSS is read from VmHWM: unlike ru_maxrss, it is not inherited from the parent process.
RUNNER = """
import json, sys, time
MODEL, PROTOTXT, OUT = sys.argv[1:4]
start = time.perf_counter()
{body}
elapsed = time.perf_counter() - start
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
print(json.dumps({{"seconds": elapsed, "peak_rss_mb": int(hwm) / 1024}}))
"""


def run_step(body: str, model: Path, prototxt: Path, out: Path, repeat: int) -> dict:
    """Best time and highest peak RSS over ``repeat`` fresh processes."""
    code = RUNNER.format(body=textwrap.dedent(body).strip())
    runs = []
    for _ in range(repeat):
        result = subprocess.run(
            [sys.executable, "-c", code, str(model), str(prototxt), str(out)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        runs.append(json.loads(result.stdout.strip().splitlines()[-1]))
    return {"seconds": min(r["seconds"] for r in runs), "peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}


def build_model(folder: Path, width_scale: float) -> tuple[Path, Path]:
    import numpy as np
    from google.protobuf import text_format

    sys.path.insert(0, str(ROOT))
    from proto_rewrite.caffe.schema import bundled_schema

    schema = bundled_schema()
    from proto_rewrite.caffe.caffemodel import write_caffemodel

    prototxt = folder / "vgg16.prototxt"
    prototxt.write_text(vgg16_prototxt(width_scale))
    net = text_format.Parse(prototxt.read_text(), schema.NetParameter())
    rng = np.random.default_rng(0)
    weights = {
        name: [rng.standard_normal(shape, dtype=np.float32) for shape in shapes]
        for name, shapes in vgg16_weight_shapes(width_scale).items()
    }
    model = folder / "vgg16.caffemodel"
    write_caffemodel(model, net, weights)
    return prototxt, model


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
        size_mb = model.stat().st_size / 2**20
        print(f"model: {model} ({size_mb:.0f} MiB)")
        results = {
            name: run_step(body, model, prototxt, folder / "out.caffemodel", args.repeat)
            for name, body in STEPS.items()
        }
        base, round_trip = results["copy (baseline)"], results["load + save"]
        print(f"{'step':28} {'seconds':>8} {'x copy':>7} {'x load+save':>12} {'peak RSS MiB':>13} {'x load+save':>12}")
        for name, result in results.items():
            print(
                f"{name:28} {result['seconds']:8.2f} {result['seconds'] / base['seconds']:7.2f} "
                f"{result['seconds'] / round_trip['seconds']:12.2f} {result['peak_rss_mb']:13.0f} "
                f"{result['peak_rss_mb'] / round_trip['peak_rss_mb']:12.2f}"
            )
        run_step(STEPS["load + save"], model, prototxt, folder / "out.caffemodel", 1)
        saved = folder / "out.caffemodel"
        print(f"load + save output identical to input: {filecmp.cmp(saved, model, shallow=False)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
