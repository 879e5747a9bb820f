"""Convolution and pooling parameters of a Caffe layer, read once for every module that needs them.

Shape inference, the expected blob shapes, the diff view and the ONNX exporter all read a
layer's geometry from here, so a legacy spelling (``kernel_h``/``kernel_w``, a fork's
``ceil_mode``) or a default means the same thing everywhere.

The rules are BVLC Caffe's:

* Convolution (``base_conv_layer.cpp``): the channel axis is ``axis`` (negative counted from the
  end); the spatial axes are every axis after it, ``rank - axis - 1`` of them, which may be 0.
  ``kernel_size``, ``stride``, ``pad`` and ``dilation`` are given once (the same for every spatial
  axis) or once per spatial axis; ``kernel_h``/``kernel_w`` (and ``stride_h``..., ``pad_h``...)
  only for 2 spatial axes and never beside the repeated form. Defaults: stride 1, pad 0,
  dilation 1; the kernel has none. When the input's rank is not known, the number of spatial
  axes is the number of kernel sizes given when there are several, else 2.
* Pooling (``pooling_layer.cpp``): two spatial axes; ``kernel_size`` or both ``kernel_h`` and
  ``kernel_w`` (none with ``global_pooling``), likewise stride (default 1) and pad (default 0).
  Output sizes round up unless BVLC's ``round_mode: FLOOR`` or a fork's ``ceil_mode: false``.

Every reader takes ``error``: a function making the exception to raise from a message (the
caller's, which names the file and the layer). With ``error`` the parameters are checked and a
wrong combination raises; without it (a view of a net that may not be valid) nothing raises and
what is given is taken as it is, missing values by their defaults (a missing kernel as 0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ErrorFactory = Callable[[str], Exception]


def has_field(message, field_name: str) -> bool:
    """Whether ``message`` has the field and it is set (a fork's schema may lack the field)."""
    return field_name in message.DESCRIPTOR.fields_by_name and message.HasField(field_name)


def enum_name(message, field_name: str) -> str | None:
    """The name of an enum field's value, None when the schema has no such field."""
    descriptor = message.DESCRIPTOR.fields_by_name.get(field_name)
    if descriptor is None:
        return None
    return descriptor.enum_type.values_by_number[getattr(message, field_name)].name


# ---------------------------------------------------------------------------------------------
# Convolution and Deconvolution


@dataclass(frozen=True)
class ConvParams:
    """A ``convolution_param``: ``channel_axis`` is canonical (>= 0) when the input's rank was
    given, else the value as written; the per-axis settings have one value per spatial axis."""

    channel_axis: int
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    pad: tuple[int, ...]
    dilation: tuple[int, ...]
    group: int
    num_output: int
    bias_term: bool


def input_rank(bottom_shapes) -> int | None:
    """The first bottom's rank, None when its shape is not known."""
    return None if not bottom_shapes or bottom_shapes[0] is None else len(bottom_shapes[0])


def spatial_axes(param, rank: int | None) -> int:
    """How many spatial axes a convolution over a ``rank``-D input has (Caffe's num_spatial_axes)."""
    if rank is None:
        return len(param.kernel_size) if len(param.kernel_size) > 1 else 2
    axis = param.axis + rank if param.axis < 0 else param.axis
    return max(rank - axis - 1, 0)


def per_axis(
    param,
    name: str,
    h_name: str | None,
    w_name: str | None,
    default: int | None,
    count: int,
    error: ErrorFactory | None = None,
) -> tuple[int, ...]:
    """A repeated convolution setting (kernel_size, stride, pad, dilation) or its _h/_w form, one
    value per spatial axis, as base_conv_layer.cpp reads it."""
    if h_name and (param.HasField(h_name) or param.HasField(w_name)):
        if error is not None:
            if count != 2:
                raise error(f"{h_name}/{w_name} can only be used with 2 spatial axes; the input has {count}")
            if len(getattr(param, name)):
                raise error(f"give either {name} or {h_name}/{w_name}, not both")
        return (getattr(param, h_name), getattr(param, w_name))
    values = tuple(getattr(param, name))
    if not values:
        if default is None:
            if error is not None:
                raise error(f"{name} is not given")
            default = 0
        return (default,) * count
    if len(values) == 1:
        return values * count
    if len(values) != count and error is not None:
        raise error(f"{name} is given {len(values)} times; give it once or once per spatial axis ({count})")
    return values


def conv_params(param, rank: int | None = None, *, error: ErrorFactory | None = None) -> ConvParams:
    """The geometry of a ``convolution_param`` over a ``rank``-D input (None: not known). A
    checking caller checks that ``axis`` is in range first (its message names the shape)."""
    count = spatial_axes(param, rank)
    axis = param.axis + rank if rank is not None and param.axis < 0 else param.axis
    return ConvParams(
        axis,
        per_axis(param, "kernel_size", "kernel_h", "kernel_w", None, count, error),
        per_axis(param, "stride", "stride_h", "stride_w", 1, count, error),
        per_axis(param, "pad", "pad_h", "pad_w", 0, count, error),
        per_axis(param, "dilation", None, None, 1, count, error),
        param.group,
        param.num_output,
        param.bias_term,
    )


# ---------------------------------------------------------------------------------------------
# Pooling


@dataclass(frozen=True)
class PoolParams:
    """A ``pooling_param``: ``method`` is the enum name (MAX, AVE, STOCHASTIC); ``kernel`` is None
    for a global pooling (its kernel is the input's size); ``ceil``: output sizes round up."""

    method: str | None
    global_pooling: bool
    kernel: tuple[int, int] | None
    stride: tuple[int, int]
    pad: tuple[int, int]
    ceil: bool


def pool_setting(param, name: str, default: int | None, error: ErrorFactory | None = None) -> tuple[int, int]:
    """kernel_size / stride / pad, or their _h and _w forms (both required), as pooling_layer.cpp."""
    has_h, has_w = param.HasField(f"{name}_h"), param.HasField(f"{name}_w")
    whole = "kernel_size" if name == "kernel" else name
    if has_h or has_w:
        if error is not None and (param.HasField(whole) or not (has_h and has_w)):
            raise error(f"give either {whole} or both {name}_h and {name}_w")
        return getattr(param, f"{name}_h"), getattr(param, f"{name}_w")
    if default is None and not param.HasField(whole) and error is not None:
        raise error(f"{whole} is not given (or set global_pooling)")
    value = getattr(param, whole)
    return value, value


def pool_rounds_up(param, error: ErrorFactory | None = None) -> bool:
    """BVLC's round_mode (CEIL default, FLOOR) and the forks' ceil_mode (true default); a fork's
    ``ceil_mode`` wins when both are set (checked: they must agree)."""
    floor_by_round_mode = enum_name(param, "round_mode") == "FLOOR"
    if has_field(param, "ceil_mode"):
        if error is not None and has_field(param, "round_mode") and floor_by_round_mode == param.ceil_mode:
            raise error("round_mode and ceil_mode disagree; set one of them")
        return param.ceil_mode
    return not floor_by_round_mode


def pool_params(param, *, error: ErrorFactory | None = None) -> PoolParams:
    """The geometry of a ``pooling_param``. Checked: a global pooling sets no kernel; every
    setting is given in one form; round_mode and ceil_mode agree."""
    if param.global_pooling:
        if error is not None and (
            param.HasField("kernel_size") or param.HasField("kernel_h") or param.HasField("kernel_w")
        ):
            raise error("global_pooling takes the kernel size from the input; do not set kernel_size")
        kernel = None
    else:
        kernel = pool_setting(param, "kernel", None, error)
    stride = pool_setting(param, "stride", 1, error)
    pad = pool_setting(param, "pad", 0, error)
    return PoolParams(
        enum_name(param, "pool"), bool(param.global_pooling), kernel, stride, pad, pool_rounds_up(param, error)
    )
