"""Blob shapes of a Caffe net, layer by layer, computed as each layer's Reshape in Caffe does.

``infer_shapes(net, input_shapes)`` walks the layers of a V2 ``NetParameter`` in order and gives
every layer's bottom and top shapes and every blob's final shape. The rules follow BVLC Caffe's
``src/caffe/layers/*.cpp`` and, for the fork layers, SSD (``weiliu89/caffe``, ssd branch),
Faster R-CNN, R-FCN, PSPNet and SegNet. Each layer type has one small function, registered in
``_RULES``; the convolution and pooling arithmetic are the public helpers
``conv_output_size``, ``deconv_output_size`` and ``pool_output_size``.

Unknown is not an error: a Python layer, a layer type without a rule, or a data layer whose
shapes come from its data source makes its tops unknown (``None``), and everything computed from
them is unknown too, with one warning naming the layer where the shapes were lost. An
*impossible* shape (an output size <= 0, inputs that disagree, a reshape that changes the element
count...) raises :class:`NetStructureError` naming the layer and the numbers.

Two choices where Caffe itself does not give a number:

* ``DetectionOutput`` keeps a data-dependent number of detections. Its top is given the most rows
  it can have, ``(1, 1, N * keep_top_k, 7)`` for a batch of N, as OpenCV does (``keep_top_k`` -1:
  N x non-background classes x min(priors, nms top_k)); Caffe's own Reshape says 1 row, and its
  forward keeps what survives the thresholds.
* A convolution window that does not fit in the padded input at all is an error here; Caffe's
  integer division would truncate the negative size towards zero and make a 1-wide output.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise

from google.protobuf.message import Message

from proto_rewrite.caffe.layer_params import (
    ConvParams,
    conv_params,
    pool_params,
    pool_rounds_up,
    pool_setting,
)
from proto_rewrite.caffe.layer_params import enum_name as _enum_name
from proto_rewrite.diagnostics import Diagnostic
from proto_rewrite.errors import Location, NetStructureError, UsageError
from proto_rewrite.limits import check_tensor_size
from proto_rewrite.shape_text import shape_text as dims_text

Shape = tuple  # tuple[int, ...]

TOO_SMALL_HINT = "the input is too small for this layer; give a larger one in input_shapes"
PARAM_HINT = "check this layer's parameters and the shapes of its inputs"
INPUT_SHAPE_OPTIONS = ("input_shapes",)  # the option TOO_SMALL_HINT and the unknown-shape hint name


@dataclass
class NetShapes:
    """Shapes of a net; a shape is a tuple of ints, or None when unknown."""

    bottoms: dict[str, list[Shape | None]] = field(default_factory=dict)  # layer -> its bottoms' shapes
    tops: dict[str, list[Shape | None]] = field(default_factory=dict)  # layer -> its tops' shapes
    blobs: dict[str, Shape | None] = field(default_factory=dict)  # blob -> shape at the end of the net
    diagnostics: list[Diagnostic] = field(default_factory=list)


@dataclass(frozen=True)
class _Site:
    """The layer a rule is working on; makes the errors that name it."""

    layer: object
    path: object = None
    line: int | None = None

    def error(self, message: str, hint: str = PARAM_HINT) -> NetStructureError:
        return NetStructureError(
            f"{self.layer.type}: {message}",
            path=self.path,
            line=self.line,
            layer=self.layer.name,
            hint=hint,
            options=INPUT_SHAPE_OPTIONS if hint == TOO_SMALL_HINT else (),
        )

    def location(self) -> Location:
        return Location(self.path, self.line, layer=self.layer.name)


# ---------------------------------------------------------------------------------------------
# The walk over the net


def infer_shapes(
    net, input_shapes: Mapping[str, Sequence[int]] | None = None, *, path=None, lines: Mapping[str, int] | None = None
) -> NetShapes:
    """Shapes of every blob of ``net`` (V2, upgraded). ``input_shapes`` (top name -> dims)
    replaces the declared shape of an input: a top of an Input layer, or of any other layer
    without bottoms (data layers)."""
    lines = lines or {}
    overrides = _check_overrides(net, input_shapes or {})
    shapes = NetShapes()
    for layer in net.layer:
        site = _Site(layer, path, lines.get(layer.name))
        bottoms = [shapes.blobs.get(name) for name in layer.bottom]
        if not layer.bottom and layer.type in _RULES and layer.type not in _SOURCES:
            raise site.error(
                "has no bottom, but this layer type computes its outputs from its inputs",
                "give the layer its bottom (the blob it reads)",
            )
        if not layer.bottom:
            tops = _source_tops(site, overrides, shapes.diagnostics)
        elif any(shape is None for shape in bottoms):
            tops = [None] * len(layer.top)  # lost upstream; that layer has the diagnostic
        else:
            tops = _apply_rule(site, bottoms, shapes.diagnostics)
        _check_sizes(site, bottoms, tops)
        shapes.bottoms[layer.name] = bottoms
        shapes.tops[layer.name] = tops
        shapes.blobs.update(zip(layer.top, tops))
    return shapes


def _check_sizes(site: _Site, bottoms: list[Shape | None], tops: list[Shape | None]) -> None:
    """Refuse a top or a learnable blob whose declared shape needs more memory than the limit
    (:mod:`proto_rewrite.limits`) before anything is made from it."""
    from proto_rewrite.caffe.blob_shapes import expected_blobs

    where = {"path": site.path, "line": site.line, "layer": site.layer.name}
    for name, shape in zip(site.layer.top, tops):
        if shape is not None:
            check_tensor_size(shape, 4, f"{site.layer.type} output '{name}'", **where)
    if all(shape is not None for shape in bottoms):
        for index, shape in enumerate(expected_blobs(site.layer, bottoms) or []):
            if shape is not None:
                check_tensor_size(shape, 4, f"{site.layer.type} blob {index} (weights)", **where)


def _check_overrides(net, input_shapes: Mapping[str, Sequence[int]]) -> dict[str, Shape]:
    inputs = [top for layer in net.layer if not layer.bottom for top in layer.top]
    overrides = {}
    for name, dims in input_shapes.items():
        if name not in inputs:
            raise UsageError(
                f"the net has no input named '{name}'", hint=f"its inputs are: {', '.join(inputs) or '(none)'}"
            )
        try:
            shape = tuple(int(d) for d in dims)
        except (TypeError, ValueError) as err:
            raise UsageError(f"input shape for '{name}' must be a list of integers, not {dims!r}") from err
        if not shape or any(d <= 0 for d in shape):
            raise UsageError(
                f"input shape for '{name}' must have positive dimensions, not {list(shape)}",
                hint="write it as NAME:D0,D1,... e.g. data:1,3,224,224",
            )
        overrides[name] = shape
    return overrides


def _source_tops(site: _Site, overrides: dict[str, Shape], notes: list[Diagnostic]) -> list[Shape | None]:
    """Tops of a layer without bottoms: given by --input-shape, declared, or unknown."""
    layer = site.layer
    rule = _SOURCES.get(layer.type)
    declared = list(rule(site)) if rule is not None else []
    declared += [None] * (len(layer.top) - len(declared))
    tops = [overrides.get(name, shape) for name, shape in zip(layer.top, declared)]
    missing = [name for name, shape in zip(layer.top, tops) if shape is None]
    if missing:
        if layer.type == "Input":
            why = "declares no usable shape for"
        elif layer.type in _DATA_LAYERS:
            why = "takes the shapes from its data source, which proto-rewrite does not read, for"
        elif layer.type == "Python":
            why = "is a Python layer (proto-rewrite never runs its code); it gives no shapes for"
        else:
            why = f"is of type '{layer.type}', whose output shapes proto-rewrite does not know, for"
        notes.append(
            Diagnostic(
                "warning",
                f"this layer {why} {', '.join(missing)}; those shapes and the ones computed from them are unknown",
                site.location(),
                hint=f"give the shape of '{missing[0]}' in input_shapes",
                options=INPUT_SHAPE_OPTIONS,
            )
        )
    return tops


def _apply_rule(site: _Site, bottoms: list[Shape], notes: list[Diagnostic]) -> list[Shape | None]:
    layer = site.layer
    rule = _RULES.get(layer.type)
    unknown = [None] * len(layer.top)
    if rule is None:
        if layer.type == "Python":
            why = "a Python layer: proto-rewrite never runs its code, so its output shapes are unknown"
        else:
            why = f"proto-rewrite does not know how a '{layer.type}' layer shapes its outputs"
        notes.append(
            Diagnostic(
                "warning",
                f"{why}; the shapes computed from them are unknown too",
                site.location(),
                hint="layers after this one are not shape-checked",
            )
        )
        return unknown
    try:
        tops = list(rule(layer, bottoms, site))
    except AttributeError as err:  # a --caffe-schema without a field this rule reads
        if not isinstance(getattr(err, "obj", None), Message):
            raise
        notes.append(
            Diagnostic(
                "warning",
                f"cannot compute the output shapes: the Caffe schema in use has no field '{err.name}' in "
                f"{type(err.obj).__name__}; the shapes computed from them are unknown too",
                site.location(),
            )
        )
        return unknown
    if len(tops) != len(layer.top):
        raise site.error(f"this layer has {len(layer.top)} tops, but with its parameters it makes {len(tops)}")
    for name, shape in zip(layer.top, tops):
        if any(d <= 0 for d in shape):
            raise site.error(
                f"output '{name}' would have shape {dims_text(shape)}, with a dimension <= 0", TOO_SMALL_HINT
            )
    return tops


# ---------------------------------------------------------------------------------------------
# Shared arithmetic


def conv_output_size(size: int, kernel: int, stride: int = 1, pad: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution along one axis (Caffe's ``compute_output_shape``).
    <= 0 when the dilated kernel does not fit in the padded input."""
    extent = dilation * (kernel - 1) + 1
    return (size + 2 * pad - extent) // stride + 1


def deconv_output_size(size: int, kernel: int, stride: int = 1, pad: int = 0, dilation: int = 1) -> int:
    extent = dilation * (kernel - 1) + 1
    return stride * (size - 1) + extent - 2 * pad


def pool_output_size(
    size: int, kernel: int, stride: int = 1, pad: int = 0, *, ceil: bool = True, padded: bool | None = None
) -> int:
    """Output length of a Caffe pooling along one axis: ceil (or floor) rounding, then, when the
    layer has any padding (``padded``, by default ``pad > 0``), the last window is dropped if it
    would start in the padding instead of the image."""
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if (pad > 0 if padded is None else padded) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _axis(site: _Site, axis: int, shape: Shape, what: str = "axis") -> int:
    """Caffe's CanonicalAxisIndex: -rank <= axis < rank, negative counted from the end."""
    rank = len(shape)
    if not -rank <= axis < rank:
        raise site.error(f"{what} {axis} is out of range for its {rank}-D input {dims_text(shape)}")
    return axis + rank if axis < 0 else axis


def _bottom_count(site: _Site, bottoms, low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if not low <= len(bottoms) <= high:
        wanted = str(low) if low == high else (f"at least {low}" if high > 99 else f"{low} to {high}")
        raise site.error(f"needs {wanted} bottoms, has {len(bottoms)}")


def _legacy(shape: Shape, index: int) -> int:
    """Caffe's num()/channels()/height()/width(): dimension ``index``, 1 past the rank."""
    return shape[index] if index < len(shape) else 1


def _rank(site: _Site, shape: Shape, rank: int, what: str = "its input") -> None:
    if len(shape) != rank:
        raise site.error(f"needs a {rank}-D input (N, C, H, W); {what} is {dims_text(shape)}")


def _axis_names(count: int) -> list[str]:
    return ["height", "width"] if count == 2 else [f"spatial axis {i}" for i in range(count)]


# ---------------------------------------------------------------------------------------------
# Layers without bottoms


def _input(site: _Site) -> list[Shape | None]:
    layer = site.layer
    declared = [tuple(shape.dim) for shape in layer.input_param.shape]
    if len(declared) not in (0, 1, len(layer.top)):
        raise site.error(f"gives {len(declared)} shapes for {len(layer.top)} tops; give one, or one per top")
    if not declared:
        return [None] * len(layer.top)
    negative = next((shape for shape in declared if any(d < 0 for d in shape)), None)
    if negative is not None:  # Caffe's Blob::Reshape refuses it (CHECK_GE(shape[i], 0))
        raise site.error(
            f"declares the shape {list(negative)} with a negative dimension",
            hint="dimensions are sizes: give positive values (input_dim / input_shape { dim: ... })",
        )
    shapes = declared * len(layer.top) if len(declared) == 1 else declared
    return [shape if shape and all(d > 0 for d in shape) else None for shape in shapes]


def _dummy_data(site: _Site) -> list[Shape | None]:
    param, count = site.layer.dummy_data_param, len(site.layer.top)

    def pick(values, index):
        return values[0] if len(values) == 1 else values[index]

    if param.shape:
        if len(param.shape) not in (1, count):
            raise site.error(f"gives {len(param.shape)} shapes for {count} tops; give one, or one per top")
        return [tuple(pick(param.shape, i).dim) for i in range(count)]
    legacy = [param.num, param.channels, param.height, param.width]
    if not all(len(values) in (1, count) for values in legacy):
        return [None] * count
    return [tuple(pick(values, i) for values in legacy) for i in range(count)]


def _memory_data(site: _Site) -> list[Shape | None]:
    param = site.layer.memory_data_param
    data = (param.batch_size, param.channels, param.height, param.width)
    return [data, (param.batch_size,)][: len(site.layer.top)]


def _parameter(site: _Site) -> list[Shape | None]:
    return [tuple(site.layer.parameter_param.shape.dim)]


_DATA_LAYERS = frozenset("Data ImageData WindowData HDF5Data AnnotatedData VideoData".split())

_SOURCES: dict[str, Callable[[_Site], list[Shape | None]]] = {
    "Input": _input,
    "DummyData": _dummy_data,
    "MemoryData": _memory_data,
    "Parameter": _parameter,
}


# ---------------------------------------------------------------------------------------------
# Convolution and pooling


def _conv_geometry(site: _Site, layer, bottoms: list[Shape]) -> ConvParams:
    param = layer.convolution_param
    shape = bottoms[0]
    for other in bottoms[1:]:
        if other != shape:
            raise site.error(f"all bottoms must have the same shape; they are {', '.join(map(dims_text, bottoms))}")
    axis = _axis(site, param.axis, shape)
    geometry = conv_params(param, len(shape), error=site.error)
    for name in ("kernel", "stride", "dilation"):
        if any(v <= 0 for v in getattr(geometry, name)):
            raise site.error(f"{name} must be positive, is {list(getattr(geometry, name))}")
    channels, groups = shape[axis], param.group
    if param.num_output <= 0:
        raise site.error("num_output must be positive")
    if groups <= 0 or channels % groups or param.num_output % groups:
        raise site.error(
            f"group {groups} must divide both the input channels ({channels}) and num_output ({param.num_output})"
        )
    return geometry


def _conv_output(layer, bottoms, site, output_size, too_small) -> list[Shape]:
    """A Convolution's or Deconvolution's top: ``output_size`` per spatial axis, and
    ``too_small(name, size, k, p, d, length, shape)`` the message for a length <= 0."""
    geometry = _conv_geometry(site, layer, bottoms)
    shape = bottoms[0]
    spatial = shape[geometry.channel_axis + 1 :]
    out = []
    for name, size, k, s, p, d in zip(
        _axis_names(len(spatial)), spatial, geometry.kernel, geometry.stride, geometry.pad, geometry.dilation
    ):
        length = output_size(size, k, s, p, d)
        if length <= 0:
            raise site.error(too_small(name, size, k, p, d, length, shape), TOO_SMALL_HINT)
        out.append(length)
    top = (*shape[: geometry.channel_axis], layer.convolution_param.num_output, *out)
    return [top] * len(layer.top)


def _kernel_too_large(name, size, k, p, d, length, shape) -> str:
    extent = d * (k - 1) + 1
    return (
        f"the kernel ({k}{f', dilation {d}, so {extent} wide' if d > 1 else ''}) does not fit in the "
        f"input {name} {size} + 2x{p} padding (input {dims_text(shape)})"
    )


def _cropped_away(name, size, k, p, d, length, shape) -> str:
    return (
        f"output {name} would be {length}: the padding {p} crops more than the "
        f"{size}-long input yields (input {dims_text(shape)})"
    )


def _convolution(layer, bottoms, site):
    return _conv_output(layer, bottoms, site, conv_output_size, _kernel_too_large)


def _deconvolution(layer, bottoms, site):
    return _conv_output(layer, bottoms, site, deconv_output_size, _cropped_away)


def _pooling(layer, bottoms, site):
    param, shape = layer.pooling_param, bottoms[0]
    _rank(site, shape, 4)
    if param.global_pooling:
        if param.HasField("kernel_size") or param.HasField("kernel_h") or param.HasField("kernel_w"):
            raise site.error("global_pooling takes the kernel size from the input; do not set kernel_size")
        kernel = shape[2:]
    else:
        kernel = pool_setting(param, "kernel", None, site.error)
    stride = pool_setting(param, "stride", 1, site.error)
    pad = pool_setting(param, "pad", 0, site.error)
    if any(k <= 0 for k in kernel) or any(s <= 0 for s in stride):
        raise site.error(f"kernel {list(kernel)} and stride {list(stride)} must be positive")
    if param.global_pooling and (any(pad) or any(s != 1 for s in stride)):
        raise site.error("global_pooling works only with pad 0 and stride 1")
    if any(pad):
        if _enum_name(param, "pool") not in ("MAX", "AVE"):
            raise site.error("padding works only with MAX and AVE pooling")
        if pad[0] >= kernel[0] or pad[1] >= kernel[1]:
            raise site.error(f"pad {list(pad)} must be smaller than the kernel {list(kernel)}")
    ceil = pool_rounds_up(param, site.error)
    out = []
    for name, size, k, s, p in zip(("height", "width"), shape[2:], kernel, stride, pad):
        length = pool_output_size(size, k, s, p, ceil=ceil, padded=any(pad))
        if length <= 0:
            raise site.error(
                f"the {k}-wide window does not fit in the input {name} {size} + 2x{p} padding "
                f"(input {dims_text(shape)})",
                TOO_SMALL_HINT,
            )
        if any(pad) and (length - 1) * s >= size + p:
            raise site.error(f"the last window along {name} starts in the padding", PARAM_HINT)
        out.append(length)
    top = (shape[0], shape[1], *out)
    return [top] * len(layer.top)  # a second top (MAX: the argmax mask) has the same shape


@dataclass(frozen=True)
class Window:
    """One spatial axis of a Convolution or Pooling window: ``extent`` is the (dilated) kernel
    size; pooling rounds up (``ceil``) and, when ``padded``, drops a last window that would start
    in the padding (see :func:`pool_output_size`)."""

    extent: int
    stride: int
    pad: int
    ceil: bool = False
    padded: bool = False


def window_axes(layer, shape: Shape, *, path=None, line: int | None = None) -> list[Window] | None:
    """The windows of a Convolution (channel axis 1) or a non-global Pooling over the 4-D
    ``shape``, one per spatial axis (height, width), read as the shape rules read them; None for
    any other layer (a global pooling, a convolution over another axis)."""
    site = _Site(layer, path, line)
    if len(shape) != 4:
        return None
    if layer.type == "Convolution":
        geometry = _conv_geometry(site, layer, [shape])
        if geometry.channel_axis != 1:
            return None
        return [
            Window(d * (k - 1) + 1, s, p)
            for k, s, p, d in zip(geometry.kernel, geometry.stride, geometry.pad, geometry.dilation)
        ]
    if layer.type == "Pooling" and not layer.pooling_param.global_pooling:
        pool = pool_params(layer.pooling_param, error=site.error)
        return [Window(k, s, p, pool.ceil, any(pool.pad)) for k, s, p in zip(pool.kernel, pool.stride, pool.pad)]
    return None


def _spp(layer, bottoms, site):
    shape = bottoms[0]
    _rank(site, shape, 4)
    levels = layer.spp_param.pyramid_height
    if levels < 1:
        raise site.error("pyramid_height must be at least 1")
    if levels == 1:
        return [(shape[0], shape[1], 1, 1)]
    return [(shape[0], shape[1] * sum(4**level for level in range(levels)))]


# ---------------------------------------------------------------------------------------------
# Fully connected and embedding


def _inner_product(layer, bottoms, site):
    param, shape = layer.inner_product_param, bottoms[0]
    axis = _axis(site, param.axis, shape)
    if param.num_output <= 0:
        raise site.error("num_output must be positive")
    return [(*shape[:axis], param.num_output)]


def _embed(layer, bottoms, site):
    param = layer.embed_param
    if param.num_output <= 0 or param.input_dim <= 0:
        raise site.error("num_output and input_dim must be positive")
    return [(*bottoms[0], param.num_output)]


# ---------------------------------------------------------------------------------------------
# Joining, splitting and reshaping


def _same_shape(layer, bottoms, site):
    """Tops with the shape of the first bottom: element-wise layers, normalisations, Split..."""
    return [bottoms[0]] * len(layer.top)


def _concat_or_slice_axis(site: _Site, param, legacy_name: str, shape: Shape) -> int:
    if param.HasField(legacy_name):
        if param.HasField("axis"):
            raise site.error(f"give either axis or {legacy_name}, not both")
        value = getattr(param, legacy_name)
        if value >= len(shape):
            raise site.error(f"{legacy_name} {value} is out of range for its {len(shape)}-D input {dims_text(shape)}")
        return value
    return _axis(site, param.axis, shape)


def _concat(layer, bottoms, site):
    first = bottoms[0]
    axis = _concat_or_slice_axis(site, layer.concat_param, "concat_dim", first)
    for shape in bottoms[1:]:
        if len(shape) != len(first) or any(a != b for i, (a, b) in enumerate(zip(shape, first)) if i != axis):
            raise site.error(
                f"inputs must have equal shapes except along axis {axis}; they are {', '.join(map(dims_text, bottoms))}"
            )
    total = sum(shape[axis] for shape in bottoms)
    return [(*first[:axis], total, *first[axis + 1 :])]


def _eltwise(layer, bottoms, site):
    _bottom_count(site, bottoms, 2, 2**62)  # Caffe takes any number >= 2
    if any(shape != bottoms[0] for shape in bottoms):
        raise site.error(f"inputs must all have the same shape; they are {', '.join(map(dims_text, bottoms))}")
    coeff = len(layer.eltwise_param.coeff)
    if coeff not in (0, len(bottoms)):
        raise site.error(f"gives {coeff} coeff values for {len(bottoms)} inputs; give one per input or none")
    return [bottoms[0]]


def _slice(layer, bottoms, site):
    param, shape, count = layer.slice_param, bottoms[0], len(layer.top)
    axis = _concat_or_slice_axis(site, param, "slice_dim", shape)
    length = shape[axis]
    points = list(param.slice_point)
    if points:
        if len(points) != count - 1:
            raise site.error(
                f"{len(points)} slice points make {len(points) + 1} pieces, but the layer has {count} tops"
            )
        edges = [0, *points, length]
        sizes = [b - a for a, b in pairwise(edges)]
        if any(size <= 0 for size in sizes):
            raise site.error(
                f"slice points {points} must increase strictly inside the {length}-long axis {axis} "
                f"(input {dims_text(shape)})"
            )
    else:
        if length % count:
            raise site.error(
                f"axis {axis} of the input {dims_text(shape)} ({length}) does not split evenly into "
                f"{count} tops; give slice_point"
            )
        sizes = [length // count] * count
    return [(*shape[:axis], size, *shape[axis + 1 :]) for size in sizes]


def _flatten(layer, bottoms, site):
    param, shape = layer.flatten_param, bottoms[0]
    start = _axis(site, param.axis, shape)
    end = _axis(site, param.end_axis, shape, "end_axis")
    if end < start - 1:  # Caffe's count(start, end + 1) allows end = start - 1 (inserts a 1)
        raise site.error(f"end_axis {param.end_axis} comes before axis {param.axis} in the {len(shape)}-D input")
    return [(*shape[:start], math.prod(shape[start : end + 1]), *shape[end + 1 :])]


def _reshape(layer, bottoms, site):
    param, shape = layer.reshape_param, bottoms[0]
    rank = len(shape)
    start = param.axis if param.axis >= 0 else rank + param.axis + 1
    if not 0 <= start <= rank:
        raise site.error(f"axis {param.axis} is out of range for its {rank}-D input {dims_text(shape)}")
    if param.num_axes < -1:
        raise site.error("num_axes must be >= 0, or -1 for all")
    end = rank if param.num_axes == -1 else start + param.num_axes
    if end > rank:
        raise site.error(f"axis + num_axes = {end} is past the end of the {rank}-D input {dims_text(shape)}")
    wanted = list(param.shape.dim)
    if sum(1 for d in wanted if d == -1) > 1:
        raise site.error(f"new shape {wanted} has more than one -1")
    if any(d < -1 for d in wanted):
        raise site.error(f"new shape {wanted} has a dimension below -1")
    new = []
    for index, dim in enumerate(wanted):
        if dim == 0:
            if start + index >= rank:
                raise site.error(
                    f"new shape {wanted} copies (0) axis {start + index}, which the input "
                    f"{dims_text(shape)} does not have"
                )
            dim = shape[start + index]
        new.append(dim)
    top = [*shape[:start], *new, *shape[end:]]
    total = math.prod(shape)
    if -1 in new:
        known = math.prod(d for d in top if d != -1)
        if known == 0 or total % known:
            raise site.error(
                f"cannot infer the -1 in {wanted}: {total} elements of {dims_text(shape)} do not divide by {known}"
            )
        top[top.index(-1)] = total // known
    if math.prod(top) != total:
        raise site.error(
            f"new shape {dims_text(top)} has {math.prod(top)} elements; the input {dims_text(shape)} has {total}"
        )
    return [tuple(top)]


def _crop(layer, bottoms, site):
    _bottom_count(site, bottoms, 2)
    param, (shape, like) = layer.crop_param, bottoms
    if len(shape) != len(like):
        raise site.error(f"the input {dims_text(shape)} and the reference {dims_text(like)} differ in rank")
    start = _axis(site, param.axis, shape)
    offsets = list(param.offset)
    cropped = len(shape) - start
    if len(offsets) > 1 and len(offsets) != cropped:
        raise site.error(f"gives {len(offsets)} offsets for {cropped} cropped axes; give one, or one per axis")
    top = list(shape)
    for axis in range(start, len(shape)):
        offset = offsets[0] if len(offsets) == 1 else (offsets[axis - start] if offsets else 0)
        if shape[axis] - offset < like[axis]:
            raise site.error(
                f"cannot crop {like[axis]} from axis {axis} of {dims_text(shape)} at offset {offset} "
                f"(reference {dims_text(like)})",
                TOO_SMALL_HINT,
            )
        top[axis] = like[axis]
    return [tuple(top)]


def _permute(layer, bottoms, site):
    shape, order = bottoms[0], list(layer.permute_param.order)
    if any(axis >= len(shape) for axis in order):
        raise site.error(f"order {order} names an axis the {len(shape)}-D input {dims_text(shape)} does not have")
    if len(set(order)) != len(order):
        raise site.error(f"order {order} repeats an axis")
    order += [axis for axis in range(len(shape)) if axis not in order]
    return [tuple(shape[axis] for axis in order)]


def _tile(layer, bottoms, site):
    param, shape = layer.tile_param, bottoms[0]
    axis = _axis(site, param.axis, shape)
    if param.tiles <= 0:
        raise site.error("tiles must be positive")
    return [(*shape[:axis], shape[axis] * param.tiles, *shape[axis + 1 :])]


def _batch_reindex(layer, bottoms, site):
    _bottom_count(site, bottoms, 2)
    return [(bottoms[1][0], *bottoms[0][1:])]


# ---------------------------------------------------------------------------------------------
# Reductions and outputs


def _softmax(layer, bottoms, site):
    _axis(site, layer.softmax_param.axis, bottoms[0])
    return [bottoms[0]]


def _argmax(layer, bottoms, site):
    param, shape = layer.argmax_param, bottoms[0]
    if param.top_k < 1:
        raise site.error("top_k must be at least 1")
    if param.HasField("axis"):
        axis = _axis(site, param.axis, shape)
        if param.top_k > shape[axis]:
            raise site.error(f"top_k {param.top_k} is larger than axis {axis} of the input {dims_text(shape)}")
        top = list(shape)
        top[axis] = param.top_k
        return [tuple(top)]
    if param.top_k > math.prod(shape[1:]):
        raise site.error(f"top_k {param.top_k} is larger than one item of the input {dims_text(shape)}")
    top = [1] * max(len(shape), 3)
    top[0] = shape[0]
    top[2] = param.top_k
    if param.out_max_val:
        top[1] = 2
    return [tuple(top)]


def _reduction(layer, bottoms, site):
    shape = bottoms[0]
    axis = _axis(site, layer.reduction_param.axis, shape)
    return [shape[:axis]]


def _loss(layer, bottoms, site):
    """Loss layers: a scalar; SoftmaxWithLoss/InfogainLoss may also output the probabilities."""
    return [()] + [bottoms[0]] * (len(layer.top) - 1)


def _accuracy(layer, bottoms, site):
    shape = bottoms[0]
    axis = _axis(site, layer.accuracy_param.axis, shape)
    return [(), (shape[axis],)][: len(layer.top)]


def _silence(layer, bottoms, site):
    return []


# ---------------------------------------------------------------------------------------------
# Scale, Bias, normalisation


def _scale_or_bias(layer, bottoms, site):
    if len(bottoms) == 1:
        return [bottoms[0]]
    param = layer.scale_param if layer.type == "Scale" else layer.bias_param
    shape, factor = bottoms[0], bottoms[1]
    axis = 0 if not factor else _axis(site, param.axis, shape)
    if tuple(shape[axis : axis + len(factor)]) != tuple(factor):
        raise site.error(
            f"the second input {dims_text(factor)} must match the first {dims_text(shape)} from axis {axis} on"
        )
    return [shape]


def _shuffle_channel(layer, bottoms, site):
    group, channels = layer.shuffle_channel_param.group, _legacy(bottoms[0], 1)
    if group <= 0 or channels % group:
        raise site.error(f"group {group} must divide the {channels} channels")
    return [bottoms[0]]


def _needs_2d(layer, bottoms, site):
    if len(bottoms[0]) < 2:
        raise site.error(f"needs an input with at least 2 axes; it is {dims_text(bottoms[0])}")
    return [bottoms[0]] * len(layer.top)


# ---------------------------------------------------------------------------------------------
# Detection (SSD, Faster R-CNN, R-FCN)


def prior_count(param) -> int:
    """Priors per feature-map cell of an SSD PriorBox layer: aspect ratios (1 first, each new
    ratio, and its inverse when flip) per min_size, plus one per max_size."""
    ratios = [1.0]
    for ratio in param.aspect_ratio:
        if all(abs(ratio - known) >= 1e-6 for known in ratios):
            ratios.append(ratio)
            if param.flip:
                ratios.append(1.0 / ratio)
    return len(ratios) * len(param.min_size) + len(param.max_size)


def _prior_box(layer, bottoms, site):
    param, shape = layer.prior_box_param, bottoms[0]
    if not param.min_size:
        raise site.error("min_size is not given")
    if param.max_size and len(param.max_size) != len(param.min_size):
        raise site.error(f"gives {len(param.max_size)} max_size for {len(param.min_size)} min_size; give as many")
    if len(shape) > 4:
        raise site.error(f"needs an input of at most 4 axes; it is {dims_text(shape)}")
    cells = _legacy(shape, 2) * _legacy(shape, 3)
    return [(1, 2, cells * prior_count(param) * 4)]


def _detection_output(layer, bottoms, site):
    _bottom_count(site, bottoms, 3, 4)
    param = layer.detection_output_param
    loc, conf, priors = bottoms[:3]
    if not param.HasField("num_classes"):
        raise site.error("num_classes is not given")
    classes = param.num_classes
    loc_classes = 1 if param.share_location else classes
    num_priors = _legacy(priors, 2) // 4
    if loc[0] != conf[0]:
        raise site.error(f"location {dims_text(loc)} and confidence {dims_text(conf)} inputs differ in batch size")
    if num_priors * loc_classes * 4 != _legacy(loc, 1):
        raise site.error(
            f"{num_priors} priors need {num_priors * loc_classes * 4} location values per image; "
            f"the location input {dims_text(loc)} has {_legacy(loc, 1)}"
        )
    if num_priors * classes != _legacy(conf, 1):
        raise site.error(
            f"{num_priors} priors x {classes} classes need {num_priors * classes} confidences per "
            f"image; the confidence input {dims_text(conf)} has {_legacy(conf, 1)}"
        )
    if param.keep_top_k > 0:
        rows = param.keep_top_k
    else:  # every class but the background keeps at most nms top_k boxes
        per_class = min(num_priors, param.nms_param.top_k) if param.nms_param.HasField("top_k") else num_priors
        rows = per_class * (classes - (1 if 0 <= param.background_label_id < classes else 0))
    return [(1, 1, loc[0] * rows, 7)]


def _roi_pooling(layer, bottoms, site):
    _bottom_count(site, bottoms, 2)
    param = layer.roi_pooling_param
    if param.pooled_h <= 0 or param.pooled_w <= 0:
        raise site.error("pooled_h and pooled_w must be positive")
    return [(bottoms[1][0], _legacy(bottoms[0], 1), param.pooled_h, param.pooled_w)]


def _psroi_pooling(layer, bottoms, site):
    _bottom_count(site, bottoms, 2)
    param = layer.psroi_pooling_param
    channels, size = _legacy(bottoms[0], 1), param.group_size
    if size <= 0 or param.output_dim <= 0 or channels != param.output_dim * size * size:
        raise site.error(
            f"the input has {channels} channels; output_dim {param.output_dim} x group_size "
            f"{size}^2 = {param.output_dim * size * size} needed"
        )
    return [(bottoms[1][0], param.output_dim, size, size)]


# ---------------------------------------------------------------------------------------------
# Resizing (PSPNet, SegNet) and recurrent layers


def _interp(layer, bottoms, site):
    param, shape = layer.interp_param, bottoms[0]
    _rank(site, shape, 4)
    if param.pad_beg > 0 or param.pad_end > 0:
        raise site.error("pad_beg and pad_end must be <= 0 (cropping)")
    sizes = [size + param.pad_beg + param.pad_end for size in shape[2:]]
    shrink, zoom = param.HasField("shrink_factor"), param.HasField("zoom_factor")
    if (shrink and param.shrink_factor < 1) or (zoom and param.zoom_factor < 1):
        raise site.error("shrink_factor and zoom_factor must be at least 1")
    if shrink:
        sizes = [(size - 1) // param.shrink_factor + 1 for size in sizes]
    if zoom:
        sizes = [size + (size - 1) * (param.zoom_factor - 1) for size in sizes]
    if not (shrink or zoom):
        if not (param.HasField("height") and param.HasField("width")):
            raise site.error("give zoom_factor, shrink_factor, or height and width")
        sizes = [param.height, param.width]
    return [(shape[0], shape[1], *sizes)]


def _upsample(layer, bottoms, site):
    _bottom_count(site, bottoms, 2)
    param, (shape, mask) = layer.upsample_param, bottoms
    _rank(site, shape, 4)
    if mask != shape:
        raise site.error(f"the mask {dims_text(mask)} must have the shape of the input {dims_text(shape)}")
    if param.HasField("upsample_h") and param.HasField("upsample_w"):
        return [(shape[0], shape[1], param.upsample_h, param.upsample_w)]
    if param.HasField("scale_h") or param.HasField("scale_w"):
        scales = (param.scale_h, param.scale_w)
    else:
        scales = (param.scale, param.scale)
    if min(scales) <= 1:
        raise site.error(f"the scale {list(scales)} must be larger than 1")
    pads = (int(param.pad_out_h), int(param.pad_out_w))
    return [(shape[0], shape[1], *(size * scale - pad for size, scale, pad in zip(shape[2:], scales, pads)))]


def _recurrent(layer, bottoms, site):
    shape, outputs = bottoms[0], layer.recurrent_param.num_output
    if len(shape) < 2:
        raise site.error(f"needs an input of shape (T, N, ...); it is {dims_text(shape)}")
    return [(shape[0], shape[1], outputs)] + [(1, shape[1], outputs)] * (len(layer.top) - 1)


# ---------------------------------------------------------------------------------------------

_SAME_SHAPE = """AbsVal BatchNorm BNLL Clip Dropout ELU Exp Log LRN MVN Power ReLU ReLU6 Sigmoid Split Swish
    TanH Threshold LSTMUnit""".split()

_LOSSES = """ContrastiveLoss EuclideanLoss HingeLoss InfogainLoss MultinomialLogisticLoss SigmoidCrossEntropyLoss
    SoftmaxWithLoss SmoothL1Loss MultiBoxLoss""".split()

Rule = Callable[[object, list, _Site], list]

_RULES: dict[str, Rule] = {
    **{name: _same_shape for name in _SAME_SHAPE},
    **{name: _loss for name in _LOSSES},
    "Accuracy": _accuracy,
    "ArgMax": _argmax,
    "BatchReindex": _batch_reindex,
    "Bias": _scale_or_bias,
    "Concat": _concat,
    "Convolution": _convolution,
    "Crop": _crop,
    "Deconvolution": _deconvolution,
    "DetectionOutput": _detection_output,
    "Eltwise": _eltwise,
    "Embed": _embed,
    "Flatten": _flatten,
    "InnerProduct": _inner_product,
    "Interp": _interp,
    "LSTM": _recurrent,
    "Normalize": _needs_2d,
    "Permute": _permute,
    "Pooling": _pooling,
    "PReLU": _needs_2d,
    "PriorBox": _prior_box,
    "PSROIPooling": _psroi_pooling,
    "Reduction": _reduction,
    "Reshape": _reshape,
    "RNN": _recurrent,
    "ROIPooling": _roi_pooling,
    "Scale": _scale_or_bias,
    "ShuffleChannel": _shuffle_channel,
    "Silence": _silence,
    "Slice": _slice,
    "Softmax": _softmax,
    "SPP": _spp,
    "Tile": _tile,
    "Upsample": _upsample,
}

SUPPORTED_TYPES = frozenset(_RULES) | frozenset(_SOURCES)
