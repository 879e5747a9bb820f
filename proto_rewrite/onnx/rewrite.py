"""Plan and apply the ONNX FC -> Conv rewrite: the two public entry points.

``plan_onnx_rewrite`` is pure: it reads the model and returns the plan. ``apply_onnx_plan``
executes a plan and nothing else: it derives the node-level edits again from the model and the
plan's own settings, refuses when they are not exactly the plan (a plan made from another model,
or edited by hand), builds the new model, and checks it with ``onnx.checker`` (full check).
"""

from __future__ import annotations

from dataclasses import asdict, replace

import onnx

from proto_rewrite.diagnostics import Diagnostic
from proto_rewrite.errors import PlanMismatchError, RewriteCheckError, RewriteRefused, UsageError
from proto_rewrite.fingerprint import onnx_fingerprint
from proto_rewrite.onnx.build import build_model
from proto_rewrite.onnx.fcn_proof import RUN_LIMIT_BYTES, any_real_map, prove
from proto_rewrite.onnx.patterns import POOLED
from proto_rewrite.onnx.planner import OnnxRewriteOptions, Program, build_program
from proto_rewrite.onnx.shapes import checkable_model
from proto_rewrite.rewrite_plan import FCN, RewritePlan, Selection, first_difference


def plan_onnx_rewrite(
    model,
    selection: Selection | None = None,
    mode: str = FCN,
    classifier_before_pool: bool = False,
    input_shapes: dict | None = None,
    pool_scores: str | None = None,
    proof_run_limit: int = RUN_LIMIT_BYTES,
) -> RewritePlan:
    """What the rewrite will change; the model is not modified.

    ``input_shapes``: {input name: tuple of ints} fixing symbolic dimensions (-1 keeps one).
    ``pool_scores`` (fcn mode only): "avg", "max" or "probs-avg" (``plan.POOL_SCORES``): pool each
    chain's score map back to (N, K) (``onnx.pooling``).
    Raises :class:`~proto_rewrite.errors.RewriteRefused` when an FC named in ``selection.only``
    cannot be rewritten. ``selection`` None: every FC. ``proof_run_limit``: above this many bytes of
    weights the fcn proof infers shapes at the second size instead of running onnxruntime there.
    """
    options = OnnxRewriteOptions(selection, mode, classifier_before_pool, input_shapes, pool_scores)
    return plan_program(model, options, proof_run_limit=proof_run_limit).plan


def plan_program(model, options: OnnxRewriteOptions, *, proof_run_limit: int = RUN_LIMIT_BYTES) -> Program:
    """The program behind ``plan_onnx_rewrite``. fcn mode: the spatial input dims are made symbolic
    only when the rewritten model is shown to run at another size (``fcn_proof``); otherwise the
    input keeps its size and, where no output is a map worth having, the outputs keep (N, K)."""
    from proto_rewrite.onnx.graph import GraphView

    view = GraphView(model, options.input_shapes)
    fingerprint = onnx_fingerprint(model)
    program = build_program(model, options, view=view)
    program.plan.fingerprint = fingerprint
    if options.mode != FCN or not program.plan.rewrites:
        return program
    new = build_model(model, program)
    if program.map_outputs and not any_real_map(new, program):
        program = build_program(model, options, map_outputs=False, view=view)
        new = build_model(model, program)
    report = prove(new, program, proof_run_limit)
    if not report.fully_convolutional:
        keep_maps = any(step.match.kind == POOLED for step in program.convs)
        program = build_program(model, options, resize_inputs=False, map_outputs=keep_maps, view=view)
        if not keep_maps and report.note:
            report.note += "; the outputs keep their (N, K) shape (a 1 x 1 map gains nothing)"
    program.plan.fcn = report
    program.plan.fingerprint = fingerprint
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
    """The node-level program that carries out ``plan`` on ``model``: made again from the model
    with the plan's own options and compared with the plan, rewrite by rewrite and edit by edit.
    A plan whose rewrites were edited into skips is honoured (its edits are made again)."""
    if plan.fingerprint and plan.fingerprint != onnx_fingerprint(model):
        raise PlanMismatchError(
            "the plan does not fit this model: it was made from another model (or another "
            "version of it), the fingerprints differ",
            path=model.path,
            hint=REPLAN_HINT,
        )
    if not plan.options:
        return _legacy_program_for(model, plan)
    recorded = plan.options
    options = OnnxRewriteOptions(
        Selection.from_dict(recorded.get("selection")),
        plan.mode,
        bool(recorded.get("classifier_before_pool")),
        plan.input_shapes,
        recorded.get("pool_scores"),
    )
    program = _derive(
        model,
        lambda: build_program(
            model,
            options,
            resize_inputs=bool(recorded.get("resize_inputs")),
            map_outputs=bool(recorded.get("map_outputs", True)),
        ),
    )
    problem = first_difference(plan, program.plan)
    if problem is None:
        return program
    wanted, derived = {r.name for r in plan.rewrites}, {r.name for r in program.plan.rewrites}
    if wanted < derived:  # rewrites dropped by hand: plan what is left (with its fcn proof)
        program = _derive(
            model,
            lambda: plan_program(model, replace(options, selection=Selection(only=frozenset(wanted)))),
        )
        problem = first_difference(plan, program.plan, edits=False)
        if problem is None:
            return program
    raise PlanMismatchError(f"the plan does not fit this model: {problem}", path=model.path, hint=REPLAN_HINT)


REPLAN_HINT = (
    "make the plan again from this model (convert MODEL --dry-run --save-plan PLAN.json), or apply it to "
    "the model it was made from; a plan may drop rewrites, but not change them"
)


def _derive(model, make) -> Program:
    try:
        return make()
    except RewriteRefused as err:
        raise PlanMismatchError(
            f"the plan does not fit this model: {err.message}",
            path=model.path,
            layer=err.location.layer if err.location else None,
            hint=REPLAN_HINT,
        ) from err


def _legacy_program_for(model, plan: RewritePlan) -> Program:
    """Plans written before plans recorded their options: try the settings they can have."""
    selection = Selection(only=frozenset(rewrite.name for rewrite in plan.rewrites))
    wanted = _executable(plan)
    pool_scores = _pool_scores(plan)
    for classifier_before_pool in (False, True):
        try:
            program = build_program(
                model, OnnxRewriteOptions(selection, plan.mode, classifier_before_pool, plan.input_shapes, pool_scores)
            )
        except RewriteRefused as err:
            raise UsageError(
                f"the plan does not fit this model: {err.message}",
                hint="make the plan from this very model and apply it unchanged",
            ) from err
        if _executable(program.plan) == wanted:
            return program
    raise UsageError(
        "the plan does not fit this model (its rewrites or edits differ from what the model allows)",
        hint="make the plan from this very model and apply it unchanged",
    )


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
            new.diagnostics.append(
                Diagnostic(
                    "warning", f"onnx.checker (full check) fails on the input and the output: {_first_line(err)}"
                )
            )
            return
        raise RewriteCheckError(
            f"the rewritten model fails onnx.checker: {_first_line(err)}",
            path=old.path,
            hint="this is probably a bug in proto-rewrite; please report it with the model",
        ) from err


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy
