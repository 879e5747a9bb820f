"""InnerProduct -> Convolution for Caffe nets: the plan.

``plan_caffe_rewrite`` decides, layer by layer, on a structural copy of the net (no weights):
each InnerProduct over an (N, C, H, W) blob becomes an H x W convolution; over (N, K), a 1 x 1
convolution (after a Reshape to (N, K, 1, 1) when nothing upstream is 4-D). A Flatten feeding an
FC is folded into the kernel when nothing else needs its output. Shapes are inferred again after
each decision, so the FCs after a rewritten one see its 4-D output. :mod:`proto_rewrite.caffe.apply`
executes the plan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from proto_rewrite.caffe.fcn_check import check_fcn
from proto_rewrite.caffe.model import CaffeModel
from proto_rewrite.caffe.net_edit import (
    apply_edit,
    convert_layer,
    copy_net,
    find,
    in_place_on,
    input_blobs,
    input_layer_shapes,
    last_in_place,
    net_outputs,
    net_up_to,
    producer,
    source_shapes,
)
from proto_rewrite.caffe.shapes import infer_shapes
from proto_rewrite.errors import (
    NetStructureError,
    RewriteCheckError,
    RewriteRefused,
    UsageError,
    WeightShapeError,
)
from proto_rewrite.fc_math import fc_weight_to_kernel
from proto_rewrite.fingerprint import caffe_fingerprint
from proto_rewrite.rewrite_plan import (
    EXACT,
    FCN,
    MODES,
    POOL_SCORES,
    REASON_TEXT,
    FcRewrite,
    GraphEdit,
    Reason,
    RewritePlan,
    Selection,
    Skip,
    WeightChange,
)

# Layers that compute element by element, whatever the blob's shape: they may sit between a
# Flatten and an FC (in place) and keep working on the 4-D map once the Flatten is gone.
ELEMENTWISE = frozenset("ReLU Dropout Sigmoid TanH AbsVal Power Exp Log BNLL ELU Threshold Clip Swish ReLU6".split())
FLATTENING = frozenset(("Flatten", "Reshape"))


@dataclass
class CaffeRewriteOptions:
    mode: str = FCN
    selection: Selection = field(default_factory=Selection)
    rename_suffix: str | None = None  # "-conv": fc6 -> fc6-conv (layer and top blob)
    input_size: tuple[int, int] | None = None  # new H, W of the deploy input
    input_shapes: dict[str, tuple[int, ...]] | None = None  # shape-inference overrides
    pool_scores: str | None = None  # plan.POOL_SCORES: pool each score map back to (N, K)

    def to_dict(self) -> dict:
        return {
            "selection": self.selection.to_dict(),
            "rename_suffix": self.rename_suffix,
            "input_size": None if self.input_size is None else list(self.input_size),
            "input_shapes": None
            if self.input_shapes is None
            else {name: list(shape) for name, shape in self.input_shapes.items()},
            "pool_scores": self.pool_scores,
        }

    @classmethod
    def from_plan(cls, plan: RewritePlan, selection: Selection | None = None) -> CaffeRewriteOptions:
        data = plan.options
        shapes = data.get("input_shapes")
        return cls(
            mode=plan.mode,
            selection=selection or Selection.from_dict(data.get("selection")),
            rename_suffix=data.get("rename_suffix"),
            input_size=None if data.get("input_size") is None else tuple(data["input_size"]),
            input_shapes=None if shapes is None else {k: tuple(v) for k, v in shapes.items()},
            pool_scores=data.get("pool_scores"),
        )


# ---------------------------------------------------------------------------------------------
# Planning


def plan_caffe_rewrite(model: CaffeModel, options: CaffeRewriteOptions | None = None) -> RewritePlan:
    """What converting ``model`` with ``options`` will change. ``model`` is not modified."""
    options = options or CaffeRewriteOptions()
    if options.mode not in MODES:
        raise ValueError(f"unknown mode {options.mode!r}")
    if options.pool_scores is not None and (options.mode != FCN or options.pool_scores not in POOL_SCORES):
        raise UsageError(
            f"pool_scores {options.pool_scores} needs mode fcn and one of {', '.join(POOL_SCORES)}",
            options=("pool_scores", "mode"),
        )
    work = copy_net(model.net)
    where = {"path": model.prototxt_path, "lines": model.layer_lines}
    shapes = infer_shapes(work, options.input_shapes, **where)
    original_outputs = {blob: shapes.blobs[blob] for blob in net_outputs(work)}
    plan = RewritePlan(
        "caffe",
        model.prototxt_path or "",
        options.mode,
        input_shapes={top: shape for top, shape in source_shapes(work, shapes).items() if top in input_blobs(work)},
    )
    fc_names = [layer.name for layer in work.layer if layer.type == "InnerProduct"]
    options.selection.check_names(fc_names)
    for name in fc_names:
        # Shapes up to this FC only: what follows it may not fit until all rewrites are done.
        decision = _decide(
            work, name, infer_shapes(net_up_to(work, name), options.input_shapes, **where), model, options
        )
        if isinstance(decision, Skip):
            if options.selection.is_explicit(name):
                raise RewriteRefused(
                    f"cannot rewrite: {REASON_TEXT[decision.reason]}"
                    + (f" ({decision.detail})" if decision.detail else ""),
                    reason=decision.reason.value,
                    path=model.prototxt_path,
                    line=model.layer_lines.get(name),
                    layer=name,
                    hint="leave it out of only, or fix what the reason names",
                    options=("only",),
                )
            plan.skips.append(decision)
            continue
        rewrite, edits = decision
        for edit in edits:
            apply_edit(work, edit)
        convert_layer(work, rewrite)
        plan.edits.extend(edits)
        plan.rewrites.append(rewrite)
    rewritten = {rewrite.new_name for rewrite in plan.rewrites}
    for rewrite in plan.rewrites:
        for edit in _output_edits(work, rewrite, options, rewritten):
            apply_edit(work, edit)
            plan.edits.append(edit)
        if options.pool_scores and _is_chain_end(work, rewrite, rewritten):
            for edit in _pool_edits(work, rewrite, options, model):
                apply_edit(work, edit)
                plan.edits.append(edit)
    if options.input_size:
        for edit in _resize_edits(work, options.input_size):
            apply_edit(work, edit)
            plan.edits.append(edit)
    plan.renames = {r.name: r.new_name for r in plan.rewrites if r.new_name != r.name}
    plan.renames.update({e.inputs[0]: e.outputs[0] for e in plan.edits if e.action == "rename"})
    planning = {top: tuple(shape) for top, shape in source_shapes(work, shapes).items() if shape is not None}
    _check_result(work, model, options, original_outputs, plan, planning)
    if options.mode == FCN and (plan.rewrites or options.input_size):
        plan.fcn = check_fcn(
            work,
            planning,
            input_size=options.input_size,
            pooled=bool(options.pool_scores),
            path=model.prototxt_path,
            lines=model.layer_lines,
        )
    plan.options = options.to_dict()
    plan.fingerprint = caffe_fingerprint(model)
    return plan


def _decide(net, name, shapes, model, options) -> tuple[FcRewrite, list[GraphEdit]] | Skip:
    """Rewrite ``name`` (and the edits it needs first), or why not."""
    index, layer = find(net, name)
    if not options.selection.selects(name):
        return Skip(name, "InnerProduct", Reason.NOT_SELECTED)
    param = layer.inner_product_param
    bottom_shape = shapes.bottoms[name][0]
    if bottom_shape is None:
        return Skip(name, "InnerProduct", Reason.INPUT_SHAPE_UNKNOWN, "give it with --input-shape")
    if (param.axis + len(bottom_shape) if param.axis < 0 else param.axis) != 1:
        return Skip(name, "InnerProduct", Reason.UNSUPPORTED_AXIS, f"axis {param.axis}")
    shared = _shared_param_name(net, layer)
    if shared:
        return Skip(name, "InnerProduct", Reason.SHARED_WEIGHTS, f"param name '{shared}'")
    edits: list[GraphEdit] = []
    source = layer.bottom[0]
    if len(bottom_shape) == 2:
        folded = _fold_flatten(net, index, source, shapes, options)
        if folded is not None:
            edits.append(folded)
            source, bottom_shape = folded.inputs[0], shapes.bottoms[folded.name][0]
        else:
            reshape = GraphEdit(
                "insert",
                f"{name}_reshape",
                "Reshape",
                "makes the (N, K) input (N, K, 1, 1) for a 1 x 1 convolution",
                inputs=(source,),
                outputs=(f"{name}_input_4d",),
                after=net.layer[index - 1].name if index else None,
                shape=(0, -1, 1, 1),
                serves=name,
            )
            edits.append(reshape)
            source, bottom_shape = reshape.outputs[0], (*bottom_shape, 1, 1)
    if len(bottom_shape) != 4:
        return Skip(name, "InnerProduct", Reason.UNSUPPORTED_INPUT_RANK, f"input shape {list(bottom_shape)}")
    _, channels, height, width = bottom_shape
    weight_changes = []
    arrays = model.weights.get(name)
    if arrays:
        try:
            kernel = fc_weight_to_kernel(
                arrays[0], param.num_output, channels, height, width, transposed=param.transpose
            )
        except WeightShapeError as err:
            return Skip(name, "InnerProduct", Reason.ELEMENT_COUNT_MISMATCH, err.message)
        weight_changes.append(
            WeightChange(f"{name} blob 0", tuple(arrays[0].shape), tuple(kernel.weight.shape), kernel.transform)
        )
        weight_changes += [
            WeightChange(f"{name} blob {i}", tuple(a.shape), tuple(a.shape), "unchanged")
            for i, a in enumerate(arrays[1:], start=1)
        ]
    new_name = name + (options.rename_suffix or "")
    rewrite = FcRewrite(
        name,
        new_name,
        "InnerProduct",
        "Convolution",
        source,
        tuple(bottom_shape),
        (height, width),
        channels,
        param.num_output,
        tuple(weight_changes),
    )
    return rewrite, edits


def _shared_param_name(net, layer) -> str | None:
    """A ``param { name }`` of ``layer`` that another layer also uses (shared weights)."""
    names = {spec.name for spec in layer.param if spec.name}
    for other in net.layer:
        if other.name != layer.name:
            for spec in other.param:
                if spec.name in names:
                    return spec.name
    return None


def _fold_flatten(net, fc_index, blob, shapes, options) -> GraphEdit | None:
    """The edit removing the Flatten (or flattening Reshape) that makes ``blob``, when the FC can
    read the 4-D map directly and nothing else needs the flat blob; else None."""
    producer_index = producer(net, fc_index, blob)
    if producer_index is None:
        return None
    flatten = net.layer[producer_index]
    if flatten.type not in FLATTENING or len(flatten.bottom) != 1:
        return None
    source = flatten.bottom[0]
    source_shape, flat_shape = shapes.bottoms[flatten.name][0], shapes.tops[flatten.name][0]
    if (
        source_shape is None
        or flat_shape is None
        or len(source_shape) != 4
        or tuple(flat_shape) != (source_shape[0], math.prod(source_shape[1:]))
    ):
        return None
    in_place = False
    for later in net.layer[producer_index + 1 :]:
        if blob not in later.bottom and blob not in later.top:
            continue
        if (
            later.type == "InnerProduct"
            and options.selection.selects(later.name)
            and later.inner_product_param.axis == 1
            and blob not in later.top
        ):
            continue
        if later.type in ELEMENTWISE and list(later.bottom) == [blob] and list(later.top) == [blob]:
            in_place = True
            continue
        return None
    if in_place and any(source in later.bottom for later in net.layer[producer_index + 1 :]):
        return None  # the in-place layers would then modify a blob that other layers read
    return GraphEdit(
        "remove",
        flatten.name,
        flatten.type,
        "folded into the convolution kernel",
        inputs=(source,),
        outputs=(blob,),
        serves=net.layer[fc_index].name,
    )


def _output_edits(net, rewrite: FcRewrite, options, rewritten: set[str]) -> list[GraphEdit]:
    """Renames of the rewritten layer's top (``--rename``) and, in exact mode, the Flatten that
    gives its other consumers and the net outputs the original (N, M) blob back."""
    index, layer = find(net, rewrite.new_name)
    top = layer.top[0]
    last = last_in_place(net, index, top)
    followers = [net.layer[i].name for i in range(index + 1, last + 1) if in_place_on(net.layer[i], top)]
    consumers = [later.name for later in net.layer[last + 1 :] if top in later.bottom]
    others = [name for name in consumers if name not in rewritten]
    needs_flat = options.mode == EXACT and (bool(others) or not consumers)
    new_top = top + options.rename_suffix if options.rename_suffix else (f"{top}_map" if needs_flat else None)
    edits = []
    if new_top:
        readers = [name for name in consumers if name in rewritten] if needs_flat else consumers
        edits.append(
            GraphEdit(
                "rename",
                top,
                "blob",
                f"output of {rewrite.new_name}",
                inputs=(top,),
                outputs=(new_top,),
                layers=(rewrite.new_name, *followers, *readers),
            )
        )
    if needs_flat:
        edits.append(
            GraphEdit(
                "insert",
                f"{rewrite.new_name}_flatten",
                "Flatten",
                "gives the consumers and net outputs their original (N, M) blob (exact mode)",
                inputs=(new_top,),
                outputs=(top,),
                after=net.layer[last].name,
            )
        )
    return edits


def _is_chain_end(net, rewrite: FcRewrite, rewritten: set[str]) -> bool:
    """No rewritten FC reads this one's output: its score map is what the net gives out."""
    index, layer = find(net, rewrite.new_name)
    top = layer.top[0]
    return not any(top in later.bottom and later.name in rewritten for later in net.layer[index + 1 :])


def _pool_edits(net, rewrite: FcRewrite, options, model) -> list[GraphEdit]:
    """--pool-scores: global pooling of the score map, then a Flatten back to the original
    (N, K) blob, so every consumer and net output keeps its shape at other input sizes too (the fcn
    check re-infers the shapes to confirm it). avg / max:
    pool the scores (before a final Softmax); probs-avg: pool the per-cell probabilities (after
    the Softmax that follows the FC)."""
    index, layer = find(net, rewrite.new_name)
    blob = layer.top[0]
    if options.pool_scores == "probs-avg":
        last = last_in_place(net, index, blob)
        softmax = [(i, later) for i, later in enumerate(net.layer) if i > last and blob in later.bottom]
        if len(softmax) != 1 or softmax[0][1].type != "Softmax" or softmax[0][1].softmax_param.axis != 1:
            raise UsageError(
                f"pool_scores probs-avg needs a Softmax (axis 1) as the only reader of {rewrite.new_name}'s output",
                hint="use pool_scores avg to pool the scores instead",
                options=("pool_scores",),
            )
        index, layer = softmax[0]
        blob = layer.top[0]
    last = last_in_place(net, index, blob)
    followers = tuple(net.layer[i].name for i in range(index + 1, last + 1) if in_place_on(net.layer[i], blob))
    method = "max" if options.pool_scores == "max" else "avg"
    mapped, pooled = f"{blob}_map", f"{blob}_pooled"
    return [
        GraphEdit(
            "rename",
            blob,
            "blob",
            "the score map before pooling",
            inputs=(blob,),
            outputs=(mapped,),
            layers=(layer.name, *followers),
        ),
        GraphEdit(
            "insert",
            f"{blob}_pool",
            "Pooling",
            f"global {method} pooling of the score map (--pool-scores)",
            inputs=(mapped,),
            outputs=(pooled,),
            after=net.layer[last].name,
            method=method,
        ),
        GraphEdit(
            "insert",
            f"{blob}_pool_flatten",
            "Flatten",
            "gives the pooled scores their original (N, K) shape",
            inputs=(pooled,),
            outputs=(blob,),
            after=f"{blob}_pool",
        ),
    ]


def _resize_edits(net, size) -> list[GraphEdit]:
    edits = []
    for layer in net.layer:
        if layer.type != "Input":
            continue
        for top, shape in zip(layer.top, input_layer_shapes(layer)):
            if shape is not None and len(shape) == 4:
                edits.append(
                    GraphEdit(
                        "resize-input",
                        top,
                        "Input",
                        f"deploy input size {size[0]} x {size[1]}",
                        inputs=(layer.name,),
                        shape=(shape[0], shape[1], *size),
                    )
                )
    return edits


def _check_result(net, model, options, original_outputs, plan, planning) -> None:
    """Shape inference must go through on the rewritten net at the planning input size, with
    outputs of the expected shapes; in exact mode, also at --input-size (fcn mode: check_fcn)."""
    if not plan.changes_anything:
        return
    shapes = _infer_rewritten(net, model, planning)
    if options.input_size and options.mode == EXACT:
        _infer_rewritten(net, model, options.input_shapes)
    for blob, before in original_outputs.items():
        after = shapes.blobs.get(blob, shapes.blobs.get(plan.renames.get(blob)))
        if before is None or after is None:
            continue
        padded = (*before, *(1,) * (len(after) - len(before)))
        if tuple(after) != tuple(before) and not (options.mode == FCN and tuple(after) == padded):
            raise RewriteCheckError(
                f"net output '{blob}' changes shape from {list(before)} to {list(after)}",
                path=model.prototxt_path,
                hint="a layer between the FCs and this output does not keep working on the 4-D map; try mode exact",
                options=("mode",),
            )


def _infer_rewritten(net, model, input_shapes):
    try:
        return infer_shapes(net, input_shapes, path=model.prototxt_path)
    except NetStructureError as err:
        raise RewriteCheckError(
            f"the rewritten net is inconsistent: {err.message}",
            path=model.prototxt_path,
            layer=err.location.layer,
            hint="a layer after the rewritten FCs needs their 2-D output: try mode exact, or exclude the FC",
            options=("mode", "exclude"),
        ) from err
