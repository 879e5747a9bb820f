"""Checks that a V2 net is a well-formed graph: unique layer names, every bottom produced
earlier, no top produced twice except in place. Caffe's Net::Init enforces the same."""

from __future__ import annotations

from proto_rewrite.errors import NetStructureError


def check_structure(net, path=None, lines: dict[str, int] | None = None) -> None:
    lines = lines or {}
    if not net.layer:
        raise NetStructureError(
            "the net has no layers (and no inputs)",
            path=path,
            hint="is this the right file? A prototxt lists its layers in 'layer { ... }' blocks",
        )
    produced: dict[str, str] = {}
    names: set[str] = set()
    for layer in net.layer:
        where = {"path": path, "line": lines.get(layer.name), "layer": layer.name}
        if not layer.name:
            raise NetStructureError("a layer has no name", path=path, hint="give every layer a unique 'name'")
        if layer.name in names:
            raise NetStructureError(
                f"layer name '{layer.name}' is used twice",
                **where,
                hint="layer names identify weights; make them unique",
            )
        names.add(layer.name)
        for bottom in layer.bottom:
            if bottom not in produced:
                raise NetStructureError(
                    f"bottom '{bottom}' is not produced by any earlier layer or input",
                    **where,
                    hint="check the spelling, or move the layer that produces it before this one",
                )
        for top in layer.top:
            if top in produced and top not in layer.bottom:
                raise NetStructureError(
                    f"top '{top}' is already produced by layer '{produced[top]}'",
                    **where,
                    hint="only an in-place layer (top equal to its bottom) may reuse a blob name",
                )
            produced[top] = layer.name
