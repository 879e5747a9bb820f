"""fcn mode for Caffe: what the converted net does at other input sizes, shown, never assumed.

``check_fcn(net, input_shapes)`` takes a converted net and the shapes of its inputs at the
planning size and returns a :class:`~proto_rewrite.rewrite_plan.FcnReport`:

1. **Geometry.** One walk over the layers gives every blob's relation to the input size. A
   Convolution or a Pooling maps an axis of length ``n`` to ``(n + c) // s + 1`` (``c`` from its
   kernel, padding and Caffe's rounding: pooling rounds up and drops a last window that would
   start in the padding), so a blob ``(S - m) // t + 1`` long over an input of size ``S`` becomes
   ``(S - m + (1 + c) t) // (s t) + 1`` long: stride ``s t``, smallest input
   ``m - (1 + c) t`` (while ``c <= -1``; a layer padding more than that has no such formula and
   the geometry is unknown from it on). Layers that work cell by cell keep the geometry;
   Eltwise, Concat and Crop need their operands to agree at every size. A Deconvolution (and any
   other layer without a rule) leaves a map whose size is not computed.
2. **Shapes.** Caffe's shapes (:mod:`proto_rewrite.caffe.shapes`) are inferred again at the
   planning size and at larger ones (one and two output strides more, and ``input_size`` when
   given). A layer that fails there, whose learnable blobs would need another shape, that
   flattens or reshapes a map whose size changes, or that reduces the whole map (other than a
   global pooling) is a :class:`~proto_rewrite.rewrite_plan.Blocker`.
3. **Claims.** An output is reported as a :class:`~proto_rewrite.rewrite_plan.ScoreMap` only when the
   geometry's cell counts equal the inferred shapes at every checked size; an output that keeps
   its shape at every size is said to gain nothing; ``fully_convolutional`` is true only when
   every size was inferred, every output shape is known and nothing blocks.

With ``input_size``, a blocker seen at that size is an error (:class:`RewriteCheckError`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from proto_rewrite.caffe.blob_shapes import expected_blobs
from proto_rewrite.caffe.shapes import NetShapes, dims_text, infer_shapes, window_axes
from proto_rewrite.errors import NetStructureError, RewriteCheckError
from proto_rewrite.rewrite_plan import AxisGeometry, Blocker, FcnReport, ScoreMap

PROOF = "caffe-shapes"

# Layers that compute each cell of the map from the same cell of their inputs (element-wise, or
# across the channels at one position): the geometry of the input is the geometry of the output.
CELLWISE = frozenset(
    """AbsVal BatchNorm BNLL Clip Dropout ELU Exp Log Power PReLU ReLU ReLU6 Sigmoid Split Swish TanH
    Threshold ShuffleChannel Bias Scale Eltwise Silence""".split()
)
UNIT = AxisGeometry(stride=1, min_size=1, receptive_field=1)
SIZE = tuple  # (H, W)


@dataclass(frozen=True)
class _Fixed:
    """A blob whose shape does not follow the input size (``why``: since where)."""

    why: str = ""


@dataclass(frozen=True)
class _Map:
    """A blob whose H and W follow the H and W of the net input ``input``; ``axes`` None when
    the relation is not computed (``why`` says from which layer on)."""

    input: str
    axes: tuple[AxisGeometry, AxisGeometry] | None
    why: str = ""


@dataclass
class _Found:
    """A blocker and the checked sizes at which it was seen."""

    blocker: Blocker
    reason: str  # the why without the size
    sizes: set = field(default_factory=set)


def check_fcn(
    net,
    input_shapes: Mapping[str, tuple[int, ...]],
    *,
    input_size: tuple[int, int] | None = None,
    pooled: bool = False,
    path=None,
    lines: Mapping[str, int] | None = None,
) -> FcnReport:
    """What ``net`` (a converted V2 net) does at other input sizes. ``input_shapes``: every
    input blob (top of a layer without bottoms) with a known shape, at the planning size.
    ``pooled``: the score maps were pooled back to (N, K) on purpose (``--pool-scores``).
    With ``input_size`` (H, W), it is one of the checked sizes, and a blocker there raises
    :class:`RewriteCheckError`."""
    lines = lines or {}
    planning = infer_shapes(net, input_shapes, path=path, lines=lines)
    images = {name: tuple(shape) for name, shape in input_shapes.items() if len(shape) == 4}
    if not images:
        return FcnReport(False, note="the net has no (N, C, H, W) input whose size could change")
    geometry = _walk_geometry(net, planning, images, path, lines)
    sizes = _checked_sizes(net, geometry, images, input_size)
    found: dict[str, _Found] = {}
    inferred: dict[SIZE, NetShapes] = {}
    for size in sizes[1:]:
        overrides = {**input_shapes, **{name: _at(shape, size, images, sizes[0]) for name, shape in images.items()}}
        try:
            inferred[size] = infer_shapes(net, overrides, path=path, lines=lines)
        except NetStructureError as err:
            layer = err.location.layer
            _add(found, layer, _type_of(net, layer), err.message, size)
    _find_blockers(net, planning, inferred, geometry, found)
    _geometry_blockers(net, geometry, sizes[0], sizes[1:], found)
    all_shapes = {sizes[0]: planning, **inferred}
    report = _report(net, planning, all_shapes, geometry, images, sizes, found, pooled)
    if input_size is not None:
        target = tuple(input_size)
        for item in found.values():
            if target in item.sizes and target != sizes[0]:
                where = lines.get(item.blocker.name)
                raise RewriteCheckError(
                    f"the converted net cannot run at input_size {input_size[0]} {input_size[1]}: "
                    f"{item.blocker.name} ({item.blocker.op}): {item.reason}",
                    path=path,
                    line=where,
                    layer=item.blocker.name,
                    hint="convert without input_size (the plan then lists what keeps the net at its size), "
                    "or change that layer so that it does not depend on the input size",
                    options=("input_size",),
                )
    if input_size is not None and report.score_maps:
        at = "; ".join(f"{m.output} {'x'.join(map(str, m.size_at(*input_size)))}" for m in report.score_maps)
        report.note = "; ".join(n for n in (f"score maps at --input-size {_hw(input_size)}: {at}", report.note) if n)
    return report


# ---------------------------------------------------------------------------------------------
# Geometry


def _walk_geometry(net, planning: NetShapes, images, path, lines) -> dict[str, _Fixed | _Map]:
    geometry: dict[str, _Fixed | _Map] = {}
    for layer in net.layer:
        if not layer.bottom:
            for top in layer.top:
                geometry[top] = _Map(top, (UNIT, UNIT)) if top in images else _Fixed("not an image input")
            continue
        bottoms = [geometry.get(b, _Fixed()) for b in layer.bottom]
        maps = [g for g in bottoms if isinstance(g, _Map)]
        if not maps:
            tops = [bottoms[0]] * len(layer.top)
        else:
            tops = [_layer_geometry(layer, maps, planning.bottoms.get(layer.name), path, lines)] * len(layer.top)
        for top, value in zip(layer.top, tops):
            geometry[top] = value
    return geometry


def _layer_geometry(layer, maps: list[_Map], bottom_shapes, path, lines) -> _Fixed | _Map:
    first = maps[0]
    kind = layer.type
    after = f"after {layer.name} ({kind})"
    if (
        kind == "Pooling"
        and layer.pooling_param.global_pooling
        or kind == "SPP"
        and layer.spp_param.pyramid_height == 1
    ):
        return _Fixed(f"{layer.name} pools the whole map{_stride_text(first)}")
    if kind in ("Convolution", "Pooling"):
        shape = bottom_shapes[0] if bottom_shapes else None
        windows = None if shape is None else window_axes(layer, shape, path=path, line=lines.get(layer.name))
        if first.axes is None:
            return first
        if windows is None:
            return _Map(first.input, None, after)
        axes = []
        for axis, window in zip(first.axes, windows):
            composed = _compose(axis, window)
            if composed is None:
                return _Map(
                    first.input,
                    None,
                    f"{layer.name} ({kind}) pads more than its window needs: "
                    f"its output size is no (S - m) // stride + 1 of the input's",
                )
            axes.append(composed)
        return _Map(first.input, tuple(axes))
    if kind in ("Softmax", "ArgMax", "Concat", "Slice"):
        return _merge(maps, after) if _along_channels(layer, bottom_shapes) else _Map(first.input, None, after)
    if kind in CELLWISE or kind == "LRN" and layer.lrn_param.norm_region == layer.lrn_param.ACROSS_CHANNELS:
        return _merge(maps, after)
    if kind == "Crop":
        return _crop_geometry(layer, maps, bottom_shapes, after)
    return _Map(first.input, None, first.why if first.axes is None else after)


def _compose(axis: AxisGeometry, window) -> AxisGeometry | None:
    """The output axis of a window over an axis ``(S - m) // t + 1`` long, or None when it has
    no such form (the window's ``c`` >= 0: more padding than the window needs)."""
    if window.ceil:
        c = 2 * window.pad - window.extent + window.stride - 1
    else:
        c = 2 * window.pad - window.extent
    if window.padded:
        c = min(c, window.pad - 1)
    if c >= 0:
        return None
    t = axis.stride
    return AxisGeometry(
        stride=window.stride * t,
        min_size=axis.min_size - (1 + c) * t,
        receptive_field=axis.receptive_field + (window.extent - 1) * t,
    )


def _merge(maps: list[_Map], after: str) -> _Map:
    """Operands joined cell by cell: the same geometry (checked by ``_geometry_blockers``);
    the receptive field is the widest."""
    first = maps[0]
    if any(m.axes is None for m in maps) or any(m.input != first.input for m in maps):
        unknown = next((m for m in maps if m.axes is None), None)
        return _Map(first.input, None, unknown.why if unknown else after)
    if any((a.stride, a.min_size) != (b.stride, b.min_size) for m in maps for a, b in zip(m.axes, first.axes)):
        return _Map(first.input, None, after)
    axes = tuple(
        AxisGeometry(axis.stride, axis.min_size, max(m.axes[i].receptive_field for m in maps))
        for i, axis in enumerate(first.axes)
    )
    return _Map(first.input, axes)


def _crop_geometry(layer, maps, bottom_shapes, after) -> _Map:
    """Crop takes the size of its reference (the second bottom) along the cropped axes."""
    if len(maps) != 2 or bottom_shapes is None or any(s is None or len(s) != 4 for s in bottom_shapes):
        return _Map(maps[0].input, None, after)
    data, like = maps
    if data.axes is None or like.axes is None or data.input != like.input:
        return _Map(data.input, None, data.why or like.why or after)
    start = layer.crop_param.axis + 4 if layer.crop_param.axis < 0 else layer.crop_param.axis
    axes = []
    for index, (mine, theirs) in enumerate(zip(data.axes, like.axes)):
        if index + 2 >= start:
            axes.append(AxisGeometry(theirs.stride, theirs.min_size, mine.receptive_field))
        else:
            axes.append(mine)
    return _Map(data.input, tuple(axes))


def _along_channels(layer, bottom_shapes) -> bool:
    """Softmax, ArgMax, Concat, Slice working along axis 1 of a 4-D blob."""
    if not bottom_shapes or any(s is None or len(s) != 4 for s in bottom_shapes):
        return False
    if layer.type == "Softmax":
        axis = layer.softmax_param.axis
    elif layer.type == "ArgMax":
        if not layer.argmax_param.HasField("axis"):
            return False
        axis = layer.argmax_param.axis
    elif layer.type == "Concat":
        param = layer.concat_param
        axis = param.concat_dim if param.HasField("concat_dim") and not param.HasField("axis") else param.axis
    else:
        param = layer.slice_param
        axis = param.slice_dim if param.HasField("slice_dim") and not param.HasField("axis") else param.axis
    return axis in (1, -3)


def _stride_text(value: _Map) -> str:
    if value.axes is None:
        return ""
    return f" (a map of stride {value.axes[0].stride}x{value.axes[1].stride})"


# ---------------------------------------------------------------------------------------------
# Sizes


def _checked_sizes(net, geometry, images, input_size) -> list[SIZE]:
    """The planning size (H, W of the first image input) and the larger sizes to infer at."""
    first = next(iter(images.values()))
    planning = (first[2], first[3])
    strides = [m.axes for m in geometry.values() if isinstance(m, _Map) and m.axes is not None]
    step_h = max((axes[0].stride for axes in strides), default=1)
    step_w = max((axes[1].stride for axes in strides), default=1)
    base = planning if input_size is None else tuple(input_size)
    sizes = [planning]
    candidates = ([base] if input_size is not None else []) + [
        (base[0] + k * step_h, base[1] + k * step_w) for k in (1, 2)
    ]
    for size in candidates:
        if size not in sizes and len(sizes) < 3:
            sizes.append(size)
    return sizes


def _at(shape, size: SIZE, images, planning: SIZE) -> tuple[int, ...]:
    """An image input's shape at a checked size: its own planning H, W moved as the first input's."""
    dh, dw = size[0] - planning[0], size[1] - planning[1]
    return (shape[0], shape[1], shape[2] + dh, shape[3] + dw)


def _hw(size: SIZE) -> str:
    return f"{size[0]} x {size[1]}"


# ---------------------------------------------------------------------------------------------
# Blockers


def _add(found: dict[str, _Found], name, op, why, size) -> None:
    """Blocker ``name``, seen at ``size`` (H, W; None on an axis not concerned) because ``why``."""
    name = name or "?"
    why = why[len(op) + 2 :] if why.startswith(f"{op}: ") else why  # shapes.py's messages start with the type
    if name not in found:
        where = "" if size is None or None in size else f"at input {_hw(size)}: "
        found[name] = _Found(Blocker(name, op, where + why), why)
    found[name].sizes.add(size)


def _type_of(net, name) -> str:
    return next((layer.type for layer in net.layer if layer.name == name), "?")


def _same_map(before, after) -> bool:
    """``after`` is ``before`` with, at most, other H and W (a map of cells)."""
    if before is None or after is None:
        return before is after
    if tuple(before) == tuple(after):
        return True
    return len(before) == len(after) == 4 and tuple(before[:2]) == tuple(after[:2])


MIXING = {
    "MVN": "normalises each channel over the whole map",
    "Reduction": "reduces the whole blob to one value per item",
    "Normalize": "normalises over the whole map (across_spatial)",
    "Softmax": "normalises along a spatial axis",
    "ArgMax": "takes the maximum over the whole map or along a spatial axis",
}


def _find_blockers(net, planning: NetShapes, inferred: dict, geometry, found) -> None:
    """Compare each layer at the planning size with each other size that could be inferred."""
    blocked: set[str] = set()
    for layer in net.layer:
        if not layer.bottom:
            continue
        if any(b in blocked for b in layer.bottom):
            blocked.update(layer.top)
            continue
        before = planning.bottoms.get(layer.name)
        stop = False
        for size, shapes in inferred.items():
            after = shapes.bottoms.get(layer.name)
            if before is None or after is None or any(s is None for s in before + after):
                continue
            why = _blocked_why(layer, before, after, planning.tops[layer.name], shapes.tops[layer.name], geometry)
            if why:
                _add(found, layer.name, layer.type, why, size)
                stop = True
        if stop:
            blocked.update(layer.top)


def _blocked_why(layer, bottoms_before, bottoms_after, tops_before, tops_after, geometry) -> str | None:
    expected_before = expected_blobs(layer, bottoms_before) or []
    expected_after = expected_blobs(layer, bottoms_after) or []
    for index, (was, now) in enumerate(zip(expected_before, expected_after)):
        if was is not None and now is not None and tuple(was) != tuple(now):
            return (
                f"its weights are shaped for the planning size: blob {index} would have to be "
                f"{dims_text(now)}, it is {dims_text(was)}"
            )
    bottoms_vary = any(tuple(a) != tuple(b) for a, b in zip(bottoms_before, bottoms_after))
    if not bottoms_vary:
        return None
    for top, was, now in zip(layer.top, tops_before, tops_after):
        if was is None or now is None:
            continue
        if not _same_map(was, now):
            if layer.type in ("Flatten", "Reshape"):
                return (
                    f"it flattens (reshapes) a map whose size changes with the input: its output '{top}' is "
                    f"{dims_text(now)} there, {dims_text(was)} at the planning size, not a map of cells"
                )
            return f"its output '{top}' is {dims_text(now)} there, {dims_text(was)} at the planning size, not a map of cells"
        if tuple(was) == tuple(now) and len(now) != 4 and not isinstance(geometry.get(top), _Fixed):
            return f"it reduces a map whose size changes with the input to a fixed {dims_text(now)}"
    if layer.type in MIXING and _mixes(layer, bottoms_before):
        return f"it {MIXING[layer.type]}, so a cell no longer depends on its crop only"
    return None


def _mixes(layer, bottom_shapes) -> bool:
    if layer.type in ("Softmax", "ArgMax"):
        return not _along_channels(layer, bottom_shapes)
    if layer.type == "Normalize":
        return layer.norm_param.across_spatial
    return True


def _geometry_blockers(net, geometry, planning: SIZE, other_sizes, found) -> None:
    """Eltwise, Concat, Crop... whose operands follow the input differently: they disagree at
    some input size, named here even when the checked sizes miss it."""
    for layer in net.layer:
        maps = [geometry.get(b) for b in layer.bottom]
        maps = [m for m in maps if isinstance(m, _Map) and m.axes is not None]
        if len(maps) < 2 or any(m.input != maps[0].input for m in maps):
            continue
        if layer.type == "Crop":
            why, size = _crop_fails(layer, maps, planning)
        elif layer.type in ("Eltwise", "Concat", "Bias", "Scale"):
            why, size = _operands_disagree(layer, maps, planning)
        else:
            continue
        if why:
            _add(found, layer.name, layer.type, why, size)
            for other in other_sizes:
                if _fails_at(layer, maps, other):
                    found[layer.name].sizes.add(other)


def _cells(m: _Map, size: SIZE) -> tuple[int, int]:
    return m.axes[0].cells(size[0]), m.axes[1].cells(size[1])


def _search(a: AxisGeometry, b: AxisGeometry, near: int) -> list[int]:
    """Input sizes to try for two axes that may disagree: from the planning size up, then from
    the smallest size both exist at (a disagreement repeats within 4 x the strides' product)."""
    span = 4 * a.stride * b.stride + 1
    low = max(a.min_size, b.min_size)
    return [*range(max(near, low), max(near, low) + span), *range(low, low + span)]


def _operands_disagree(layer, maps, planning) -> tuple[str | None, SIZE | None]:
    first = maps[0]
    for other in maps[1:]:
        for index in (0, 1):
            a, b = first.axes[index], other.axes[index]
            if (a.stride, a.min_size) == (b.stride, b.min_size):
                continue
            for size in _search(a, b, planning[index]):
                if a.cells(size) != b.cells(size):
                    axis = "height" if index == 0 else "width"
                    return (
                        f"its inputs follow the input size differently (stride {a.stride}, smallest "
                        f"{a.min_size} against stride {b.stride}, smallest {b.min_size}): at input {axis} "
                        f"{size} they are {a.cells(size)} and {b.cells(size)} long",
                        _one_axis(index, size),
                    )
    return None, None


def _one_axis(index: int, size: int) -> SIZE:
    return (size, None) if index == 0 else (None, size)


def _crop_fails(layer, maps, planning) -> tuple[str | None, SIZE | None]:
    data, like = maps[0], maps[1]
    start = layer.crop_param.axis + 4 if layer.crop_param.axis < 0 else layer.crop_param.axis
    offsets = list(layer.crop_param.offset)
    for index in (0, 1):
        if index + 2 < start:
            continue
        offset = offsets[0] if len(offsets) == 1 else (offsets[index + 2 - start] if offsets else 0)
        a, b = data.axes[index], like.axes[index]
        for size in _search(a, b, planning[index]):
            if a.cells(size) - offset < b.cells(size):
                axis = "height" if index == 0 else "width"
                return (
                    f"at input {axis} {size} it cannot crop {b.cells(size)} from {a.cells(size)} at offset "
                    f"{offset}: its inputs follow the input size differently (stride {a.stride}, smallest "
                    f"{a.min_size} against stride {b.stride}, smallest {b.min_size})",
                    _one_axis(index, size),
                )
    return None, None


def _fails_at(layer, maps, size: SIZE) -> bool:
    if layer.type == "Crop":
        data, like = maps[0], maps[1]
        start = layer.crop_param.axis + 4 if layer.crop_param.axis < 0 else layer.crop_param.axis
        offsets = list(layer.crop_param.offset)
        for index in (0, 1):
            if index + 2 >= start:
                offset = offsets[0] if len(offsets) == 1 else (offsets[index + 2 - start] if offsets else 0)
                if data.axes[index].cells(size[index]) - offset < like.axes[index].cells(size[index]):
                    return True
        return False
    return len({_cells(m, size) for m in maps}) > 1


# ---------------------------------------------------------------------------------------------
# The report


def _report(net, planning, all_shapes, geometry, images, sizes, found, pooled) -> FcnReport:
    outputs = _net_outputs(net)
    notes: list[str] = []
    checked = [{name: _at(shape, size, images, sizes[0]) for name, shape in images.items()} for size in sizes]
    unknown = [blob for blob in outputs for shapes in all_shapes.values() if shapes.blobs.get(blob) is None]
    blocked_names = set(found)
    downstream = _downstream(net, blocked_names)
    maps, fixed = [], []
    for blob in outputs:
        if blob in downstream:
            continue
        value = geometry.get(blob)
        shapes = {size: s.blobs.get(blob) for size, s in all_shapes.items()}
        if any(shape is None for shape in shapes.values()):
            continue
        varies = len({tuple(shape) for shape in shapes.values()}) > 1
        if not varies:
            fixed.append((blob, shapes[sizes[0]], value.why if isinstance(value, _Fixed) else ""))
            continue
        if not isinstance(value, _Map) or value.axes is None:
            why = value.why if isinstance(value, _Map) and value.why else "its layers have no size rule here"
            notes.append(
                f"{blob} is a map whose size is not computed ({why}); inferred: "
                + ", ".join(f"{_hw(size)} -> {dims_text(shape)}" for size, shape in shapes.items())
            )
            continue
        mismatch = _confirm(value, shapes, images, sizes)
        if mismatch:
            notes.append(f"no stride claimed for {blob}: {mismatch}")
            continue
        maps.append(ScoreMap(blob, value.input, value.axes[0], value.axes[1]))
    for blob, shape, why in fixed:
        because = f" ({why})" if why else ""
        if pooled:
            notes.append(
                f"{blob} is {dims_text(shape)} at every checked size{because}: --pool-scores gives (N, K) back"
            )
        else:
            notes.append(
                f"fcn mode gains nothing for {blob}: it stays {dims_text(shape)} at every checked size{because}"
            )
    proof = PROOF
    if unknown:
        proof = None
        notes.insert(
            0,
            f"the shapes of {', '.join(dict.fromkeys(unknown))} are unknown at some checked size, "
            "so nothing is shown about other input sizes",
        )
    blockers = [item.blocker for item in found.values()]
    fully = proof is not None and not blockers
    if blockers:
        notes.insert(0, "the layers named as blockers keep the net at its planning size")
    return FcnReport(fully, proof, checked, maps, blockers, "; ".join(n for n in notes if n))


def _confirm(value: _Map, shapes, images, sizes) -> str | None:
    """None when the geometry's cell counts equal the inferred H, W at every checked size."""
    source = images[value.input]
    for size, shape in shapes.items():
        h, w = _at(source, size, images, sizes[0])[2:]
        predicted = (value.axes[0].cells(h), value.axes[1].cells(w))
        if len(shape) != 4 or tuple(shape[2:]) != predicted:
            return (
                f"the layer geometry predicts {predicted[0]} x {predicted[1]} at input {h} x {w}, "
                f"shape inference gives {dims_text(shape)}"
            )
    return None


def _downstream(net, names: set[str]) -> set[str]:
    """The blobs computed from the tops of the layers in ``names``."""
    blobs: set[str] = set()
    for layer in net.layer:
        if layer.name in names or any(b in blobs for b in layer.bottom):
            blobs.update(layer.top)
    return blobs


def _net_outputs(net) -> list[str]:
    consumed = {b for layer in net.layer for b in layer.bottom}
    outputs = []
    for layer in net.layer:
        if not layer.bottom:
            continue
        for top in layer.top:
            if top not in consumed and top not in outputs:
                outputs.append(top)
    return outputs
