"""Which node of B is which node of A, and the order to report them in.

Nodes are matched, each step among the nodes still unmatched:

1. ``plan``: through a conversion plan's rename map (``fc6`` -> ``fc6-conv``);
2. ``name``: the same name;
3. ``derived-name``: one name is the other plus a one-word suffix (``fc6`` / ``fc6-conv``,
   ``fc6_conv``, ``fc6.conv``) and the ops are the same or an FC and its convolution, when that
   candidate is the only one;
4. ``position``: between two matched nodes, the unmatched nodes of A and of B are paired in
   order where their ops are the same (or an FC and its convolution), as ``difflib`` aligns
   two sequences.

The report follows B's order; a node only in A comes right after the matched node that precedes it
in A, before the nodes only in B of the same gap (as a unified diff shows removals first).
"""

from __future__ import annotations

import difflib
import re
from collections import defaultdict
from dataclasses import dataclass

from proto_rewrite.graph_view import Node

PLAN, NAME, DERIVED, POSITION = "plan", "name", "derived-name", "position"
LINEAR = frozenset(("InnerProduct", "Convolution", "Gemm", "MatMul", "Conv"))
_SUFFIX = re.compile(r"[-_.][A-Za-z0-9]+")


@dataclass(frozen=True)
class Pair:
    a: int | None  # index in A's nodes; None: only in B
    b: int | None  # index in B's nodes; None: only in A
    matched_by: str | None = None


def family(op: str) -> str:
    """Ops that a conversion turns into one another share a family: FCs and convolutions."""
    return "linear" if op in LINEAR else op


def match_nodes(a: list[Node], b: list[Node], renames: dict[str, str] | None = None) -> list[Pair]:
    partner: dict[int, tuple[int, str]] = {}  # a index -> (b index, how)
    taken: set[int] = set()
    b_index = {node.name: i for i, node in enumerate(b)}

    def pair(i: int, j: int, how: str) -> None:
        partner[i] = (j, how)
        taken.add(j)

    for i, node in enumerate(a):
        target = (renames or {}).get(node.name)
        if target is not None and target != node.name and b_index.get(target) not in (None, *taken):
            pair(i, b_index[target], PLAN)
    for i, node in enumerate(a):
        j = b_index.get(node.name)
        if i not in partner and j is not None and j not in taken:
            pair(i, j, NAME)
    _match_derived(a, b, partner, taken, pair)
    _match_positions(a, b, partner, taken, pair)
    return _ordered(a, b, partner)


def _derived(short: str, long: str) -> bool:
    return long.startswith(short) and _SUFFIX.fullmatch(long[len(short) :]) is not None


def _match_derived(a, b, partner, taken, pair) -> None:
    free_a = [i for i in range(len(a)) if i not in partner]
    free_b = [j for j in range(len(b)) if j not in taken]
    candidates = defaultdict(list)
    for i in free_a:
        for j in free_b:
            if family(a[i].op) == family(b[j].op) and (
                _derived(a[i].name, b[j].name) or _derived(b[j].name, a[i].name)
            ):
                candidates[i].append(j)
    wanted = defaultdict(int)
    for js in candidates.values():
        for j in js:
            wanted[j] += 1
    for i, js in candidates.items():
        if len(js) == 1 and wanted[js[0]] == 1:
            pair(i, js[0], DERIVED)


def _match_positions(a, b, partner, taken, pair) -> None:
    """Pair the unmatched nodes of each gap between matched nodes, in order, by op family."""
    gaps_a, gaps_b = defaultdict(list), defaultdict(list)
    anchor = -1
    for i in range(len(a)):
        if i in partner:
            anchor = partner[i][0]
        else:
            gaps_a[anchor].append(i)
    anchor = -1
    for j in range(len(b)):
        if j in taken:
            anchor = j
        else:
            gaps_b[anchor].append(j)
    for key, free_a in gaps_a.items():
        free_b = [j for j in gaps_b.get(key, []) if j not in taken]
        if not free_b:
            continue
        matcher = difflib.SequenceMatcher(
            None, [family(a[i].op) for i in free_a], [family(b[j].op) for j in free_b], autojunk=False
        )
        for block in matcher.get_matching_blocks():
            for k in range(block.size):
                pair(free_a[block.a + k], free_b[block.b + k], POSITION)


def _ordered(a, b, partner) -> list[Pair]:
    by_b = {j: (i, how) for i, (j, how) in partner.items()}
    pairs: list[Pair] = []
    emitted: set[int] = set()

    def removed_from(start: int) -> None:  # the run of unmatched A nodes from ``start`` on
        k = start
        while k < len(a) and k not in partner:
            if k not in emitted:
                pairs.append(Pair(k, None))
                emitted.add(k)
            k += 1

    removed_from(0)
    for j in range(len(b)):
        if j not in by_b:
            pairs.append(Pair(None, j))
            continue
        i, how = by_b[j]
        pairs.append(Pair(i, j, how))
        removed_from(i + 1)
    pairs.extend(Pair(k, None) for k in range(len(a)) if k not in partner and k not in emitted)
    return pairs
