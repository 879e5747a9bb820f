"""Shapes for models with symbolic input dimensions: the batch defaults to 1 (or ``--batch``), every
other symbolic dimension to the other model's fixed size for the same input, so a converted model
whose input was made symbolic is compared with its original without flags. ``--input-shape``
overrides; a dimension neither model fixes is an error naming the input and the dimension."""

from __future__ import annotations

from dataclasses import dataclass

from proto_rewrite.errors import UsageError
from proto_rewrite.validation.inputs import InputSpec, check_batch, concrete_shape

BATCH = "batch"  # the source of a defaulted dimension: the batch default (1 or --batch) ...
OTHER_MODEL = "other model"  # ... or the same dimension fixed in the other model


@dataclass(frozen=True)
class DefaultedDim:
    axis: int
    value: int
    source: str  # BATCH or OTHER_MODEL
    model: str | None = None  # the model whose fixed size it is (OTHER_MODEL)


@dataclass(frozen=True)
class DefaultedInput:
    """An input whose symbolic dimensions were given default sizes."""

    name: str
    declared: tuple  # as the reference declares it: ints, or str/None for symbolic dimensions
    shape: tuple[int, ...]
    dims: tuple[DefaultedDim, ...]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "declared": [d if isinstance(d, int) else (d or None) for d in self.declared],
            "shape": list(self.shape),
            "defaulted": [{"axis": d.axis, "value": d.value, "source": d.source, "model": d.model} for d in self.dims],
        }

    def describe(self) -> str:
        declared = "(" + ", ".join(str(d) if d not in (None, "") else "?" for d in self.declared) + ")"
        why = ", ".join(
            f"dim {d.axis} = {d.value} ({'batch' if d.source == BATCH else 'fixed in ' + d.model})" for d in self.dims
        )
        return f"{self.name} {declared} -> {'x'.join(map(str, self.shape))} [{why}]"


def declared_shapes(model) -> dict[str, tuple]:
    """The declared shape of every graph input that is not an initializer: ints for fixed
    dimensions, the dim_param (or None) for symbolic ones; None for an input without a shape."""
    initializers = {t.name for t in model.graph.initializer}
    shapes: dict[str, tuple] = {}
    for info in model.graph.input:
        if info.name in initializers:
            continue
        tensor = info.type.tensor_type
        if not info.type.HasField("tensor_type") or not tensor.HasField("shape"):
            shapes[info.name] = None
            continue
        shapes[info.name] = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None)
            for d in tensor.shape.dim
        )
    return shapes


def _fixed(dim) -> bool:
    return isinstance(dim, int) and dim > 0


def choose_shapes(
    specs: list[InputSpec],
    other: dict[str, tuple],
    overrides: dict[str, tuple[int, ...]],
    batch: int | None,
    names=("A", "B"),
) -> tuple[dict[str, tuple[int, ...]], list[DefaultedInput]]:
    """The shape to feed each input of the reference (``specs``, from model ``names[0]``) and the
    defaults that were chosen. ``other``: the other model's declared shapes (:func:`declared_shapes`)."""
    shapes, defaults = {}, []
    for spec in specs:
        if spec.name in overrides:
            shapes[spec.name] = concrete_shape(spec, overrides, batch)
            continue
        theirs = other.get(spec.name)
        shape, dims = [], []
        for axis, dim in enumerate(spec.shape):
            if axis == 0 and batch is not None:
                check_batch(spec, batch)  # a fixed batch axis takes no other size
                shape.append(batch)
            elif _fixed(dim):
                shape.append(dim)
            elif theirs is not None and len(theirs) == len(spec.shape) and _fixed(theirs[axis]):
                shape.append(theirs[axis])
                dims.append(DefaultedDim(axis, theirs[axis], OTHER_MODEL, names[1]))
            elif axis == 0:
                shape.append(1)
                dims.append(DefaultedDim(axis, 1, BATCH))
            else:
                declared = "(" + ", ".join(str(d) if d not in (None, "") else "?" for d in spec.shape) + ")"
                raise UsageError(
                    f"input '{spec.name}' has symbolic dimension {axis} in both models "
                    f"({names[0]} declares {declared}), so validate cannot choose its size",
                    hint=f"give the shape of '{spec.name}' in input_shapes",
                    options=("input_shapes",),
                )
        shapes[spec.name] = tuple(shape)
        if dims:
            defaults.append(DefaultedInput(spec.name, tuple(spec.shape), tuple(shape), tuple(dims)))
    return shapes, defaults


def defaults_line(defaults: list[DefaultedInput]) -> str | None:
    """The one line the CLI shows on stderr when defaults were chosen, or None."""
    if not defaults:
        return None
    return (
        "note: symbolic input dimensions given default sizes: "
        + "; ".join(d.describe() for d in defaults)
        + " (--input-shape NAME:D0,D1,... overrides)"
    )
