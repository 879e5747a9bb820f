"""A Caffe model in memory: the net (V2, upgraded, filtered to one phase) and its weights.

``load_caffe`` is the one entry point for reading (prototxt + optional caffemodel) and
``save_caffe`` for writing; everything else in the package works on :class:`CaffeModel`.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from proto_rewrite.caffe.caffemodel import read_caffemodel, write_caffemodel
from proto_rewrite.caffe.known_layers import KNOWN_LAYER_TYPES
from proto_rewrite.caffe.phase import PHASES, filter_layers
from proto_rewrite.caffe.prototxt import format_net_text, layer_block_lines, parse_net_text, read_prototxt
from proto_rewrite.caffe.schema import CaffeSchema, resolve_schema
from proto_rewrite.caffe.shapes import NetShapes, infer_shapes
from proto_rewrite.caffe.structure import check_structure
from proto_rewrite.caffe.upgrade import detect_format, upgrade_net
from proto_rewrite.caffe.weights import attach_weights
from proto_rewrite.diagnostics import Diagnostic
from proto_rewrite.errors import (
    InputFileError,
    Location,
    ProtoRewriteError,
    UnknownLayerTypeError,
    UsageError,
)
from proto_rewrite.filecopy import WriteReport
from proto_rewrite.fileio import OutputFiles

AUTO = "auto"  # weights: use <stem>.caffemodel beside the prototxt when it exists


@dataclass
class CaffeModel:
    net: object  # caffe.NetParameter, V2, no blobs inside
    weights: dict[str, list[np.ndarray]] = field(default_factory=dict)
    prototxt_path: str | None = None
    weights_path: str | None = None
    source_format: str = "V2"
    upgrades: list[str] = field(default_factory=list)
    excluded_layers: list[str] = field(default_factory=list)
    layer_lines: dict[str, int] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    shapes: NetShapes | None = None  # blob shapes at the declared (or overridden) input shapes
    input_shapes: dict | None = None  # the overrides it was loaded with (None: the declared shapes)

    def layer(self, name: str):
        for layer in self.net.layer:
            if layer.name == name:
                return layer
        raise KeyError(name)


def default_weights_path(prototxt: str | os.PathLike) -> Path | None:
    """``<stem>.caffemodel`` beside the prototxt, when it exists."""
    candidate = Path(prototxt).with_suffix(".caffemodel")
    return candidate if candidate.is_file() else None


def load_caffe(
    prototxt: str | os.PathLike,
    weights: str | os.PathLike | None = AUTO,
    *,
    phase: str = "TEST",
    strict: bool = False,
    input_shapes=None,
    schema: CaffeSchema | str | os.PathLike | None = None,
) -> CaffeModel:
    """Load a prototxt of any generation (upgraded to V2 in memory) and, optionally, weights.

    ``weights``: a caffemodel path, None for none, or ``AUTO`` for the same-stem rule.
    ``strict``: unknown layer types are errors instead of warnings.
    ``input_shapes``: input name -> shape, replacing the declared shapes for shape inference.
    ``schema``: the Caffe schema to read with: a :class:`~proto_rewrite.caffe.schema.CaffeSchema`,
    the path of a fork's compiled schema, or None for the bundled one.
    Blob shapes are inferred (``model.shapes``), and the weights are checked against them.
    """
    if phase not in PHASES:
        raise UsageError(f"unknown phase '{phase}'", hint=f"use one of {', '.join(PHASES)}")
    path = os.fspath(prototxt)
    if str(path).endswith(".caffemodel"):
        raise InputFileError(
            "a .caffemodel was given as the model",
            path=path,
            hint="pass the .prototxt as the model and the .caffemodel with weights",
            options=("weights",),
        )
    schema = resolve_schema(schema)
    text = read_prototxt(path)  # a pipe, a device or an oversized file is refused first
    raw = parse_net_text(text, path, schema)
    lines = _layer_lines(raw, text)
    source_format = detect_format(raw)
    try:
        upgrades = upgrade_net(raw)
    except ProtoRewriteError as err:
        if err.location.path is None:
            err.location = dataclasses.replace(err.location, path=path, line=lines.get(err.location.layer))
        raise
    excluded = filter_layers(raw, phase, path=path)
    check_structure(raw, path, lines)
    model = CaffeModel(
        raw,
        prototxt_path=path,
        source_format=source_format,
        upgrades=upgrades,
        excluded_layers=excluded,
        layer_lines=lines,
    )
    type_notes = _check_layer_types(model, strict)
    model.input_shapes = {name: list(dims) for name, dims in input_shapes.items()} if input_shapes else None
    model.shapes = infer_shapes(raw, input_shapes, path=path, lines=lines)
    warned = {note.location.layer for note in type_notes}
    model.diagnostics += type_notes + [d for d in model.shapes.diagnostics if d.location.layer not in warned]
    weights_path = default_weights_path(path) if weights == AUTO else weights
    if weights_path is not None:
        stored = read_caffemodel(weights_path, schema)
        model.weights, notes = attach_weights(
            raw, stored, prototxt_path=path, lines=lines, bottom_shapes=model.shapes.bottoms
        )
        model.weights_path = os.fspath(weights_path)
        model.diagnostics.extend(notes)
    return model


def _layer_lines(raw, text: str) -> dict[str, int]:
    blocks = layer_block_lines(text)
    names = [layer.name for layer in raw.layer] + [layer.name or layer.layer.name for layer in raw.layers]
    return {name: line for name, (_, line) in zip(names, blocks) if name}


def _check_layer_types(model: CaffeModel, strict: bool) -> list[Diagnostic]:
    notes = []
    for layer in model.net.layer:
        line = model.layer_lines.get(layer.name)
        if layer.type == "Python":
            notes.append(
                Diagnostic(
                    "warning",
                    "Python layer: proto-rewrite never imports its module; its output shapes, and the ones computed from them, are unknown",
                    _loc(model, layer.name, line),
                )
            )
        elif layer.type not in KNOWN_LAYER_TYPES:
            hint = _type_hint(layer.type)
            if strict:
                raise UnknownLayerTypeError(
                    f"unknown layer type '{layer.type}'",
                    path=model.prototxt_path,
                    line=line,
                    layer=layer.name,
                    hint=hint,
                )
            notes.append(
                Diagnostic(
                    "warning",
                    f"unknown layer type '{layer.type}': its output shapes, and the ones "
                    "computed from them, are unknown",
                    _loc(model, layer.name, line),
                    hint,
                )
            )
    return notes


def _loc(model, name, line):
    return Location(model.prototxt_path, line, layer=name)


def _type_hint(type_name: str) -> str:
    close = difflib.get_close_matches(type_name, list(KNOWN_LAYER_TYPES), n=1, cutoff=0.75)
    by_case = [known for known in KNOWN_LAYER_TYPES if known.lower() == type_name.lower()]
    if by_case or close:
        return f"did you mean '{(by_case or close)[0]}'? Layer types are case-sensitive"
    return (
        "neither BVLC Caffe nor the forks proto-rewrite knows define it (see schemas/README.md); "
        "proto-rewrite keeps it as it is, but cannot compute what it does"
    )


def refuse_own_files(model: CaffeModel, output, hint: str) -> None:
    """A :class:`UsageError` when ``output`` is the model's prototxt or its caffemodel (inputs)."""
    for source, what in ((model.prototxt_path, "the model itself"), (model.weights_path, "the model's weights file")):
        if source and os.path.exists(output) and os.path.samefile(output, source):
            raise UsageError(f"the output is {what}, an input", path=output, hint=hint)


def save_caffe(
    model: CaffeModel,
    prototxt_out: str | os.PathLike,
    weights_out: str | os.PathLike | None = None,
    *,
    streaming: bool | None = None,
) -> WriteReport | None:
    """Write the V2 prototxt and, when ``weights_out`` is given, the caffemodel; both or neither.

    The caffemodel is written streaming (weights that are views of the input caffemodel are
    copied file to file) unless ``streaming`` is False or the weights were read into memory;
    see :func:`~proto_rewrite.caffe.caffemodel.write_caffemodel`. Returns how the caffemodel was
    written (None without one).
    """
    text = format_net_text(model.net)
    report = None
    with OutputFiles() as outputs:
        if weights_out is not None:
            report = write_caffemodel(weights_out, model.net, model.weights, outputs, streaming=streaming)
        with outputs.open(prototxt_out, "w") as handle:
            handle.write(text)
    return report
