"""Keep the layers of a net that belong to a phase (TRAIN/TEST), as Caffe's Net::FilterNet does.

A layer with ``include`` rules is kept when one of them matches the net state; otherwise it is
kept unless one of its ``exclude`` rules matches. A rule matches when every condition it sets
holds: phase, min_level, max_level, every ``stage`` present, no ``not_stage`` present.
"""

from __future__ import annotations

from proto_rewrite.caffe.schema import schema_of
from proto_rewrite.errors import NetStructureError

PHASES = ("TRAIN", "TEST")


def net_state(net, phase: str, stages: tuple[str, ...] = ()) -> object:
    """The state a net runs in: its own ``state`` with the phase (and extra stages) applied."""
    state = type(net.state)()
    state.CopyFrom(net.state)
    state.phase = schema_of(net).enum_value("Phase", phase)
    state.stage.extend(s for s in stages if s not in state.stage)
    return state


def rule_matches(rule, state) -> bool:
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(stage not in state.stage for stage in rule.stage):
        return False
    return not any(stage in state.stage for stage in rule.not_stage)


def layer_included(layer, state) -> bool:
    if layer.include:
        return any(rule_matches(rule, state) for rule in layer.include)
    return not any(rule_matches(rule, state) for rule in layer.exclude)


def filter_layers(net, phase: str = "TEST", stages: tuple[str, ...] = (), *, path=None) -> list[str]:
    """Drop, in place, the V2 layers not in ``phase``; return the names of those dropped. A net
    whose every layer is dropped is an error (:class:`NetStructureError` naming ``path``), not an
    empty net."""
    state = net_state(net, phase, stages)
    kept = [layer for layer in net.layer if layer_included(layer, state)]
    dropped = [layer.name for layer in net.layer if not layer_included(layer, state)]
    if dropped and all(layer.type == "Input" for layer in kept):  # the net's inputs alone are no net
        other = next(p for p in PHASES if p != phase)
        raise NetStructureError(
            f"every layer of the net ({len(dropped)}) is excluded in phase {phase} by its include/exclude rules: "
            "nothing would be left",
            path=path,
            layer=dropped[0],
            hint=f"read it in the {other} phase instead, or check the layers' include {{ phase: ... }} rules",
        )
    if dropped:
        copies = []
        for layer in kept:
            copy = type(layer)()
            copy.CopyFrom(layer)
            copies.append(copy)
        del net.layer[:]
        net.layer.extend(copies)
    return dropped
