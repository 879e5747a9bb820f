"""Regenerate the sample caffemodels, byte for byte.

    python samples/make_samples.py            # rewrite samples/*/*.caffemodel
    python samples/make_samples.py --out DIR  # write them under DIR instead

The weights are random (He-style normal, scaled by each layer's fan-in, so activations stay in
range) and deterministic: numpy's legacy RandomState, whose stream never changes between numpy
versions, seeded per sample. The blob shapes are listed here explicitly, layer by layer.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

# sample folder -> (seed, {layer name: [weight shape, bias shape]})
SAMPLES = {
    "lenet": (
        1,
        {
            "conv1": [(20, 1, 5, 5), (20,)],
            "conv2": [(50, 20, 5, 5), (50,)],
            "ip1": [(500, 800), (500,)],
            "ip2": [(10, 500), (10,)],
        },
    ),
    "caffenet_mini": (
        2,
        {
            "conv1": [(32, 3, 11, 11), (32,)],
            "conv2": [(64, 16, 5, 5), (64,)],
            "conv3": [(96, 64, 3, 3), (96,)],
            "conv4": [(96, 48, 3, 3), (96,)],
            "conv5": [(64, 48, 3, 3), (64,)],
            "fc6": [(256, 576), (256,)],
            "fc7": [(256, 256), (256,)],
            "fc8": [(10, 256), (10,)],
        },
    ),
}


def random_weights(seed: int, shapes: dict[str, list[tuple[int, ...]]]) -> dict[str, list[np.ndarray]]:
    rng = np.random.RandomState(seed)
    weights = {}
    for name, (weight_shape, bias_shape) in shapes.items():
        fan_in = math.prod(weight_shape[1:])
        weight = (rng.standard_normal(weight_shape) * math.sqrt(2.0 / fan_in)).astype(np.float32)
        bias = (rng.standard_normal(bias_shape) * 0.01).astype(np.float32)
        weights[name] = [weight, bias]
    return weights


def build_samples(out_dir: Path) -> list[Path]:
    from proto_rewrite.caffe.caffemodel import write_caffemodel
    from proto_rewrite.caffe.model import load_caffe

    written = []
    for folder, (seed, shapes) in SAMPLES.items():
        model = load_caffe(HERE / folder / f"{folder}.prototxt", weights=None)
        target = out_dir / folder / f"{folder}.caffemodel"
        target.parent.mkdir(parents=True, exist_ok=True)
        write_caffemodel(target, model.net, random_weights(seed, shapes))
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
