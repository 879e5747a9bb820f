"""--pool-scores (fcn mode): pool each chain's score map back to the (N, K) the model gave out.

After the last rewritten FC of each chain (one whose scores no rewritten FC reads, directly or
through element-wise nodes) a global pooling (GlobalAveragePool for ``avg``, GlobalMaxPool for
``max``) and a Flatten (axis 1) give the FC's output tensor back its original name and shape,
so every node downstream and every graph output is as it was at other input sizes too (the fcn
proof checks that at a second size).

``probs-avg`` pools the per-cell probabilities instead: the Softmax that is the only reader of
the scores is replaced by one over the classes of each cell (axis 1 of the map), and its output
is pooled. Before opset 13 Softmax flattens every axis from ``axis`` on, so there the map goes
channels-last first (Transpose), the Softmax works on axis 3 (one row of K per cell) and a
second Transpose brings it back to (N, K, h, w).

Names are predictable: nodes ``<fc>_pool``, ``<fc>_pool_flatten`` (and ``<fc>_to_nhwc``,
``<fc>_to_nchw``); tensors ``<scores>_map``, ``<pooled>_pooled`` (``_2``, ``_3``... if taken).
The replaced Softmax keeps its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from onnx import helper

from proto_rewrite.errors import UsageError
from proto_rewrite.onnx.graph import DEFAULT_DOMAINS, GraphView, attribute
from proto_rewrite.onnx.patterns import CHAIN, FcMatch
from proto_rewrite.rewrite_plan import FCN, POOL_SCORES, GraphEdit, RewritePlan

POOL_OPS = {"avg": "GlobalAveragePool", "max": "GlobalMaxPool", "probs-avg": "GlobalAveragePool"}
PER_CELL_SOFTMAX_OPSET = 13  # from here on Softmax(axis=1) of a 4-D map is per cell


class Program(Protocol):
    """What the pooling reads and extends of the planner's ``Program`` (``onnx.planner``, which
    imports this module: naming the class here would make the two import each other)."""

    plan: RewritePlan
    convs: list
    removed: set[int]
    inserted: list[tuple[float, object]]


@dataclass(frozen=True)
class PoolHead:
    """Where one chain's map is pooled: after its last FC, or after the Softmax that reads it."""

    match: FcMatch  # the chain's last FC
    softmax: int | None  # probs-avg: the Softmax node reading the scores

    @property
    def scores(self) -> str:
        return self.match.output


POOL_OPTIONS = ("pool_scores",)


def check_request(pool_scores: str | None, mode: str) -> None:
    if pool_scores is None:
        return
    if pool_scores not in POOL_SCORES:
        raise UsageError(
            f"unknown pool_scores '{pool_scores}'", options=POOL_OPTIONS, hint=f"use one of {', '.join(POOL_SCORES)}"
        )
    if mode != FCN:
        raise UsageError(
            f"pool_scores {pool_scores} needs mode fcn, not {mode}",
            options=(*POOL_OPTIONS, "mode"),
            hint="an exact conversion keeps the shape of every output already; convert with mode fcn to pool "
            "the score maps back to (N, K)",
        )


def pool_heads(
    view: GraphView, matches: list[FcMatch], mapped: dict[str, str], pool_scores: str, path=None
) -> list[PoolHead]:
    """The chains' last FCs, in graph order; for probs-avg, with the Softmax each one needs."""
    stop = _fc_nodes(matches)
    sources = {m.source for m in matches if m.kind == CHAIN}
    heads = []
    for m in matches:
        if _below(view, [m.output], mapped, stop) & sources:
            continue
        softmax = _softmax(view, m, path) if pool_scores == "probs-avg" else None
        heads.append(PoolHead(m, softmax))
    return heads


def pooled_tensors(
    view: GraphView, matches: list[FcMatch], heads: list[PoolHead], mapped: dict[str, str], path=None
) -> set[str]:
    """The tensors that pooling makes (N, K)-shaped again: each head's scores and what follows them
    on maps. A node that mixes one of them with a map that stays 4-D cannot work: refused."""
    stop = _fc_nodes(matches)
    pooled = _below(view, [head.scores for head in heads], mapped, stop)
    for index, node in enumerate(view.nodes):
        if (
            index in stop
            or not any(name in pooled for name in node.input)
            or not any(name in mapped for name in node.output)
        ):
            continue  # a node that needs (N, M) inputs gets a Flatten for the maps that stay
        others = [name for name in node.input if name in mapped and name not in pooled]
        if others:
            raise UsageError(
                f"pool_scores cannot pool the scores read by {view.label(index)}: it also reads the "
                f"score map '{others[0]}', which stays (N, M, h, w)",
                path=path,
                layer=view.key(index),
                hint="convert without pool_scores, or leave the FCs of one branch out with exclude",
                options=(*POOL_OPTIONS, "exclude"),
            )
    return pooled


def place_pools(program: Program, view: GraphView, names, heads: list[PoolHead], pool_scores: str) -> None:
    """Insert the pooling (and, for probs-avg, the per-cell Softmax) after each head."""
    steps = {step.match.index: step for step in program.convs}
    method = "max" if pool_scores == "max" else "avg"
    for head in heads:
        m = head.match
        score_map = names.tensor(f"{head.scores}_map")
        steps[m.index].output = score_map
        if head.softmax is None:
            source, target, position = score_map, head.scores, float(m.index)
            what = f"the score map of Conv '{m.key}'"
        else:
            source, target, position = _per_cell_softmax(program, view, names, head, score_map)
            what = f"the per-cell probabilities of Conv '{m.key}'"
        pooled = names.tensor(f"{target}_pooled")
        pool = helper.make_node(POOL_OPS[pool_scores], [source], [pooled], name=names.node(f"{m.key}_pool"))
        flatten = helper.make_node("Flatten", [pooled], [target], name=names.node(f"{m.key}_pool_flatten"), axis=1)
        program.inserted += [(position + 0.6, pool), (position + 0.7, flatten)]
        program.plan.edits += [
            GraphEdit(
                "insert",
                pool.name,
                pool.op_type,
                f"global {method} pooling of {what} (--pool-scores {pool_scores})",
                inputs=(source,),
                outputs=(pooled,),
                method=method,
            ),
            GraphEdit(
                "insert",
                flatten.name,
                "Flatten",
                f"gives '{target}' its original (N, {m.outputs}) shape",
                inputs=(pooled,),
                outputs=(target,),
            ),
        ]


def _per_cell_softmax(program: Program, view: GraphView, names, head: PoolHead, score_map: str):
    """Replace the Softmax over (N, K) by one over the classes of each cell: (map to pool, position)."""
    m, index = head.match, head.softmax
    node = view.nodes[index]
    probs = node.output[0]
    prob_map = names.tensor(f"{probs}_map")
    program.removed.add(index)
    edits = [
        GraphEdit(
            "remove",
            view.key(index),
            "Softmax",
            f"replaced by a Softmax over each cell of the score map of Conv '{m.key}' (--pool-scores probs-avg)",
        )
    ]
    if view.opset >= PER_CELL_SOFTMAX_OPSET:
        softmax = helper.make_node("Softmax", [score_map], [prob_map], name=node.name, axis=1)
        program.inserted.append((float(index), softmax))
        edits.append(
            GraphEdit(
                "insert",
                view.key(index),
                "Softmax",
                f"the class probabilities of each cell of Conv '{m.key}' (axis 1)",
                inputs=(score_map,),
                outputs=(prob_map,),
            )
        )
    else:
        nhwc, probs_nhwc = names.tensor(f"{head.scores}_nhwc"), names.tensor(f"{probs}_nhwc")
        to_nhwc = helper.make_node(
            "Transpose", [score_map], [nhwc], name=names.node(f"{m.key}_to_nhwc"), perm=[0, 2, 3, 1]
        )
        softmax = helper.make_node("Softmax", [nhwc], [probs_nhwc], name=node.name, axis=3)
        to_nchw = helper.make_node(
            "Transpose", [probs_nhwc], [prob_map], name=names.node(f"{m.key}_to_nchw"), perm=[0, 3, 1, 2]
        )
        program.inserted += [(index - 0.2, to_nhwc), (float(index), softmax), (index + 0.2, to_nchw)]
        edits += [
            GraphEdit(
                "insert",
                to_nhwc.name,
                "Transpose",
                f"opset {view.opset} < 13: Softmax flattens the axes from its axis on, so the classes go last",
                inputs=(score_map,),
                outputs=(nhwc,),
            ),
            GraphEdit(
                "insert",
                view.key(index),
                "Softmax",
                f"the class probabilities of each cell of Conv '{m.key}' (axis 3 of the channels-last map)",
                inputs=(nhwc,),
                outputs=(probs_nhwc,),
            ),
            GraphEdit(
                "insert",
                to_nchw.name,
                "Transpose",
                "back to (N, K, h, w) for the pooling",
                inputs=(probs_nhwc,),
                outputs=(prob_map,),
            ),
        ]
    program.plan.edits += edits
    return prob_map, probs, float(index)


def _softmax(view: GraphView, m: FcMatch, path) -> int:
    """The Softmax over the classes that alone reads the FC's scores, or a UsageError."""
    readers = view.uses(m.output)
    found = None
    if len(readers) == 1 and readers[0][1] == 0 and not view.is_graph_output(m.output):
        index = readers[0][0]
        node = view.nodes[index]
        default = -1 if view.opset >= 13 else 1
        if node.op_type == "Softmax" and node.domain in DEFAULT_DOMAINS and attribute(node, "axis", default) in (1, -1):
            return index
        found = view.label(index)
    if found is None:
        what = [view.label(i) for i, _ in readers] + (["a graph output"] if view.is_graph_output(m.output) else [])
        found = ", ".join(sorted(set(what))) or "nothing"
    raise UsageError(
        f"pool_scores probs-avg needs a Softmax over the classes as the only reader of the scores "
        f"'{m.output}' of '{m.key}'; they are read by {found}",
        path=path,
        layer=m.key,
        hint="use pool_scores avg (or max) to pool the scores instead",
        options=POOL_OPTIONS,
    )


def _fc_nodes(matches: list[FcMatch]) -> set[int]:
    return {index for m in matches for index in m.replaced}


def _below(view: GraphView, starts: list[str], mapped: dict[str, str], stop: set[int]) -> set[str]:
    """``starts`` and the maps computed from them, up to the next rewritten FCs (graph order)."""
    found = set(starts)
    for index, node in enumerate(view.nodes):
        if index not in stop and any(name in found for name in node.input):
            found.update(name for name in node.output if name in mapped)
    return found
