"""The dense check: one pass of the fcn model on a large image against the original model on
every crop the score map covers.

Cell (i, j) of the score map is the original model on the crop whose top-left corner is
(i * stride, j * stride), crop size = the original's input size. The output stride is measured
from the graph: the score map's size at two input sizes. Cells are exactly equal only for nets
without padding: with padding, a crop sees zeros at its border where the dense pass sees the
neighbouring pixels. The report says which case it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from proto_rewrite.errors import UsageError
from proto_rewrite.validate.compare_models import ValidateOptions
from proto_rewrite.validate.inputs import random_inputs, session_inputs
from proto_rewrite.validate.runtime import external_folder, make_session, run_session
from proto_rewrite.validate.stats import Comparison, compare


@dataclass
class DenseOutput:
    name: str
    score_map_shape: tuple[int, ...]
    comparison: Comparison  # every cell against its crop (pooled: the output against the crops' mean)
    top1_agreement: float  # fraction of cells whose arg-max class equals the crop's
    pooled: bool = False  # B pools its score map (convert --pool-scores): compared with the crops' mean


@dataclass
class DenseResult:
    model_a: str
    model_b: str
    image_shape: tuple[int, ...]
    crop_shape: tuple[int, ...]
    stride: tuple[int, int]
    cells: int
    padded: bool  # the original net pads somewhere: cells are not expected to be exact
    dense_seconds: float
    crops_seconds: float
    outputs: list[DenseOutput] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Judged only where equality is expected: no padding, and per-cell score maps."""
        return self.padded or all(o.comparison.passed for o in self.outputs if not o.pooled)

    def to_dict(self) -> dict:
        return {
            "report_version": 1,
            "kind": "dense",
            "passed": self.passed,
            "model_a": self.model_a,
            "model_b": self.model_b,
            "image_shape": list(self.image_shape),
            "crop_shape": list(self.crop_shape),
            "stride": list(self.stride),
            "cells": self.cells,
            "padded": self.padded,
            "exact_expected": not self.padded,
            "dense_seconds": self.dense_seconds,
            "crops_seconds": self.crops_seconds,
            "outputs": [{"name": o.name, "score_map_shape": list(o.score_map_shape), "pooled": o.pooled,
                         "top1_agreement": o.top1_agreement, **o.comparison.to_dict()} for o in self.outputs],
        }

    def render_text(self) -> str:
        lines = [f"dense check: {self.model_b} on one {'x'.join(map(str, self.image_shape))} image against "
                 f"{self.model_a} on {self.cells} crops of {'x'.join(map(str, self.crop_shape))}, stride "
                 f"{self.stride[0]}x{self.stride[1]}",
                 f"time: one dense pass {self.dense_seconds * 1000:.1f} ms, the crops {self.crops_seconds * 1000:.1f} ms "
                 f"({self.crops_seconds / max(self.dense_seconds, 1e-9):.1f}x)"]
        for output in self.outputs:
            c = output.comparison
            if output.pooled:
                lines.append(f"{output.name}: pooled output {'x'.join(map(str, output.score_map_shape))} against the mean "
                             f"of the {self.cells} crops' outputs: max abs difference {c.absolute.max:.3g}, same top-1 "
                             f"class: {'yes' if output.top1_agreement == 1 else 'no'} (reported, not judged: the mean of the crops' "
                             "outputs equals the pooled output only for padding-free nets, and for probabilities only "
                             "with --pool-scores probs-avg)")
                continue
            lines.append(f"{output.name}: score map {'x'.join(map(str, output.score_map_shape))}, max abs error "
                         f"{c.absolute.max:.3g} (mean {c.absolute.mean:.3g}), top-1 agreement "
                         f"{output.top1_agreement:.1%}, {c.mismatches}/{c.elements} beyond atol {c.atol:g} rtol {c.rtol:g}")
        if self.padded:
            lines.append("note: the original net pads its inputs, so a crop sees zeros at its border where the dense "
                         "pass sees neighbouring pixels: cells are close, not exact, and the check reports without failing")
        else:
            lines.append("the original net has no padding: every cell should equal its crop exactly (up to rounding)")
        return "\n".join(lines) + "\n"


def dense_check(model_a, model_b, size: tuple[int, int], options: ValidateOptions | None = None,
                *, names=("A", "B")) -> DenseResult:
    options = options or ValidateOptions()
    session_a = make_session(model_a.SerializeToString(), options.runtime, what=f"model {names[0]}",
                             external_folder=external_folder(model_a))
    session_b = make_session(model_b.SerializeToString(), options.runtime, what=f"model {names[1]}",
                             external_folder=external_folder(model_b))
    specs = session_inputs(session_a)
    if len(specs) != 1:
        raise UsageError("the dense check needs a model with one image input",
                         hint=f"{names[0]} has inputs {[s.name for s in specs]}")
    spec = specs[0]
    crop_shape = tuple(options.input_shapes.get(spec.name, spec.shape))
    if len(crop_shape) != 4 or not all(isinstance(d, int) and d > 0 for d in crop_shape[1:]):
        raise UsageError(f"the dense check needs {names[0]}'s input size: '{spec.name}' is {crop_shape}",
                         hint=f"give it with --input-shape {spec.name}:1,C,H,W")
    crop_shape = (1, *crop_shape[1:])
    height, width = size
    if height < crop_shape[2] or width < crop_shape[3]:
        raise UsageError(f"--dense {height} {width} is smaller than the crop size {crop_shape[2]}x{crop_shape[3]}")
    image_shape = (1, crop_shape[1], height, width)
    image = random_inputs([spec], {spec.name: image_shape}, options.seed, options.input_ranges,
                          path=names[0])[spec.name]
    outputs = [o.name for o in session_a.get_outputs()]

    first_crop = np.ascontiguousarray(image[:, :, :crop_shape[2], :crop_shape[3]])
    # Warm both sessions up: time the runs, not the first-run setup.
    run_session(session_a, outputs, {spec.name: first_crop}, what=f"model {names[0]}")
    run_session(session_b, outputs, {spec.name: image}, what=f"model {names[1]}")
    start = time.perf_counter()
    dense = dict(zip(outputs, session_b.run(outputs, {spec.name: image})))
    dense_seconds = time.perf_counter() - start
    maps = {name: value for name, value in dense.items() if value.ndim == 4}
    if maps:
        rows, cols = next(iter(maps.values())).shape[2:]
        stride = (_stride(height, crop_shape[2], rows), _stride(width, crop_shape[3], cols))
    else:  # a pooled fcn model (--pool-scores): the crop grid comes from the original's stride
        step = graph_stride(model_a)
        if step is None:
            raise UsageError(f"{names[1]} gives no score map (no 4-D output) and {names[0]}'s output stride is unknown",
                             hint="the dense check is for fcn conversions: proto-rewrite convert --mode fcn")
        rows, cols = _cells(height, crop_shape[2], step), _cells(width, crop_shape[3], step)
        stride = (step, step)
        maps = {name: value.reshape(value.shape[0], value.shape[1], 1, 1) for name, value in dense.items()
                if value.ndim == 2}

    start = time.perf_counter()
    crops = {name: np.empty((*value.shape[:2], rows, cols), value.dtype) for name, value in maps.items()}
    for row in range(rows):
        for col in range(cols):
            top, left = row * stride[0], col * stride[1]
            crop = np.ascontiguousarray(image[:, :, top:top + crop_shape[2], left:left + crop_shape[3]])
            for name, value in zip(outputs, session_a.run(outputs, {spec.name: crop})):
                if name in crops:
                    crops[name][:, :, row, col] = value.reshape(value.shape[0], value.shape[1])
    crops_seconds = time.perf_counter() - start

    result = DenseResult(names[0], names[1], image_shape, crop_shape, stride, rows * cols, _has_padding(model_a),
                         dense_seconds, crops_seconds)
    for name, value in maps.items():
        atol, rtol = options.tolerances.for_output(name, value.dtype)
        reference = crops[name]
        pooled = value.shape[2:] == (1, 1) and (rows, cols) != (1, 1)
        if pooled:
            reference = reference.mean(axis=(2, 3), keepdims=True)
        agreement = float(np.mean(value.argmax(axis=1) == reference.argmax(axis=1)))
        shape = tuple(dense[name].shape)
        comparison = compare(reference, value, atol, rtol, options.tolerances.scale_for_output(name, value.dtype))
        result.outputs.append(DenseOutput(name, shape, comparison, agreement, pooled))
    return result


def graph_stride(model) -> int | None:
    """The output stride of the feature map the first FC reads: the product of the strides of
    the Conv and pooling nodes on the path from the input (following each node's first input)."""
    producers = {name: node for node in model.graph.node for name in node.output}
    first_fc = next((node for node in model.graph.node if node.op_type in ("Gemm", "MatMul")), None)
    if first_fc is None:
        return None
    stride, node = 1, producers.get(first_fc.input[0])
    while node is not None:
        if node.op_type in ("Conv", "MaxPool", "AveragePool"):
            strides = [list(a.ints) for a in node.attribute if a.name == "strides"]
            if strides and len(set(strides[0])) > 1:
                return None  # different strides along H and W
            stride *= strides[0][0] if strides else 1
        node = producers.get(node.input[0]) if node.input else None
    return stride


def _cells(size: int, crop: int, stride: int) -> int:
    cells, rest = divmod(size - crop, stride)
    if rest:
        raise UsageError(f"a {size}-pixel side is not {crop} + k x {stride} (the net's output stride)",
                         hint=f"choose e.g. {crop + stride * max(cells, 1)}")
    return cells + 1


def _stride(size: int, crop: int, cells: int) -> int:
    if cells == 1:
        if size != crop:
            raise UsageError(f"the score map has one cell at size {size}: the image must be larger than the "
                             f"net's output stride beyond the crop size {crop}")
        return crop
    step, rest = divmod(size - crop, cells - 1)
    if rest:
        raise UsageError(f"a {size}-pixel side gives {cells} cells for {crop}-pixel crops: not a whole stride",
                         hint=f"choose a size of {crop} + k x stride (e.g. {crop + step * (cells - 1)})")
    return step


def _has_padding(model) -> bool:
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name == "pads" and any(attribute.ints):
                return True
            if attribute.name == "auto_pad" and attribute.s not in (b"", b"NOTSET", b"VALID"):
                return True
        if node.op_type == "Pad":
            return True
    return False
