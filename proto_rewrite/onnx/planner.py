"""Decide the whole ONNX rewrite: which FCs become Convs, what is removed, inserted and renamed.

One forward pass over the nodes, in graph order: each FC is matched (``patterns``) or skipped
with a reason; the tensors an accepted FC writes become 4-D maps, and so do the outputs of the
nodes that carry them (``layout``: one rule per operator, with the changes it needs). A node
without a rule (or a graph output in exact mode) gets a Flatten in front of it. Nodes left with no reader (the Flatten, the Reshape
and its shape chain, an NHWC Transpose) are removed. With ``pool_scores`` (``pooling``), each
chain's last FC is pooled back to (N, K), so what follows it stays as it was.

The result is a :class:`Program`: the format-neutral :class:`~proto_rewrite.rewrite_plan.RewritePlan`
plus the node-level details ``build`` needs to execute it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from onnx import helper

from proto_rewrite.errors import RewriteRefused, UsageError
from proto_rewrite.onnx.graph import GraphView, attribute
from proto_rewrite.onnx.layout import Carry, Stop, carry
from proto_rewrite.onnx.patterns import (
    CHAIN,
    MAP,
    POOLED,
    VECTOR,
    Failure,
    FcMatch,
    fail,
    fc_kind,
    match_fc,
    op_label,
)
from proto_rewrite.onnx.pooling import (
    check_request,
    place_pools,
    pool_heads,
    pooled_tensors,
)
from proto_rewrite.onnx.weights import (
    bias_tensor,
    bias_transform,
    copy_tensor,
    int64_tensor,
    kernel_tensor,
    kernel_transform,
    reshaped_tensor,
)
from proto_rewrite.rewrite_plan import (
    EXACT,
    FCN,
    MODES,
    FcRewrite,
    GraphEdit,
    Reason,
    RewritePlan,
    Selection,
    Skip,
    WeightChange,
)

HINTS = {
    Reason.NOT_SELECTED: "it is excluded by the selection; name it in only and not in exclude",
    Reason.INPUT_SHAPE_UNKNOWN: "give the input's shape (N, C, H, W) in input_shapes",
    Reason.UNSUPPORTED_AXIS: "only a flatten from axis 1 of an (N, C, H, W) map has an equivalent Conv",
    Reason.UNSUPPORTED_INPUT_RANK: "only (N, C, H, W) maps and (N, K) vectors are rewritten",
    Reason.NO_WEIGHTS: "the model lacks its weights",
    Reason.SHARED_WEIGHTS: "the weight is used by other nodes too; changing its shape would break them",
    Reason.ELEMENT_COUNT_MISMATCH: "the weight does not fit the input's C*H*W; check the input size",
    Reason.TRANS_A: "a Gemm with transA=1 reads its input transposed; it has no Conv equivalent",
    Reason.WEIGHT_NOT_CONSTANT: "only FCs whose weight and bias are constants are rewritten (initializers, Constant "
    "nodes, or Reshape / Transpose / Squeeze / Unsqueeze / Cast / Add / Mul... of them)",
    Reason.BATCHED_BIAS: "a bias that differs per batch row has no Conv equivalent",
    Reason.MATMUL_ND: "only MatMul on 2-D inputs is an FC layer",
    Reason.QUANTIZED: "rewrite the float model, then quantize it",
    Reason.UNSUPPORTED_FLATTEN: "only a Reshape to (N, C*H*W) (or (N, -1)) flattens a map the way a Conv sees it",
    Reason.UNSUPPORTED_LAYOUT: "only an NCHW map, or one transposed to NHWC, is rewritten",
}
# The options a hint names (the other hints use "only" as a word).
HINT_OPTIONS = {Reason.NOT_SELECTED: ("only", "exclude"), Reason.INPUT_SHAPE_UNKNOWN: ("input_shapes",)}


@dataclass
class ConvStep:
    match: FcMatch
    name: str
    input: str
    output: str
    weight_name: str
    bias_name: str | None


@dataclass
class Program:
    """The plan, and the node-level edits that carry it out."""

    plan: RewritePlan
    view: GraphView
    convs: list[ConvStep] = field(default_factory=list)
    removed: set[int] = field(default_factory=set)  # nodes dropped (the FCs themselves are replaced)
    inserted: list[tuple[float, object]] = field(default_factory=list)  # (position, NodeProto)
    input_renames: dict[tuple[int, int], str] = field(default_factory=dict)
    output_renames: dict[tuple[int, int], str] = field(default_factory=dict)
    moved_pools: dict[int, tuple[str, str]] = field(default_factory=dict)  # node -> (new input, new output)
    new_tensors: dict[str, object] = field(default_factory=dict)  # name -> DerivedTensor (new or replacing)
    removed_initializers: list[str] = field(default_factory=list)
    # input -> ((position of H, its dim_param), (position of W, its dim_param))
    resized_inputs: dict[str, tuple[tuple[int, str], tuple[int, str]]] = field(default_factory=dict)
    map_outputs: list[str] = field(default_factory=list)  # graph outputs that become (N, M, h, w)
    # other 4-D graph outputs below a resized input (a segmentation branch): their declared H, W go
    relaxed_outputs: list[str] = field(default_factory=list)
    node_updates: dict[int, dict] = field(default_factory=dict)  # node -> {"attrs", "inputs", "op_type"}
    region_stops: dict[int, Stop] = field(default_factory=dict)  # nodes a score map cannot pass, and why

    @property
    def replaced(self) -> dict[int, ConvStep]:
        return {step.match.index: step for step in self.convs}

    @property
    def folded(self) -> set[int]:
        return {step.match.add for step in self.convs if step.match.add is not None}


class _Names:
    """Fresh, predictable names: the wanted one, else with _2, _3... appended."""

    def __init__(self, view: GraphView) -> None:
        self.tensors = set(view.initializers) | set(view.graph_inputs) | set(view.outputs)
        self.nodes = set()
        for node in view.nodes:
            self.tensors.update(node.output)
            self.tensors.update(node.input)
            self.nodes.add(node.name)

    def _fresh(self, taken: set, wanted: str) -> str:
        name, count = wanted, 1
        while name in taken:
            count += 1
            name = f"{wanted}_{count}"
        taken.add(name)
        return name

    def tensor(self, wanted: str) -> str:
        return self._fresh(self.tensors, wanted)

    def node(self, wanted: str) -> str:
        return self._fresh(self.nodes, wanted)


@dataclass(frozen=True)
class OnnxRewriteOptions:
    """What shapes an ONNX rewrite plan: the keyword arguments of
    :func:`~proto_rewrite.onnx.rewrite.plan_onnx_rewrite`."""

    selection: Selection | None = None  # None: every FC
    mode: str = FCN
    classifier_before_pool: bool = False
    input_shapes: dict | None = None  # {input name: dims} fixing symbolic dimensions
    pool_scores: str | None = None  # fcn mode: "avg", "max" or "probs-avg"


def build_program(
    model,
    options: OnnxRewriteOptions,
    *,
    resize_inputs: bool = True,
    map_outputs: bool = True,
    view: GraphView | None = None,
) -> Program:
    """The plan and its node-level edits. fcn mode: ``resize_inputs`` makes the spatial input dims
    symbolic; ``map_outputs`` lets graph outputs become score maps (False: they keep (N, K), as in
    exact mode). Both are what the fcn proof (``fcn_proof``) settles."""
    mode, classifier_before_pool, pool_scores = options.mode, options.classifier_before_pool, options.pool_scores
    input_shapes, selection = options.input_shapes, options.selection or Selection()
    if mode not in MODES:
        raise UsageError(f"unknown mode '{mode}'", hint=f"use one of {', '.join(MODES)}")
    check_request(pool_scores, mode)
    view = view or GraphView(model, input_shapes)
    keep_outputs = mode == EXACT or not map_outputs
    kinds = {i: kind for i, node in enumerate(view.nodes) if (kind := fc_kind(view, node))}
    selection.check_names([view.key(i) for i in kinds])
    plan = RewritePlan("onnx", model.path or "", mode, input_shapes=_planned_inputs(view))
    plan.options = {
        "selection": selection.to_dict(),
        "classifier_before_pool": classifier_before_pool,
        "pool_scores": pool_scores,
        "resize_inputs": resize_inputs and mode == FCN,
        "map_outputs": not keep_outputs,
    }
    program = Program(plan, view)
    names = _Names(view)

    mapped: dict[str, str] = {}  # tensor -> the Conv it descends from (now a 4-D map)
    matches: list[FcMatch] = []
    needs_2d: list[tuple[str, int | None, int | None]] = []  # (tensor, reader, input position)
    taken: set[int] = set()
    carries: dict[int, Carry] = {}  # nodes that work on the maps they read, after these changes
    aliases: dict[str, str] = {}  # the output of a dropped Flatten / Reshape -> the map it restored
    for index, node in enumerate(view.nodes):
        if index in taken:
            continue
        if index in kinds:
            key = view.key(index)
            if not selection.selects(key):
                result = fail(Reason.NOT_SELECTED)
            elif kinds[index] == "quantized":
                result = fail(Reason.QUANTIZED, f"{op_label(view, index)} is a quantized operator")
            else:
                result = match_fc(view, index, mapped, classifier_before_pool=classifier_before_pool, taken=taken)
            if isinstance(result, Failure):
                _skip(plan, view, index, result, selection, model.path)
                needs_2d += [(name, index, pos) for pos, name in enumerate(node.input) if name in mapped]
                continue
            matches.append(result)
            if result.add is not None:
                taken.add(result.add)
            mapped[result.output] = key
            continue
        read = [(pos, name) for pos, name in enumerate(node.input) if name in mapped]
        if not read:
            continue
        origin = mapped[read[0][1]]
        rule = carry(view, index, mapped)
        if isinstance(rule, Stop):
            program.region_stops[index] = rule
            needs_2d += [(name, index, pos) for pos, name in read]
            continue
        if rule.alias:
            output = node.output[0]
            if view.is_graph_output(output) or any(pos == -1 for _, pos in view.uses(output)):
                if keep_outputs:
                    continue  # it restores (N, K) itself
                rule = Carry(what="the map passes through unchanged (an Identity instead)")
                program.node_updates[index] = {"op_type": "Identity"}
            else:
                aliases[output] = read[0][1]
        carries[index] = rule
        for name in node.output:
            if name:
                mapped[name] = origin
    for name in mapped:
        needs_2d += [(name, reader, -1) for reader, pos in view.uses(name) if pos == -1]
        if view.is_graph_output(name):
            needs_2d.append((name, None, None))
    if classifier_before_pool and not any(m.kind == POOLED for m in matches):
        plan.notes.append(
            "--classifier-before-pool changed nothing: no FC reads the global average pool of a map "
            "(GlobalAveragePool, ReduceMean over H and W, or an AveragePool over the whole map) that "
            "nothing else reads"
        )
    if not matches:
        return program
    heads = []
    if pool_scores is not None:
        heads = pool_heads(view, matches, mapped, pool_scores, model.path)
        pooled = pooled_tensors(view, matches, heads, mapped, model.path)
        mapped = {name: origin for name, origin in mapped.items() if name not in pooled}
        needs_2d = [entry for entry in needs_2d if entry[0] not in pooled]

    carries = {
        index: rule for index, rule in carries.items() if any(name in mapped for name in view.nodes[index].input)
    }
    program.node_updates = {index: update for index, update in program.node_updates.items() if index in carries}
    aliases = {out: src for out, src in aliases.items() if out in mapped}
    program.region_stops = {
        i: stop for i, stop in program.region_stops.items() if any(name in mapped for name in view.nodes[i].input)
    }

    def root(name: str) -> str:
        while name in aliases:
            name = aliases[name]
        return name

    needs_2d = [(root(name), reader, pos) for name, reader, pos in needs_2d]
    alias_nodes = {view.producer[out] for out in aliases}
    gone = {m.index for m in matches} | {m.add for m in matches if m.add is not None}
    pool_after = _pool_places(view, matches, mapped, carries, mode)
    why = _removal_candidates(view, matches, mode, pool_after)
    for index in sorted(alias_nodes):
        why.setdefault(index, f"{carries[index].what}")
    why = dict(sorted(why.items()))
    _remove_dead(program, view, why, gone)
    renames = _resolve_2d(program, view, names, mapped, needs_2d, gone | alias_nodes, keep_outputs)
    _follow_aliases(program, view, aliases, root, renames, gone)
    _place_convs(program, view, names, matches, renames, mode, mapped, root)
    _move_pools(program, view, names, matches, pool_after, renames)
    place_pools(program, view, names, heads, pool_scores)
    _apply_carries(program, view, names, carries, alias_nodes, renames)
    _remove_initializers(program, view, gone)
    if mode == FCN and resize_inputs:
        _resize_inputs(program, view, matches)
    plan.renames.update(renames)
    return program


def _skip(plan: RewritePlan, view: GraphView, index: int, failure: Failure, selection: Selection, path) -> None:
    key = view.key(index)
    skip = Skip(key, op_label(view, index), failure.reason, failure.detail)
    if selection.is_explicit(key):
        raise RewriteRefused(
            skip.message,
            reason=failure.reason.value,
            path=path,
            layer=key,
            hint=HINTS.get(failure.reason),
            options=HINT_OPTIONS.get(failure.reason, ()),
        )
    plan.skips.append(skip)


def _planned_inputs(view: GraphView) -> dict:
    shapes = {}
    for name in view.graph_inputs:
        found = view.input_types.get(name)
        if found is None or found.shape is None:
            shapes[name] = None
        else:
            shapes[name] = tuple(
                d if isinstance(d, int) and d > 0 else -1 for d in found.shape
            )  # a declared 0: unknown
    return shapes


LINEAR_OPS = frozenset(
    {"Dropout", "Identity", "Add", "Sub", "Mul", "Div", "BatchNormalization", "Flatten", "Reshape", "Unsqueeze"}
)


def _pool_places(view: GraphView, matches: list[FcMatch], mapped: dict, carries: dict, mode: str) -> dict:
    """--classifier-before-pool: for each FC moved before its global pool, the tensor after which
    the pool goes (the end of the run of linear nodes from the FC, since the mean over the cells
    commutes only with them), or None where that run reaches the graph output in fcn mode (no
    pool at all: the output is the score map whose mean is what the model computed)."""
    fc_at = {m.index: m for m in matches}
    places = {}
    for m in matches:
        if m.kind != POOLED:
            continue
        tensor, moved = m.output, [m.key]
        while True:
            if view.is_graph_output(tensor):
                places[m.index] = (None if mode == FCN else tensor, moved, "")
                break
            readers = view.uses(tensor)
            if len(readers) != 1:
                places[m.index] = (tensor, moved, f"'{tensor}' has {len(readers)} readers")
                break
            reader, _ = readers[0]
            node = view.nodes[reader]
            later = fc_at.get(reader)
            if later is not None and later.kind == CHAIN:
                tensor = later.output
                moved.append(later.key)
                continue
            linear = node.op_type in LINEAR_OPS and reader in carries and not carries[reader].channels_last
            if linear and node.op_type in ("Add", "Sub", "Mul", "Div") and sum(n in mapped for n in node.input) != 1:
                linear = False  # a map joined with another map: not one run
            if not linear:
                places[m.index] = (tensor, moved, f"{view.label(reader)} is not linear")
                break
            tensor = node.output[0]
    return places


def _move_pools(
    program: Program, view: GraphView, names: _Names, matches: list[FcMatch], places: dict, renames: dict
) -> None:
    """Put each moved pool after the end of its linear run; say what moved and what stayed."""
    steps = {step.match.output: step for step in program.convs}
    by_index = {m.index: m for m in matches}
    for index, (tensor, moved, stopped) in sorted(places.items()):
        m = by_index[index]
        pool_op = view.nodes[m.pool].op_type
        if tensor is None:
            program.plan.notes.append(
                f"classifier before pool: {', '.join(moved)} moved before {pool_op} "
                f"'{view.key(m.pool)}', which is removed: the output is their score map"
            )
            continue
        target = renames.get(tensor, tensor)
        before = names.tensor(f"{tensor}_before_pool")
        if tensor in steps:
            steps[tensor].output = before
        else:
            producer = view.producer[tensor]
            program.output_renames[(producer, list(view.nodes[producer].output).index(tensor))] = before
        program.moved_pools[m.pool] = (before, target)
        program.plan.edits.append(
            GraphEdit("remove", view.key(m.pool), pool_op, f"classifier before pool: moved after '{tensor}'")
        )
        program.plan.edits.append(
            GraphEdit(
                "insert",
                view.key(m.pool),
                "GlobalAveragePool",
                f"pools '{tensor}' of {', '.join(moved)}",
                inputs=(before,),
                outputs=(target,),
            )
        )
        rest = f"; what follows stays behind the pool ({stopped})" if stopped else ""
        program.plan.notes.append(
            f"classifier before pool: {', '.join(moved)} moved before {pool_op} '{view.key(m.pool)}'{rest}"
        )


def _removal_candidates(view: GraphView, matches: list[FcMatch], mode: str, pool_after: dict) -> dict[int, str]:
    """Nodes that may become unread, in graph order, with why they go."""
    why: dict[int, str] = {}
    for m in matches:
        if m.add is not None:
            why[m.add] = f"its constant is the bias of Conv '{m.key}'"
        if m.flatten is not None:
            why.setdefault(m.flatten, f"Conv '{m.key}' reads the map '{m.source}' itself")
        for index in sorted(m.shape_nodes):
            why.setdefault(index, f"it only computed the target shape of {view.label(m.flatten)}")
        if m.transpose is not None:
            why.setdefault(m.transpose, f"the kernel of Conv '{m.key}' is permuted to NCHW order instead")
        if m.pool is not None and pool_after.get(m.index, (0,))[0] is None:
            why.setdefault(m.pool, f"classifier before pool: the scores of Conv '{m.key}' stay a map")
        for operand in (m.weight, m.bias):
            if operand is not None and operand.constant_node is not None:
                why[operand.constant_node] = f"its value becomes the initializer '{operand.name}'"
                for folded in sorted(operand.nodes - {operand.constant_node}):
                    why.setdefault(folded, f"it only computed the initializer '{operand.name}' (folded)")
    return dict(sorted(why.items()))


def _remove_dead(program: Program, view: GraphView, why: dict[int, str], gone: set[int]) -> None:
    removed = program.removed
    constant_operands = {i for i, text in why.items() if text.startswith("its value becomes")}
    removed.update(constant_operands)
    changed = True
    while changed:
        changed = False
        for index in why:
            if index in removed or index in gone:
                continue
            outputs = [name for name in view.nodes[index].output if name]
            if any(view.is_graph_output(name) for name in outputs):
                continue
            if all(reader in removed or reader in gone for name in outputs for reader, _ in view.uses(name)):
                removed.add(index)
                changed = True
    for index, text in why.items():
        if index in removed or index in gone:
            program.plan.edits.append(GraphEdit("remove", view.key(index), view.nodes[index].op_type, text))


def _resolve_2d(
    program: Program, view: GraphView, names: _Names, mapped: dict, needs_2d: list, gone: set[int], keep_outputs: bool
) -> dict[str, str]:
    """Flattens in front of the readers that need the old (N, M) tensors. Returns tensor renames."""
    dropped = program.removed | gone
    by_tensor: dict[str, list] = defaultdict(list)
    for name, reader, pos in needs_2d:
        if reader is None or reader not in dropped:
            by_tensor[name].append((reader, pos))
    renames: dict[str, str] = {}
    for name, readers in by_tensor.items():
        origin = mapped[name]
        width = _width_text(view, name)
        as_output = any(reader is None for reader, _ in readers)
        implicit = any(pos == -1 for _, pos in readers)
        explicit = [(r, p) for r, p in readers if r is not None and p != -1]
        if (as_output and keep_outputs) or implicit:
            renamed = names.tensor(f"{name}_map")
            renames[name] = renamed
            _rename_map(program, view, name, renamed, explicit, dropped)
            flatten = helper.make_node("Flatten", [renamed], [name], name=names.node(f"{origin}_flatten"), axis=1)
            program.inserted.append((_position(view, name), flatten))
            reason = (
                f"graph output '{name}' keeps its shape (N, {width})"
                if as_output
                else f"'{name}' is read inside a subgraph as (N, {width})"
            )
            program.plan.edits.append(GraphEdit("insert", flatten.name, "Flatten", reason))
            continue
        if as_output:
            program.map_outputs.append(name)
        if explicit:
            flat = names.tensor(f"{name}_flat")
            flatten = helper.make_node("Flatten", [name], [flat], name=names.node(f"{origin}_flatten"), axis=1)
            program.inserted.append((_position(view, name), flatten))
            for reader, pos in explicit:
                program.input_renames[(reader, pos)] = flat
            labels = ", ".join(sorted({view.label(r) for r, _ in explicit}))
            reason = f"{labels} read(s) '{name}' as (N, {width})"
            stops = sorted({program.region_stops[r].text for r, _ in explicit if r in program.region_stops})
            if stops:
                reason += ": " + "; ".join(stops)
            program.plan.edits.append(GraphEdit("insert", flatten.name, "Flatten", reason))
    return renames


def _rename_map(program: Program, view: GraphView, name: str, renamed: str, needs_2d: list, dropped: set) -> None:
    """The 4-D tensor takes the new name; readers that work on maps follow it."""
    producer = view.producer.get(name)
    if producer is not None and producer not in dropped:
        position = list(view.nodes[producer].output).index(name)
        program.output_renames[(producer, position)] = renamed
    keep_2d = set(needs_2d)
    for reader, pos in view.uses(name):
        if pos != -1 and reader not in dropped and (reader, pos) not in keep_2d:
            program.input_renames[(reader, pos)] = renamed


def _position(view: GraphView, name: str) -> float:
    producer = view.producer.get(name)
    return (producer if producer is not None else -1) + 0.5


def _width_text(view: GraphView, name: str) -> str:
    shape = view.shape(name)
    if shape is not None and len(shape) == 2 and isinstance(shape[1], int):
        return str(shape[1])
    return "M"


def _place_convs(
    program: Program,
    view: GraphView,
    names: _Names,
    matches: list[FcMatch],
    renames: dict,
    mode: str,
    mapped: dict[str, str],
    root,
) -> None:
    plan = program.plan
    unsqueezed: dict[str, str] = {}
    by_key = {m.key: m for m in matches}
    for m in matches:
        if m.kind == CHAIN and not isinstance(m.batch, int) and m.source in mapped:
            m.batch = by_key[mapped[m.source]].batch  # shape inference may not follow a dynamic reshape
        conv = m.key
        output = renames.get(m.output, m.output)
        source = renames.get(root(m.source), root(m.source))
        if m.kind == VECTOR:
            if m.source not in unsqueezed:
                unsqueezed[m.source] = _unsqueeze(program, view, names, m)
            source = unsqueezed[m.source]
        weight_dims = (m.outputs, m.channels) + m.kernel
        weight = kernel_tensor(
            m.weight.name,
            m.weight.tensor,
            m.outputs,
            m.channels,
            m.kernel[0],
            m.kernel[1],
            transposed=m.transposed,
            channels_last=m.channels_last,
            alpha=m.alpha,
        )
        program.new_tensors[m.weight.name] = weight
        changes = [
            WeightChange(
                m.weight.name, m.weight.dims, weight_dims, kernel_transform(m.transposed, m.channels_last, m.alpha)
            )
        ]
        if m.bias is not None:
            transform = bias_transform(m.bias.dims, m.outputs, m.beta)
            changes.append(WeightChange(m.bias.name, m.bias.dims, (m.outputs,), transform))
            if transform != "unchanged":
                program.new_tensors[m.bias.name] = bias_tensor(m.bias.name, m.bias.tensor, m.outputs, m.beta)
            elif m.bias.constant_node is not None:
                program.new_tensors[m.bias.name] = copy_tensor(m.bias.name, m.bias.tensor)
        program.convs.append(
            ConvStep(m, conv, source, output, m.weight.name, m.bias.name if m.bias is not None else None)
        )
        plan.rewrites.append(
            FcRewrite(
                name=m.key,
                new_name=conv,
                op_before=m.op,
                op_after="Conv",
                input=source,
                input_shape=_input_shape(view, m),
                kernel=m.kernel,
                in_channels=m.channels,
                out_channels=m.outputs,
                weights=tuple(changes),
            )
        )


def _follow_aliases(program: Program, view: GraphView, aliases: dict, root, renames: dict, gone: set[int]) -> None:
    """The readers of a dropped Flatten / Reshape read the map it restored."""
    dropped = program.removed | gone | {view.producer[out] for out in aliases}
    for out in aliases:
        target = renames.get(root(out), root(out))
        for reader, pos in view.uses(out):
            if reader not in dropped and pos != -1:
                program.input_renames.setdefault((reader, pos), target)


def _apply_carries(
    program: Program, view: GraphView, names: _Names, carries: dict, alias_nodes: set[int], renames: dict
) -> None:
    """The changes the nodes on the maps need: attributes, per-feature constants reshaped to
    (K, 1, 1), new constant inputs, the channels-last detour of an old-opset Softmax."""
    plan = program.plan
    redirected: dict[str, set] = defaultdict(set)  # constant -> reader positions that read a new one
    for index, rule in sorted(carries.items()):
        if index in alias_nodes or index in program.removed or not (rule.changes_node or index in program.node_updates):
            continue
        node = view.nodes[index]
        update = program.node_updates.setdefault(index, {})
        if rule.attrs:
            update["attrs"] = dict(rule.attrs)
        for pos, dims in sorted(rule.reshape.items()):
            name = node.input[pos]
            new_name = names.tensor(f"{name}_4d")
            program.new_tensors[new_name] = reshaped_tensor(new_name, view.constant_tensor(name), dims)
            program.input_renames[(index, pos)] = new_name
            redirected[name].add((index, pos))
            plan.edits.append(
                GraphEdit(
                    "insert",
                    new_name,
                    "initializer",
                    f"'{name}' as {list(dims)}, so {view.label(index)} applies it per feature of every cell",
                    shape=tuple(dims),
                )
            )
        for pos, values in sorted(rule.new_inputs.items()):
            new_name = names.tensor(f"{view.key(index)}_axes")
            program.new_tensors[new_name] = int64_tensor(new_name, list(values))
            update.setdefault("inputs", {})[pos] = new_name
            if pos < len(node.input) and node.input[pos]:
                redirected[node.input[pos]].add((index, pos))
        if rule.channels_last:
            _channels_last(program, view, names, index, renames)
        what = rule.what or "works on the map as it is"
        if update.get("op_type") == "Identity":
            plan.edits.append(
                GraphEdit(
                    "replace",
                    view.key(index),
                    "Identity",
                    f"{view.label(index)} restored (N, K); it now passes the score map through",
                )
            )
        elif rule.changes_node:
            plan.edits.append(GraphEdit("update", view.key(index), node.op_type, f"carries the score map: {what}"))
    for name, positions in redirected.items():
        if view.is_graph_output(name):
            continue
        readers = {(r, p) for r, p in view.uses(name)}
        if not readers <= positions:
            continue
        producer = view.producer.get(name)
        if producer is not None and view.nodes[producer].op_type == "Constant":
            program.removed.add(producer)
            plan.edits.append(GraphEdit("remove", view.key(producer), "Constant", "its readers read a reshaped copy"))
        elif name in view.initializers:
            program.removed_initializers.append(name)
            plan.edits.append(GraphEdit("remove", name, "initializer", "its readers read a reshaped copy"))


def _channels_last(program: Program, view: GraphView, names: _Names, index: int, renames: dict) -> None:
    """Softmax below opset 13 flattens from its axis on: run it on axis 3 of the NHWC map."""
    node = view.nodes[index]
    source = program.input_renames.get((index, 0), renames.get(node.input[0], node.input[0]))
    output = program.output_renames.get((index, 0), renames.get(node.output[0], node.output[0]))
    nhwc, result_nhwc = names.tensor(f"{node.input[0]}_nhwc"), names.tensor(f"{node.output[0]}_nhwc")
    to_nhwc = helper.make_node(
        "Transpose", [source], [nhwc], name=names.node(f"{view.key(index)}_to_nhwc"), perm=[0, 2, 3, 1]
    )
    to_nchw = helper.make_node(
        "Transpose", [result_nhwc], [output], name=names.node(f"{view.key(index)}_to_nchw"), perm=[0, 3, 1, 2]
    )
    program.input_renames[(index, 0)] = nhwc
    program.output_renames[(index, 0)] = result_nhwc
    program.node_updates.setdefault(index, {})["attrs"] = {"axis": 3}
    program.inserted += [(index - 0.2, to_nhwc), (index + 0.2, to_nchw)]
    why = f"opset {view.opset} < 13: {node.op_type} flattens the axes from its axis on, so the classes go last"
    program.plan.edits += [
        GraphEdit("insert", to_nhwc.name, "Transpose", why, inputs=(source,), outputs=(nhwc,)),
        GraphEdit(
            "insert", to_nchw.name, "Transpose", "back to (N, K, h, w)", inputs=(result_nhwc,), outputs=(output,)
        ),
    ]


def _unsqueeze(program: Program, view: GraphView, names: _Names, m: FcMatch) -> str:
    output = names.tensor(f"{m.source}_4d")
    node_name = names.node(f"{m.key}_unsqueeze")
    if view.opset >= 13:
        axes = names.tensor(f"{m.key}_unsqueeze_axes")
        program.new_tensors[axes] = int64_tensor(axes, [2, 3])
        node = helper.make_node("Unsqueeze", [m.source, axes], [output], name=node_name)
    else:
        node = helper.make_node("Unsqueeze", [m.source], [output], name=node_name, axes=[2, 3])
    program.inserted.append((m.index - 0.5, node))
    program.plan.edits.append(
        GraphEdit("insert", node_name, "Unsqueeze", f"Conv '{m.key}' reads '{m.source}' as (N, {m.channels}, 1, 1)")
    )
    return output


def _input_shape(view: GraphView, m: FcMatch) -> tuple[int, ...]:
    batch = m.batch if isinstance(m.batch, int) else -1
    if m.kind == POOLED:
        shape = view.shape(m.source) or (None, m.channels, None, None)
        return (batch,) + tuple(d if isinstance(d, int) else -1 for d in shape[1:])
    return (batch, m.channels, m.height, m.width) if m.kind == MAP else (batch, m.channels, 1, 1)


def _remove_initializers(program: Program, view: GraphView, gone: set[int]) -> None:
    dropped = program.removed | gone
    kept = {step.weight_name for step in program.convs} | {step.bias_name for step in program.convs}
    for name in view.initializers:
        readers = view.uses(name)
        if name in kept or not readers or view.is_graph_output(name):
            continue
        if all(reader in dropped for reader, _ in readers):
            program.removed_initializers.append(name)
            program.plan.edits.append(GraphEdit("remove", name, "initializer", "no node reads it any more"))


def _resize_inputs(program: Program, view: GraphView, matches: list[FcMatch]) -> None:
    """The spatial dims of the 4-D inputs the FCs descend from become symbolic (the proof checks it)."""
    ancestors = _ancestors(view, [m.source for m in matches])
    for name in view.graph_inputs:
        value = next(vi for vi in view.model.graph.input if vi.name == name)
        dims = value.type.tensor_type.shape.dim
        if name not in ancestors or len(dims) != 4:
            continue
        positions = spatial_positions(view, name)
        if all(dims[p].HasField("dim_param") and dims[p].dim_param for p in positions):
            continue
        params = tuple(
            (p, dims[p].dim_param if dims[p].HasField("dim_param") and dims[p].dim_param else f"{name}_{what}")
            for p, what in zip(positions, ("height", "width"))
        )
        program.resized_inputs[name] = params
        layout = "NHWC: dims 1 and 2" if positions == (1, 2) else "dims 2 and 3"
        program.plan.edits.append(
            GraphEdit(
                "resize-input", name, "input", f"H and W ({layout}) become symbolic ({params[0][1]}, {params[1][1]})"
            )
        )
    if program.resized_inputs:
        below = _descendants(view, list(program.resized_inputs))
        for value in view.model.graph.output:
            dims = value.type.tensor_type.shape.dim
            if value.name in below and value.name not in program.map_outputs and len(dims) == 4:
                program.relaxed_outputs.append(value.name)
                program.plan.notes.append(
                    f"output '{value.name}' is computed from the resized input: its declared "
                    "shape is inferred again (its size follows the input's)"
                )


def _descendants(view: GraphView, names: list[str]) -> set[str]:
    """The tensors computed from ``names`` (graph order)."""
    found = set(names)
    for node in view.nodes:
        if any(name in found for name in node.input):
            found.update(name for name in node.output if name)
    return found


def spatial_positions(view: GraphView, name: str) -> tuple[int, int]:
    """Where H and W are in a 4-D input: (1, 2) for NHWC (read through a Transpose to NCHW), else (2, 3)."""
    readers = [view.nodes[i] for i, _ in view.uses(name)]
    if readers and all(
        node.op_type == "Transpose" and list(attribute(node, "perm", []) or []) == [0, 3, 1, 2] for node in readers
    ):
        return (1, 2)
    return (2, 3)


def _ancestors(view: GraphView, names: list[str]) -> set[str]:
    seen: set[str] = set()
    stack = list(names)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        producer = view.producer.get(name)
        if producer is not None:
            stack.extend(n for n in view.nodes[producer].input if n)
    return seen
