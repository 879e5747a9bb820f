"""The dense check: one pass of the fcn model on a large image against the original model on
every crop the score map covers.

Cell (i, j) of the score map is the original model on the crop whose top-left corner is
(i * stride, j * stride), crop size = the original's input size. The output stride is read from
the converted model's graph (:mod:`proto_rewrite.onnx.geometry`) and confirmed by onnxruntime: the
score map has the predicted size at the crop size and at the image size. An image whose crops do
not tile it along the stride is refused, with the sizes that would align. Cells are exactly equal only for nets
without padding: with padding, a crop sees zeros at its border where the dense pass sees the
neighbouring pixels. The report says which case it is.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from proto_rewrite.errors import UsageError
from proto_rewrite.rewrite_plan import AxisGeometry
from proto_rewrite.validation.compare_models import ValidateOptions, _serialized_with_outputs
from proto_rewrite.validation.inputs import random_inputs, session_inputs
from proto_rewrite.validation.runtime import make_session, run_session
from proto_rewrite.validation.stats import Comparison, compare


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
    receptive_field: tuple[int, int] = (0, 0)  # input pixels one cell sees, from B's graph
    confirmed_at: list[tuple[int, int]] = field(default_factory=list)  # sizes where onnxruntime gave the predicted maps

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
            "stride_source": "graph, confirmed by onnxruntime",
            "stride_confirmed_at": [list(s) for s in self.confirmed_at],
            "receptive_field": list(self.receptive_field),
            "cells": self.cells,
            "padded": self.padded,
            "exact_expected": not self.padded,
            "dense_seconds": self.dense_seconds,
            "crops_seconds": self.crops_seconds,
            "outputs": [
                {
                    "name": o.name,
                    "score_map_shape": list(o.score_map_shape),
                    "pooled": o.pooled,
                    "top1_agreement": o.top1_agreement,
                    **o.comparison.to_dict(),
                }
                for o in self.outputs
            ],
        }

    def render_text(self) -> str:
        lines = [
            f"dense check: {self.model_b} on one {'x'.join(map(str, self.image_shape))} image against "
            f"{self.model_a} on {self.cells} crops of {'x'.join(map(str, self.crop_shape))}, stride "
            f"{self.stride[0]}x{self.stride[1]} (read from {self.model_b}'s graph, its map sizes confirmed by "
            f"onnxruntime at {' and '.join('x'.join(map(str, s)) for s in self.confirmed_at)}; receptive field "
            f"{'x'.join(map(str, self.receptive_field))})",
            f"time: one dense pass {self.dense_seconds * 1000:.1f} ms, the crops {self.crops_seconds * 1000:.1f} ms "
            f"({self.crops_seconds / max(self.dense_seconds, 1e-9):.1f}x)",
        ]
        for output in self.outputs:
            c = output.comparison
            if output.pooled:
                lines.append(
                    f"{output.name}: pooled output {'x'.join(map(str, output.score_map_shape))} against the mean "
                    f"of the {self.cells} crops' outputs: max abs difference {c.absolute.max:.3g}, same top-1 "
                    f"class: {'yes' if output.top1_agreement == 1 else 'no'} (reported, not judged: the mean of the crops' "
                    "outputs equals the pooled output only for padding-free nets, and for probabilities only "
                    "with --pool-scores probs-avg)"
                )
                continue
            lines.append(
                f"{output.name}: score map {'x'.join(map(str, output.score_map_shape))}, max abs error "
                f"{c.absolute.max:.3g} (mean {c.absolute.mean:.3g}, {c.scale_error:.3g} of max|A|), top-1 "
                f"agreement {output.top1_agreement:.1%}, {c.mismatches}/{c.elements} beyond atol {c.atol:g} "
                f"rtol {c.rtol:g}"
            )
        if self.padded:
            lines.append(
                "note: the original net pads its inputs, so a crop sees zeros at its border where the dense "
                "pass sees neighbouring pixels: cells are close, not exact, and the check reports without failing"
            )
        else:
            lines.append("the original net has no padding: every cell should equal its crop exactly (up to rounding)")
        return "\n".join(lines) + "\n"


def dense_check(
    model_a, model_b, size: tuple[int, int], options: ValidateOptions | None = None, *, names=("A", "B")
) -> DenseResult:
    options = options or ValidateOptions()
    session_a = make_session(model_a.SerializeToString(), options.runtime, what=f"model {names[0]}")
    specs = session_inputs(session_a)
    if len(specs) != 1:
        raise UsageError(
            "the dense check needs a model with one image input",
            hint=f"{names[0]} has inputs {[s.name for s in specs]}",
        )
    spec = specs[0]
    crop_shape = tuple(options.input_shapes.get(spec.name, spec.shape))
    if len(crop_shape) != 4 or not all(isinstance(d, int) and d > 0 for d in crop_shape[1:]):
        raise UsageError(
            f"the dense check needs {names[0]}'s input size: '{spec.name}' is {crop_shape}",
            hint="give it in input_shapes, as (1, C, H, W)",
            options=("input_shapes",),
        )
    crop_shape = (1, *crop_shape[1:])
    height, width = size
    if height < crop_shape[2] or width < crop_shape[3]:
        raise UsageError(
            f"the dense check's image, {height}x{width}, is smaller than the crop size {crop_shape[2]}x{crop_shape[3]}"
        )
    outputs = [o.name for o in session_a.get_outputs()]
    grid = score_map_grid(model_b, spec.name, outputs, names[1])
    crop_grid = _check_alignment(grid, (crop_shape[2], crop_shape[3]), (height, width), names)
    rows, cols = crop_grid[0].cells(height), crop_grid[1].cells(width)
    stride = (grid.height.stride, grid.width.stride)

    session_b = make_session(
        _serialized_with_outputs(model_b, grid.pooled_maps()), options.runtime, what=f"model {names[1]}"
    )
    image_shape = (1, crop_shape[1], height, width)
    image = random_inputs([spec], {spec.name: image_shape}, options.seed, options.input_ranges, path=names[0])[
        spec.name
    ]
    fetch_b = outputs + grid.pooled_maps()
    first_crop = np.ascontiguousarray(image[:, :, : crop_shape[2], : crop_shape[3]])
    # Warm both sessions up (time the runs, not the first-run setup); B's run at the crop size is the
    # first of the two that confirm the stride read from the graph.
    run_session(session_a, outputs, {spec.name: first_crop}, what=f"model {names[0]}")
    at_crop = dict(zip(fetch_b, run_session(session_b, fetch_b, {spec.name: first_crop}, what=f"model {names[1]}")))
    grid.confirm(at_crop, (crop_shape[2], crop_shape[3]), names[1])
    start = time.perf_counter()
    dense = dict(zip(fetch_b, run_session(session_b, fetch_b, {spec.name: image}, what=f"model {names[1]}")))
    dense_seconds = time.perf_counter() - start
    grid.confirm(dense, (height, width), names[1])
    maps = {}
    for name in outputs:
        value = dense[name]
        if value.ndim == 4:
            maps[name] = value
        elif value.ndim == 2 and name in grid.pools:
            maps[name] = value.reshape(value.shape[0], value.shape[1], 1, 1)

    start = time.perf_counter()
    crops = {name: np.empty((*value.shape[:2], rows, cols), value.dtype) for name, value in maps.items()}
    for row in range(rows):
        for col in range(cols):
            top, left = row * stride[0], col * stride[1]
            crop = np.ascontiguousarray(image[:, :, top : top + crop_shape[2], left : left + crop_shape[3]])
            for name, value in zip(outputs, session_a.run(outputs, {spec.name: crop})):
                if name in crops:
                    crops[name][:, :, row, col] = value.reshape(value.shape[0], value.shape[1])
    crops_seconds = time.perf_counter() - start

    result = DenseResult(
        names[0],
        names[1],
        image_shape,
        crop_shape,
        stride,
        rows * cols,
        _has_padding(model_a),
        dense_seconds,
        crops_seconds,
    )
    result.receptive_field = (grid.height.receptive_field, grid.width.receptive_field)
    result.confirmed_at = [(crop_shape[2], crop_shape[3]), (height, width)]
    for name, value in maps.items():
        atol, rtol = options.tolerances.for_output(name, value.dtype)
        reference = crops[name]
        pooled = name in grid.pools
        if pooled:
            reference = reference.mean(axis=(2, 3), keepdims=True)
        agreement = float(np.mean(value.argmax(axis=1) == reference.argmax(axis=1)))
        shape = tuple(dense[name].shape)
        comparison = compare(reference, value, atol, rtol, options.tolerances.scale_for_output(name, value.dtype))
        result.outputs.append(DenseOutput(name, shape, comparison, agreement, pooled))
    return result


POOLS = frozenset({"GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"})


@dataclass
class ScoreMapGrid:
    """The crop grid of B's score maps, read from its graph (:mod:`proto_rewrite.onnx.geometry`):
    the same for every output. ``maps``: output -> the 4-D tensor whose cells are crops (the output
    itself, or for a pooled output the map its global pool reads)."""

    height: AxisGeometry
    width: AxisGeometry
    maps: dict[str, str]
    pools: dict[str, str]  # pooled output -> its map

    def pooled_maps(self) -> list[str]:
        return sorted(set(self.pools.values()))

    def confirm(self, values: dict, size: tuple[int, int], model: str) -> None:
        """The map sizes onnxruntime gave at ``size`` must be the ones the graph predicts."""
        expected = (self.height.cells(size[0]), self.width.cells(size[1]))
        for tensor in self.maps.values():
            got = tuple(values[tensor].shape[2:])
            if got != expected:
                raise UsageError(
                    f"{model}'s score map '{tensor}' is {'x'.join(map(str, got))} on a {size[0]}x{size[1]} image where its "
                    f"graph predicts {'x'.join(map(str, expected))} (stride {self.height.stride}x{self.width.stride}): "
                    "the crop grid cannot be trusted, so the dense check does not run",
                    layer=tensor,
                    hint="check the model's output stride with proto-rewrite convert --dry-run",
                )


def score_map_grid(model, input_name: str, outputs: list[str], model_name: str) -> ScoreMapGrid:
    """Each output's score map and its geometry, one grid for all; a UsageError naming the node
    when the stride cannot be read from the graph."""
    from proto_rewrite.onnx.geometry import output_geometry, tensor_geometry

    producers = {name: node for node in model.graph.node for name in node.output}
    constants = {t.name for t in model.graph.initializer}
    found, maps, pools = {}, {}, {}
    for output in outputs:
        geometry = output_geometry(model, input_name, output)
        tensor = output
        if not geometry and "global pool" in geometry.why:
            tensor = _pooled_map(producers, constants, output)
            if tensor is not None:
                geometry = tensor_geometry(model, input_name, tensor)
                pools[output] = tensor
        if not geometry:
            raise UsageError(
                f"the output stride of {model_name}'s output '{output}' cannot be read from its graph: "
                f"{geometry.node}: {geometry.why}",
                layer=geometry.node,
                hint="the dense check is for fcn conversions: proto-rewrite convert --mode fcn",
            )
        found[output], maps[output] = geometry, tensor
    if len(set(found.values())) != 1:
        raise UsageError(
            f"{model_name}'s outputs have different output strides or offsets: "
            + "; ".join(
                f"{o}: stride {g[0].stride}x{g[1].stride}, min size {g[0].min_size}x{g[1].min_size}"
                for o, g in found.items()
            ),
            hint="the dense check compares every output on one crop grid",
        )
    height, width = next(iter(found.values()))
    return ScoreMapGrid(height, width, maps, pools)


def _pooled_map(producers: dict, constants: set, output: str) -> str | None:
    """The 4-D tensor the global pool that makes ``output`` reads (through Flatten, Reshape, Softmax...)."""
    node, steps = producers.get(output), 0
    while node is not None and steps < 1000:
        steps += 1
        data = [name for name in node.input if name and name not in constants]
        if node.op_type in POOLS:
            return data[0] if data else None
        node = producers.get(data[0]) if data else None
    return None


def _check_alignment(grid: ScoreMapGrid, crop: tuple[int, int], size: tuple[int, int], names) -> tuple:
    """The crop grid (a crop-sized window every stride) per axis; a UsageError with the sizes that
    would align when ``size`` does not."""
    crop_grid = []
    for axis, geometry, crop_size, image_size in (
        ("height", grid.height, crop[0], size[0]),
        ("width", grid.width, crop[1], size[1]),
    ):
        if geometry.cells(crop_size) != 1:
            raise UsageError(
                f"{names[1]}'s score map has {geometry.cells(crop_size)} cells along the {axis} at "
                f"{names[0]}'s input size {crop_size} (min size {geometry.min_size}, stride "
                f"{geometry.stride}): it is not a map of {names[0]}'s crops",
                hint="compare the fcn conversion with the model it was converted from",
            )
        window = AxisGeometry(geometry.stride, crop_size, geometry.receptive_field)
        if (image_size - crop_size) % geometry.stride:
            aligned = window.aligned_sizes(image_size)
            below = image_size - (image_size - crop_size) % geometry.stride
            raise UsageError(
                f"dense check: a {image_size}-pixel {axis} does not align with the crop grid ({crop_size}-pixel "
                f"crops every {geometry.stride} pixels, the output stride read from {names[1]}'s graph)",
                hint=f"use a {axis} of {crop_size} + k x {geometry.stride}: e.g. {below} or "
                f"{', '.join(map(str, aligned))}",
            )
        if window.cells(image_size) != geometry.cells(image_size):
            raise UsageError(
                f"dense check: at a {image_size}-pixel {axis} {names[1]}'s map has {geometry.cells(image_size)} "
                f"cells but {window.cells(image_size)} crops fit",
                hint="report this model: it is unexpected",
            )
        crop_grid.append(window)
    return tuple(crop_grid)


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
