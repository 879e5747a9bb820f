"""Attach the blobs of a caffemodel to the layers of a prototxt, by layer name, as Caffe's
CopyTrainedLayersFrom does, checking blob counts and shapes instead of trusting them."""

from __future__ import annotations

import numpy as np

from proto_rewrite.caffe.blob_shapes import expected_blobs, format_shape, resolve_legacy_shape, shape_matches
from proto_rewrite.caffe.caffemodel import Caffemodel
from proto_rewrite.diagnostics import Diagnostic
from proto_rewrite.errors import Location, WeightsMismatchError

_MISMATCH_HINT = "the caffemodel was trained for a different version of this net; check that the prototxt and the weights belong together"


def attach_weights(
    net, model: Caffemodel, *, prototxt_path=None, lines: dict[str, int] | None = None, bottom_shapes=None
) -> tuple[dict[str, list[np.ndarray]], list[Diagnostic]]:
    """Return (layer name -> arrays, diagnostics). ``bottom_shapes`` (layer name -> list of
    input shapes), when known, lets the shape check cover input-dependent dimensions too."""
    lines = lines or {}
    bottom_shapes = bottom_shapes or {}
    layers = {layer.name: layer for layer in net.layer}
    weights: dict[str, list[np.ndarray]] = {}
    notes: list[Diagnostic] = []
    unused_without_blobs = 0
    for stored in model.layers:
        layer = layers.get(stored.name)
        if layer is None:
            if stored.blobs:
                notes.append(
                    Diagnostic(
                        "warning",
                        f"caffemodel layer '{stored.name}' ({stored.type}, {len(stored.blobs)} blobs) is not in the prototxt; its weights are not used",
                        Location(model.path, layer=stored.name),
                    )
                )
            else:
                unused_without_blobs += 1
            continue
        if not stored.blobs:
            continue
        where = {"path": prototxt_path, "line": lines.get(layer.name), "layer": layer.name}
        expected = expected_blobs(layer, bottom_shapes.get(layer.name))
        if expected is not None and len(expected) != len(stored.blobs):
            raise WeightsMismatchError(
                f"the caffemodel '{model.path}' holds {len(stored.blobs)} blobs for this {layer.type} layer, "
                f"but with its parameters in the prototxt it has {len(expected)}",
                **where,
                hint=_MISMATCH_HINT,
            )
        arrays = []
        for index, blob in enumerate(stored.blobs):
            want = None if expected is None else expected[index]
            values = blob.values
            if blob.legacy_shape:
                shape = resolve_legacy_shape(want, values.shape)
                ok = shape is not None
                if ok:
                    values = values.reshape(shape)
            else:
                ok = shape_matches(want, values.shape)
            if not ok:
                raise WeightsMismatchError(
                    f"blob {index} in the caffemodel '{model.path}' has shape {list(blob.values.shape)}"
                    f"{' (legacy 4-D)' if blob.legacy_shape else ''}, but this {layer.type} layer expects {format_shape(want)}",
                    **where,
                    hint=_MISMATCH_HINT,
                )
            arrays.append(values)
        weights[layer.name] = arrays
    stored_with_blobs = [stored.name for stored in model.layers if stored.blobs]
    needing = [layer.name for layer in net.layer if expected_blobs(layer, bottom_shapes.get(layer.name))]
    if stored_with_blobs and needing and not weights:  # another net's weights: nothing would be attached
        raise WeightsMismatchError(
            f"no layer with weights in the caffemodel matches a layer of the prototxt by name (the caffemodel has "
            f"{_names(stored_with_blobs)}; the prototxt needs {_names(needing)})",
            path=model.path,
            hint="this caffemodel belongs to another net: weights are matched to layers by name; give the "
            "caffemodel trained for this prototxt",
        )
    for layer in net.layer:
        expected = expected_blobs(layer, bottom_shapes.get(layer.name))
        if expected and layer.name not in weights:
            notes.append(
                Diagnostic(
                    "warning",
                    f"layer '{layer.name}' ({layer.type}) has no weights in the caffemodel",
                    Location(prototxt_path, lines.get(layer.name), layer=layer.name),
                    hint="Caffe would leave them as the filler makes them; is this the right caffemodel?",
                )
            )
    if unused_without_blobs:
        notes.append(
            Diagnostic(
                "note",
                f"{unused_without_blobs} caffemodel layers without weights are not in the prototxt (data, loss...)",
                Location(model.path),
            )
        )
    if model.dropped_diffs:
        notes.append(
            Diagnostic(
                "note",
                f"{model.dropped_diffs} blobs also stored gradients (diff); those are not kept",
                Location(model.path),
            )
        )
    return weights, notes


def _names(names: list[str], shown: int = 3) -> str:
    text = ", ".join(f"'{name}'" for name in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")
