"""Random weights for a Caffe net: every learnable blob, with the shape Caffe expects.

``random_weights(net, shapes, seed)`` gives layer name -> float32 arrays, shaped by
``blob_shapes.expected_blobs`` from the inferred input shapes of each layer. The values are meant
for tests (running a net in two runtimes and comparing): deterministic, and such that the
activations stay in a sensible range through deep nets, for inputs of unit scale (N(0, 1)).

* Convolution / Deconvolution / InnerProduct weights: He scaling, variance ``2 / fan_in``.
  fan_in is the number of inputs one output sees: ``C/group * kernel`` for a convolution, ``K``
  for an InnerProduct, ``C_in/group * kernel / stride`` for a deconvolution. Biases: std 0.01.
* BatchNorm: the stored variance is the *estimated* mean square of the layer's input times a
  factor uniform in [0.5, 1.5], the mean small (std 0.1 of the input's scale), the scale factor
  ``[1.0]``. So a BatchNorm normalises roughly as a trained one does, and residual nets (ResNet:
  each block adds its branch to its input) do not grow by 2x per block. The estimate follows
  the mean square of the values from the input (1.0) layer by layer: x2 per He layer, /2 per
  ReLU, summed by Eltwise, and so on (``_mean_square``).
* Scale: gamma uniform in [0.8, 1.2], beta std 0.01. Bias std 0.1. PReLU slopes 0.25. SSD's
  Normalize scale 20 (as SSD's conv4_3_norm).
* Logits: a Convolution / InnerProduct whose output reaches a Softmax (or SoftmaxWithLoss)
  through layers without weights (Flatten, Permute, Concat, Reshape, Pooling...) gets its weights
  scaled so that its outputs are estimated at rms ``LOGIT_RMS`` (1.0). A softmax of random
  features then stays far from saturation: no probability of exactly 1.0, no ties.

All values are drawn uniformly (with the stated standard deviation), from numpy's legacy
``RandomState(seed)``, layer by layer in net order. That stream is frozen by numpy, and what is
done with it is plain IEEE arithmetic (float32 multiply and add, no libm, no reductions), so the
same seed gives the same bytes with every numpy version.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from proto_rewrite.caffe.blob_shapes import expected_blobs, format_shape
from proto_rewrite.caffe.shapes import NetShapes, infer_shapes
from proto_rewrite.errors import NetStructureError

BIAS_STD = 0.01
LOGIT_RMS = 1.0
HE_GAIN = 2.0
BATCH_NORM_GAIN = 1.0986  # E[1 / U(0.5, 1.5)] = ln 3: a BatchNorm's stored variance is that of its input
SOFTMAX_TYPES = frozenset({"Softmax", "SoftmaxWithLoss"})
HE_TYPES = frozenset({"Convolution", "Deconvolution", "InnerProduct"})
_CHUNK = 1 << 22


def random_weights(
    net, shapes: NetShapes, seed: int = 0, *, path=None, lines: dict[str, int] | None = None
) -> dict[str, list[np.ndarray]]:
    """Random float32 blobs for every layer of ``net`` with learnable blobs. Layers whose blobs
    this tool does not know (``unknown_blob_layers``) get none. Every blob's shape is checked
    against the tensor limit and their sum against the random-weight limit
    (:mod:`proto_rewrite.limits`) before anything is drawn."""
    return dict(iter_random_weights(net, shapes, seed, path=path, lines=lines))


def lazy_random_weights(
    net, shapes: NetShapes, seed: int = 0, *, path=None, lines: dict[str, int] | None = None
) -> LazyRandomWeights:
    """The same weights as :func:`random_weights`, drawn when each layer's are asked for (in net
    order: one layer in memory at a time), after the same limit checks."""
    return LazyRandomWeights(net, shapes, seed, path, lines or {})


def random_weight_shapes(
    net, shapes: NetShapes, *, path=None, lines: dict[str, int] | None = None
) -> dict[str, list[tuple[int, ...]]]:
    """Layer name -> the shapes of its random blobs, checked against the limits (nothing drawn)."""
    from proto_rewrite.limits import check_random_total, check_tensor_size

    lines = lines or {}
    found: dict[str, list[tuple[int, ...]]] = {}
    total = 0
    for layer in net.layer:
        expected = expected_blobs(layer, shapes.bottoms.get(layer.name))
        if not expected:
            continue
        _check_known(layer, expected, path, lines)
        found[layer.name] = [tuple(int(d) for d in shape) for shape in expected]
        for index, shape in enumerate(found[layer.name]):
            check_tensor_size(
                shape,
                4,
                f"random blob {index} of layer '{layer.name}'",
                path=path,
                line=lines.get(layer.name),
                layer=layer.name,
            )
            total += math.prod(shape) * 4
    if found:
        largest = max(found, key=lambda name: sum(math.prod(shape) for shape in found[name]))
        count = f"{len(found)} layer{'s' if len(found) != 1 else ''}"
        check_random_total(total, f"{count} (the largest: '{largest}')", path=path)
    return found


def iter_random_weights(net, shapes: NetShapes, seed: int = 0, *, path=None, lines: dict[str, int] | None = None):
    """(layer name, arrays) in net order, drawn one layer at a time, after the limit checks."""
    lines = lines or {}
    random_weight_shapes(net, shapes, path=path, lines=lines)
    rng = np.random.RandomState(seed)
    logits = logit_layers(net)
    moments: dict[str, Moments] = {}  # blob -> estimated mean and mean square of its values
    for layer in net.layer:
        inputs = [moments.get(name, Moments()) for name in layer.bottom]
        gain = HE_GAIN
        expected = expected_blobs(layer, shapes.bottoms.get(layer.name))
        if expected:
            if layer.name in logits and layer.type in HE_TYPES:
                gain = LOGIT_RMS**2 / power_of_two(inputs[0].square)
            maker = _MAKERS.get(layer.type, _small)
            arrays = maker(rng, layer, [tuple(s) for s in expected], inputs, gain)
        estimate = _moments(layer, inputs, shapes.bottoms.get(layer.name), gain)
        moments.update((top, estimate) for top in layer.top)
        if expected:
            yield layer.name, arrays


class LazyRandomWeights(Mapping):
    """Layer name -> random arrays, drawn on access. Reading the layers in net order draws each
    once; going back restarts the (deterministic) stream, so every read gives the same values."""

    lazy = True

    def __init__(self, net, shapes: NetShapes, seed: int, path, lines: dict[str, int]) -> None:
        self._args = (net, shapes, seed)
        self._where = {"path": path, "lines": lines}
        self.shapes = random_weight_shapes(net, shapes, **self._where)
        self._stream = None
        self._position = -1
        self._names = list(self.shapes)

    def __getitem__(self, name: str) -> list[np.ndarray]:
        if name not in self.shapes:
            raise KeyError(name)
        index = self._names.index(name)
        if self._stream is None or index <= self._position:
            self._stream = iter_random_weights(*self._args, **self._where)
            self._position = -1
        while True:
            found, arrays = next(self._stream)
            self._position += 1
            if found == name:
                return arrays

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def parameter_count(self) -> int:
        return sum(math.prod(shape) for shapes in self.shapes.values() for shape in shapes)


def _check_known(layer, expected, path, lines) -> None:
    for index, shape in enumerate(expected):
        if shape is None or any(d is None for d in shape):
            raise NetStructureError(
                f"cannot make weights for this {layer.type} layer: the shape of its blob {index} "
                f"{format_shape(shape)} depends on an input shape that is not known",
                path=path,
                line=lines.get(layer.name),
                layer=layer.name,
                hint="give the shapes of the net's inputs in input_shapes",
                options=("input_shapes",),
            )


def unknown_blob_layers(net) -> list[str]:
    """Layers whose learnable blobs this tool does not know (Python, unknown types, LSTM...)."""
    return [layer.name for layer in net.layer if expected_blobs(layer) is None]


def logit_layers(net) -> set[str]:
    """Layers with weights whose output reaches a softmax through layers without weights."""
    writers: dict[str, list[int]] = {}
    for index, layer in enumerate(net.layer):
        for top in layer.top:
            writers.setdefault(top, []).append(index)
    found: set[str] = set()
    seen: set[int] = set()
    for index, layer in enumerate(net.layer):
        if layer.type in SOFTMAX_TYPES:
            pending = [(index, blob) for blob in layer.bottom[:1]]
            while pending:
                before, blob = pending.pop()
                earlier = [i for i in writers.get(blob, []) if i < before]
                if not earlier or earlier[-1] in seen:
                    continue
                writer = earlier[-1]  # the latest layer to write the blob (in-place layers rewrite it)
                seen.add(writer)
                source = net.layer[writer]
                if expected_blobs(source):
                    found.add(source.name)
                elif source.type not in SOFTMAX_TYPES:
                    pending.extend((writer, name) for name in source.bottom)
    return found


# ---------------------------------------------------------------------------------------------
# Drawing


def _uniform(rng, shape, low: float, high: float) -> np.ndarray:
    """float32 values uniform in [low, high): 24-bit integers from the legacy stream (one 32-bit
    draw each, so drawing in chunks gives the same values as one draw), mapped exactly."""
    out = np.empty(shape, dtype=np.float32)
    flat = out.reshape(-1)
    step = np.float32((high - low) / (1 << 24))
    offset = np.float32(low + (high - low) / (1 << 25))  # the middle of each step
    for start in range(0, flat.size, _CHUNK):
        part = flat[start : start + _CHUNK]
        part[:] = rng.randint(0, 1 << 24, size=part.size, dtype=np.uint32)
        part *= step
        part += offset
    return out


def _with_std(rng, shape, std: float, mean: float = 0.0) -> np.ndarray:
    half_width = math.sqrt(3.0) * std  # uniform on [-a, a] has std a / sqrt(3)
    return _uniform(rng, shape, mean - half_width, mean + half_width)


# ---------------------------------------------------------------------------------------------
# One maker per layer type: (rng, layer, blob shapes, input mean squares, gain) -> arrays


def _he_layer(rng, layer, shapes, fan_in: float, gain: float):
    weight = _with_std(rng, shapes[0], math.sqrt(gain / max(fan_in, 1.0)))
    return [weight, *(_with_std(rng, s, BIAS_STD) for s in shapes[1:])]


def _convolution(rng, layer, shapes, inputs, gain):
    return _he_layer(rng, layer, shapes, math.prod(shapes[0][1:]), gain)


def _deconvolution(rng, layer, shapes, inputs, gain):
    weight, param = shapes[0], layer.convolution_param
    fan_in = weight[0] / max(param.group, 1) * math.prod(weight[2:]) / _stride(param, len(weight) - 2)
    return _he_layer(rng, layer, shapes, fan_in, gain)


def _stride(param, axes: int) -> int:
    """Product of a deconvolution's strides over its spatial axes."""
    if param.HasField("stride_h") or param.HasField("stride_w"):
        return max(param.stride_h, 1) * max(param.stride_w, 1)
    strides = list(param.stride) or [1]
    return max(math.prod(strides) if len(strides) > 1 else strides[0] ** axes, 1)


def _inner_product(rng, layer, shapes, inputs, gain):
    weight = shapes[0]
    return _he_layer(rng, layer, shapes, weight[0] if layer.inner_product_param.transpose else weight[1], gain)


def _batch_norm(rng, layer, shapes, inputs, gain):
    mean_shape, var_shape, factor_shape = shapes
    scale = power_of_two(inputs[0].square)
    return [
        _with_std(rng, mean_shape, 0.1 * math.sqrt(scale)),
        _uniform(rng, var_shape, 0.5 * scale, 1.5 * scale),
        np.ones(factor_shape, dtype=np.float32),
    ]


def _scale(rng, layer, shapes, inputs, gain):
    if len(layer.bottom) > 1:  # the factor is an input; only a bias blob
        return [_with_std(rng, s, BIAS_STD) for s in shapes]
    return [_uniform(rng, shapes[0], 0.8, 1.2), *(_with_std(rng, s, BIAS_STD) for s in shapes[1:])]


def _prelu(rng, layer, shapes, inputs, gain):
    return [np.full(shapes[0], 0.25, dtype=np.float32)]


def _normalize(rng, layer, shapes, inputs, gain):
    return [np.full(shapes[0], 20.0, dtype=np.float32)]


def _embed(rng, layer, shapes, inputs, gain):
    return [_with_std(rng, shapes[0], 1.0), *(_with_std(rng, s, BIAS_STD) for s in shapes[1:])]


def _small(rng, layer, shapes, inputs, gain):
    """Bias, Parameter and any other learned blob: small values."""
    return [_with_std(rng, s, 0.1) for s in shapes]


_MAKERS = {
    "Convolution": _convolution,
    "Deconvolution": _deconvolution,
    "InnerProduct": _inner_product,
    "BatchNorm": _batch_norm,
    "Scale": _scale,
    "PReLU": _prelu,
    "Normalize": _normalize,
    "Embed": _embed,
}


# ---------------------------------------------------------------------------------------------
# How the values' mean and mean square change through a layer: an estimate for N(0, 1) inputs,
# modelling each blob's values as one normal distribution. It only steers the scales above.


@dataclass(frozen=True)
class Moments:
    mean: float = 0.0
    square: float = 1.0  # mean square

    @property
    def var(self) -> float:
        return max(self.square - self.mean**2, 1e-12)


def _moments(layer, inputs: list[Moments], bottom_shapes, gain: float) -> Moments:
    kind = layer.type
    first = inputs[0] if inputs else Moments()
    if kind in HE_TYPES:  # zero-mean weights: the mean cancels over the outputs
        return Moments(0.0, first.square * gain)
    if kind == "BatchNorm":
        return Moments(0.0, first.square / power_of_two(first.square) * BATCH_NORM_GAIN)
    if kind in ("ReLU", "PReLU", "ELU", "ReLU6"):
        slope = layer.relu_param.negative_slope if kind == "ReLU" else (0.25 if kind == "PReLU" else 0.0)
        return _leaky_relu(first, slope)
    if kind == "Eltwise":
        return _eltwise(layer, inputs)
    if kind == "Scale" and len(inputs) > 1:
        return Moments(first.mean * inputs[1].mean, first.square * inputs[1].square)
    if kind == "Pooling" and layer.pooling_param.pool == 0:  # MAX
        return Moments(first.mean + math.sqrt(first.var), first.square + first.var)
    if kind == "Concat" and bottom_shapes and all(s is not None for s in bottom_shapes):
        sizes = [math.prod(s) for s in bottom_shapes]
        total = max(sum(sizes), 1)
        return Moments(
            sum(m.mean * n for m, n in zip(inputs, sizes)) / total,
            sum(m.square * n for m, n in zip(inputs, sizes)) / total,
        )
    if kind == "Normalize" and bottom_shapes and bottom_shapes[0] is not None:
        shape = bottom_shapes[0]
        count = math.prod(shape[1:]) if layer.norm_param.across_spatial else (shape[1] if len(shape) > 1 else 1)
        return Moments(0.0, 400.0 / max(count, 1))  # unit L2 norm over `count` values, times 20
    if kind in ("Sigmoid", "TanH", "Softmax"):
        return Moments(0.0, min(first.square, 1.0))
    return first


def _leaky_relu(x: Moments, slope: float) -> Moments:
    """Mean and mean square of max(x, 0) + slope * min(x, 0) for x normal."""
    sigma = math.sqrt(x.var)
    a = x.mean / sigma
    cdf = 0.5 * (1.0 + math.erf(a / math.sqrt(2.0)))
    pdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    pos_mean = x.mean * cdf + sigma * pdf
    pos_square = x.square * cdf + x.mean * sigma * pdf
    neg_mean = pos_mean - x.mean  # E[max(-x, 0)] = E[max(x, 0)] - E[x]
    neg_square = x.square - pos_square
    return Moments(pos_mean - slope * neg_mean, pos_square + slope * slope * neg_square)


def _eltwise(layer, inputs: list[Moments]) -> Moments:
    operation = layer.eltwise_param.operation  # PROD = 0, SUM = 1, MAX = 2
    if operation == 0:
        return Moments(math.prod(m.mean for m in inputs), math.prod(m.square for m in inputs))
    if operation == 2:
        return max(inputs, key=lambda m: m.square)
    coeff = list(layer.eltwise_param.coeff) or [1.0] * len(inputs)
    mean = sum(c * m.mean for c, m in zip(coeff, inputs))
    var = sum(c * c * m.var for c, m in zip(coeff, inputs))  # independent inputs
    return Moments(mean, var + mean * mean)


def power_of_two(value: float) -> float:
    """The power of two nearest to ``value`` (found exactly, with math.frexp), so that the scales
    drawn from an estimate do not depend on the last bits of libm's exp and erf."""
    mantissa, exponent = math.frexp(value)  # value = mantissa * 2**exponent, 0.5 <= mantissa < 1
    return math.ldexp(1.0, exponent if mantissa >= math.sqrt(0.5) else exponent - 1)


MAX_SEED = 2**32 - 1  # numpy's RandomState takes 32-bit seeds


def check_seed(seed: int) -> None:
    """A :class:`UsageError` naming ``seed`` when numpy cannot take it."""
    from proto_rewrite.errors import UsageError

    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed {seed} is out of range", options=("seed",), hint=f"use a seed from 0 to {MAX_SEED}")


@dataclass
class RandomWeightsResult:
    """What :func:`write_random_weights` wrote."""

    path: str
    layers: int  # layers given weights
    parameters: int
    seed: int
    unknown_layers: list[str] = field(default_factory=list)  # layers whose learnable blobs proto-rewrite does not know
    diagnostics: list = field(default_factory=list)  # shape inference's warnings at the shapes used

    def render_text(self) -> str:
        return (
            f"wrote {self.path}: random weights for {self.layers} layers, {self.parameters:,} parameters "
            f"(seed {self.seed})\n"
        )


def write_random_weights(model, output, *, seed: int = 0, input_shapes=None) -> RandomWeightsResult:
    """Write a caffemodel of random weights for ``model`` (a CaffeModel; its own weights are not
    used) at ``input_shapes`` (default: the shapes it was loaded at); deterministic per ``seed``.
    Checked against the limits before any is drawn, then drawn and written one layer at a time.
    The model's own files (prototxt, caffemodel) are never the output."""
    import os

    from proto_rewrite.caffe.caffemodel import write_caffemodel
    from proto_rewrite.caffe.model import refuse_own_files

    check_seed(seed)
    refuse_own_files(model, output, hint="write the weights to a new .caffemodel file")
    where = {"path": model.prototxt_path, "lines": model.layer_lines}
    shapes = infer_shapes(model.net, model.input_shapes if input_shapes is None else input_shapes, **where)
    weights = lazy_random_weights(model.net, shapes, seed=seed, **where)
    write_caffemodel(output, model.net, weights)
    return RandomWeightsResult(
        os.fspath(output),
        len(weights),
        weights.parameter_count(),
        seed,
        unknown_blob_layers(model.net),
        shapes.diagnostics,
    )
