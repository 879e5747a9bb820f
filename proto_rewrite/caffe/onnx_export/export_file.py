"""Export a loaded Caffe net to an ONNX file: what ``proto-rewrite export`` does, as a call.

The weights go from the caffemodel's memory map to the file (:meth:`OnnxExport.write`). A net
without weights whose layers have learnable blobs gets random weights (``seed``), drawn one layer
at a time into a temporary caffemodel that is mapped and deleted, and the model records it in its
metadata (``weights``: "random ... NOT a trained model"); :attr:`ExportResult.random_weights`
says so, for the caller to say it loudly.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from proto_rewrite.caffe.onnx_export.exporter import build_onnx

RANDOM_WEIGHTS_NOTE = "random (init-weights, seed {seed}): NOT a trained model"


@dataclass
class ExportResult:
    """What was written: the files, the model's structure (its proto, tensors without data), and
    whether its weights are random."""

    proto: onnx.ModelProto
    written: list[Path]
    prototxt_path: str | None
    weights_path: str | None
    random_weights: str | None = None  # the metadata note, when the weights are random
    diagnostics: list = field(default_factory=list)

    def to_dict(self) -> dict:
        """The summary ``proto-rewrite export --format json`` prints."""
        proto = self.proto
        parameters = 0
        for tensor in proto.graph.initializer:
            count = 1
            for dim in tensor.dims:
                count *= dim
            parameters += count
        return {
            "model": self.prototxt_path,
            "weights": self.random_weights or self.weights_path,
            "output": os.fspath(self.written[0]),
            "external_data": os.fspath(self.written[1]) if len(self.written) > 1 else None,
            "opset": proto.opset_import[0].version,
            "ir_version": proto.ir_version,
            "nodes": len(proto.graph.node),
            "initializers": len(proto.graph.initializer),
            "parameters": parameters,
            "inputs": [{"name": v.name, "shape": _dims(v)} for v in proto.graph.input],
            "outputs": [{"name": v.name, "shape": _dims(v)} for v in proto.graph.output],
        }

    def render_text(self) -> str:
        summary = self.to_dict()

        def shape(dims):
            return "x".join("?" if d is None else str(d) for d in dims)

        lines = [
            f"wrote {summary['output']}"
            + (f" (+ {summary['external_data']})" if summary["external_data"] else "")
            + f": ONNX opset {summary['opset']}, {summary['nodes']} nodes, {summary['parameters']:,} parameters",
            f"weights: {summary['weights']}",
        ]
        lines += [f"input  {v['name']}: {shape(v['shape'])}" for v in summary["inputs"]]
        lines += [f"output {v['name']}: {shape(v['shape'])}" for v in summary["outputs"]]
        return "\n".join(lines) + "\n"


def export_file(
    model,
    output: str | os.PathLike,
    *,
    opset: int | None = None,
    dynamic_batch: bool = False,
    dynamic_size: bool = False,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
    allow_nonfinite: bool = False,
) -> ExportResult:
    """Write ``model`` (a :class:`~proto_rewrite.caffe.model.CaffeModel`) to ``output`` as ONNX
    (over 2 GB with ``output.data`` beside it), atomically. ``input_shapes``: input name -> dims,
    replacing the declared shapes (default: the ones the model was loaded at). Weights holding
    NaN or Inf are refused unless ``allow_nonfinite``; a net without weights gets random ones drawn
    with ``seed`` (in a copy: ``model`` itself keeps its empty weights)."""
    from proto_rewrite.caffe.init_weights import check_seed
    from proto_rewrite.caffe.model import refuse_own_files

    check_seed(seed)
    refuse_own_files(model, output, hint="write the ONNX model to a .onnx file")
    if input_shapes is None:
        input_shapes = model.input_shapes
    if not allow_nonfinite:
        from proto_rewrite.nonfinite import check_caffe_weights

        check_caffe_weights(model)
    random_note = None
    if not model.weights and _has_learnable_blobs(model):
        model = dataclasses.replace(model, weights={})
        _fill_random_weights(model, input_shapes, seed)
        random_note = RANDOM_WEIGHTS_NOTE.format(seed=seed)
    exported = build_onnx(
        model, opset=opset, dynamic_batch=dynamic_batch, dynamic_size=dynamic_size, input_shapes=input_shapes
    )
    if random_note:
        entry = exported.proto.metadata_props.add()
        entry.key, entry.value = "weights", random_note
    written = exported.write(output)  # the weights go from the caffemodel's memory to the file
    return ExportResult(exported.proto, written, model.prototxt_path, model.weights_path, random_note)


def _has_learnable_blobs(model) -> bool:
    from proto_rewrite.caffe.blob_shapes import expected_blobs

    return any(expected_blobs(layer) for layer in model.net.layer)


def _fill_random_weights(model, input_shapes, seed: int) -> None:
    """Random weights for ``model``, checked against the limits before any is drawn, then drawn
    and written one layer at a time to a temporary caffemodel that is mapped and deleted: the
    export streams them from that mapping as it streams a real caffemodel's, so no more than one
    layer's weights are ever in this process's own memory."""
    from proto_rewrite.caffe.caffemodel import read_caffemodel, write_caffemodel
    from proto_rewrite.caffe.init_weights import lazy_random_weights, random_weights
    from proto_rewrite.caffe.schema import schema_of
    from proto_rewrite.caffe.shapes import infer_shapes
    from proto_rewrite.caffe.weights import attach_weights

    shapes = infer_shapes(model.net, input_shapes or None, path=model.prototxt_path, lines=model.layer_lines)
    where = {"path": model.prototxt_path, "lines": model.layer_lines}
    if os.name != "posix":  # a mapped file cannot be deleted there: drawn in memory, within the limits
        model.weights = random_weights(model.net, shapes, seed, **where)
        return
    weights = lazy_random_weights(model.net, shapes, seed, **where)
    with tempfile.TemporaryDirectory(prefix="proto-rewrite-random-") as folder:
        scratch = os.path.join(folder, "random.caffemodel")
        write_caffemodel(scratch, model.net, weights)
        stored = read_caffemodel(scratch, schema_of(model.net))  # mapped: the mapping outlives the file
    model.weights, _ = attach_weights(
        model.net, stored, prototxt_path=model.prototxt_path, lines=model.layer_lines, bottom_shapes=shapes.bottoms
    )


def _dims(value_info) -> list:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]
