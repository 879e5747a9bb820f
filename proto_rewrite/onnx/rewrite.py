"""Plan and apply the ONNX FC -> Conv rewrite: the two public entry points.

``plan_onnx_rewrite`` is pure: it reads the model and returns the plan. ``apply_onnx_plan``
executes a plan and nothing else: it derives the node-level edits again from the model and the
plan's own settings, refuses when they are not exactly the plan (a plan made from another model,
or edited by hand), builds the new model, and checks it with ``onnx.checker`` (full check).
"""

from __future__ import annotations

from dataclasses import asdict

import onnx

from proto_rewrite.diagnostics import Diagnostic
from proto_rewrite.errors import RewriteCheckError, RewriteRefused, UsageError
from proto_rewrite.onnx.build import build_model
from proto_rewrite.onnx.fcn_proof import any_real_map, prove
from proto_rewrite.onnx.patterns import POOLED
from proto_rewrite.onnx.planner import Program, build_program
from proto_rewrite.onnx.shapes import checkable_model
from proto_rewrite.plan import FCN, RewritePlan, Selection


def plan_onnx_rewrite(model, selection: Selection | None = None, mode: str = FCN,
                      classifier_before_pool: bool = False, input_shapes: dict | None = None,
                      pool_scores: str | None = None) -> RewritePlan:
    """What the rewrite will change; the model is not modified.

    ``input_shapes``: {input name: tuple of ints} fixing symbolic dimensions (-1 keeps one).
    ``pool_scores`` (fcn mode only): "avg", "max" or "probs-avg" (``plan.POOL_SCORES``): pool each
    chain's score map back to (N, K) (``onnx.pooling``).
    Raises :class:`~proto_rewrite.errors.RewriteRefused` when an FC named in ``selection.only``
    cannot be rewritten. ``selection`` None: every FC.
    """
    return plan_program(model, selection, mode, classifier_before_pool, input_shapes, pool_scores).plan


def plan_program(model, selection: Selection | None = None, mode: str = FCN, classifier_before_pool: bool = False,
                 input_shapes: dict | None = None, pool_scores: str | None = None) -> Program:
    """The program behind ``plan_onnx_rewrite``. fcn mode: the spatial input dims are made symbolic
    only when the rewritten model is shown to run at another size (``fcn_proof``); otherwise the
    input keeps its size and, where no output is a map worth having, the outputs keep (N, K)."""
    from proto_rewrite.onnx.graph import GraphView

    view = GraphView(model, input_shapes)
    program = build_program(model, selection, mode, classifier_before_pool, input_shapes, pool_scores, view=view)
    if mode != FCN or not program.plan.rewrites:
        return program
    new = build_model(model, program)
    if program.map_outputs and not any_real_map(new, program):
        program = build_program(model, selection, mode, classifier_before_pool, input_shapes, pool_scores,
                                map_outputs=False, view=view)
        new = build_model(model, program)
    report = prove(new, program)
    if not report.fully_convolutional:
        keep_maps = any(step.match.kind == POOLED for step in program.convs)
        program = build_program(model, selection, mode, classifier_before_pool, input_shapes, pool_scores,
                                resize_inputs=False, map_outputs=keep_maps, view=view)
        if not keep_maps and report.note:
            report.note += "; the outputs keep their (N, K) shape (a 1 x 1 map gains nothing)"
    program.plan.fcn = report
    return program


def apply_onnx_plan(model, plan: RewritePlan):
    """A new model with the plan carried out; ``model`` is left untouched."""
    from proto_rewrite.onnx.model import OnnxModel

    if plan.model_format != "onnx":
        raise UsageError(f"this is a plan for a {plan.model_format} model, not an ONNX one")
    if not plan.changes_anything:
        return OnnxModel(_copy(model.proto), dict(model.initializers), None, model.base_dir, [])
    program = _program_for(model, plan)
    new = build_model(model, program)
    _check(model, new)
    return new


def _program_for(model, plan: RewritePlan) -> Program:
    selection = Selection(only=frozenset(rewrite.name for rewrite in plan.rewrites))
    wanted = _executable(plan)
    if plan.options:
        options = plan.options
        try:
            program = build_program(model, selection, plan.mode, bool(options.get("classifier_before_pool")),
                                    plan.input_shapes, options.get("pool_scores"),
                                    resize_inputs=bool(options.get("resize_inputs", True)),
                                    map_outputs=bool(options.get("map_outputs", True)))
        except RewriteRefused as err:
            raise UsageError(f"the plan does not fit this model: {err.message}",
                             hint="make the plan from this very model and apply it unchanged") from err
        if _executable(program.plan) == wanted:
            return program
        raise UsageError("the plan does not fit this model (its rewrites or edits differ from what the model allows)",
                         hint="make the plan from this very model and apply it unchanged")
    pool_scores = _pool_scores(plan)
    for classifier_before_pool in (False, True):
        try:
            program = build_program(model, selection, plan.mode, classifier_before_pool, plan.input_shapes,
                                    pool_scores)
        except RewriteRefused as err:
            raise UsageError(f"the plan does not fit this model: {err.message}",
                             hint="make the plan from this very model and apply it unchanged") from err
        if _executable(program.plan) == wanted:
            return program
    raise UsageError("the plan does not fit this model (its rewrites or edits differ from what the model allows)",
                     hint="make the plan from this very model and apply it unchanged")


def _pool_scores(plan: RewritePlan) -> str | None:
    """The --pool-scores a plan was made with, read back from its inserted pooling."""
    methods = {edit.method for edit in plan.edits if edit.action == "insert" and edit.method}
    if not methods:
        return None
    if methods != {"avg"}:
        return "max"
    return "probs-avg" if any(e.action == "insert" and e.op == "Softmax" for e in plan.edits) else "avg"


def _executable(plan: RewritePlan) -> tuple:
    """The parts of a plan that apply executes."""
    return (plan.mode, [asdict(r) for r in plan.rewrites], [asdict(e) for e in plan.edits], dict(plan.renames))


def _check(old, new) -> None:
    try:
        onnx.checker.check_model(checkable_model(new), full_check=True)
    except Exception as err:  # noqa: BLE001 - onnx raises several error types
        try:
            onnx.checker.check_model(checkable_model(old), full_check=True)
        except Exception:  # noqa: BLE001 - the input fails already: not the rewrite's doing
            new.diagnostics.append(Diagnostic("warning", f"onnx.checker (full check) fails on the input and the "
                                                         f"output: {_first_line(err)}"))
            return
        raise RewriteCheckError(f"the rewritten model fails onnx.checker: {_first_line(err)}", path=old.path,
                                hint="this is probably a bug in proto-rewrite; please report it with the model") \
            from err


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy
