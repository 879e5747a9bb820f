"""InnerProduct -> Convolution for Caffe nets: executing a plan.

``apply_caffe_plan`` checks the plan against the model (it is made again from the model with the
plan's options and must agree), replays it on a copy of the net and transforms the weights, and
nothing else.
"""

from __future__ import annotations

from proto_rewrite.caffe.model import CaffeModel
from proto_rewrite.caffe.net_edit import apply_edit, convert_layer, copy_net
from proto_rewrite.caffe.planner import CaffeRewriteOptions, plan_caffe_rewrite
from proto_rewrite.errors import PlanMismatchError, RewriteRefused, UsageError
from proto_rewrite.fc_math import fc_weight_to_kernel
from proto_rewrite.fingerprint import caffe_fingerprint
from proto_rewrite.rewrite_plan import (
    FcRewrite,
    RewritePlan,
    Selection,
    first_difference,
)


def apply_caffe_plan(model: CaffeModel, plan: RewritePlan) -> CaffeModel:
    """Execute ``plan``: a new model with the rewritten net and weights; ``model`` is untouched.

    The plan is made again from ``model`` with the plan's own options and must agree with it,
    rewrite by rewrite (kernel, shapes, weights) and edit by edit; a plan whose rewrites were
    edited into skips is honoured. Otherwise a :class:`PlanMismatchError` names the first
    difference (another model, a stale or hand-edited plan)."""
    if plan.model_format != "caffe":
        raise UsageError(f"this is a plan for a {plan.model_format} model, not a Caffe one")
    plan = _checked(model, plan)
    net = copy_net(model.net)
    weights = dict(model.weights)
    for rewrite in plan.rewrites:
        for edit in plan.edits:
            if edit.serves == rewrite.name:
                apply_edit(net, edit)
        convert_layer(net, rewrite)
        arrays = weights.pop(rewrite.name, None)
        if arrays:
            transposed = model.layer(rewrite.name).inner_product_param.transpose
            weights[rewrite.new_name] = [_kernel(arrays[0], rewrite, transposed), *arrays[1:]]
    for edit in plan.edits:
        if edit.serves is None:
            apply_edit(net, edit)
    return CaffeModel(
        net=net,
        weights=weights,
        prototxt_path=model.prototxt_path,
        weights_path=model.weights_path,
        source_format=model.source_format,
        upgrades=list(model.upgrades),
        excluded_layers=list(model.excluded_layers),
    )


REPLAN_HINT = (
    "make the plan again from this model (convert MODEL --dry-run --save-plan PLAN.json), or apply it to "
    "the model it was made from; a plan may drop rewrites, but not change them"
)


def _checked(model: CaffeModel, plan: RewritePlan) -> RewritePlan:
    """The plan as the model gives it with the plan's options, when the two agree."""
    path = model.prototxt_path
    if plan.fingerprint and plan.fingerprint != caffe_fingerprint(model):
        raise PlanMismatchError(
            "the plan does not fit this model: it was made from another model (or another "
            "version of it), the fingerprints differ",
            path=path,
            hint=REPLAN_HINT,
        )
    if not plan.options:
        return plan  # a plan written before plans recorded their options: executed as it is

    def derive(selection=None) -> RewritePlan:
        try:
            return plan_caffe_rewrite(model, CaffeRewriteOptions.from_plan(plan, selection))
        except RewriteRefused as err:
            raise PlanMismatchError(
                f"the plan does not fit this model: {err.message}",
                path=path,
                layer=err.location.layer,
                hint=REPLAN_HINT,
            ) from err

    derived = derive()
    problem = first_difference(plan, derived)
    if problem is None:
        return derived
    wanted = {r.name for r in plan.rewrites}
    if wanted < {r.name for r in derived.rewrites}:  # rewrites dropped by hand: plan what is left
        derived = derive(Selection(only=frozenset(wanted)))
        problem = first_difference(plan, derived, edits=False)
        if problem is None:
            return derived
    raise PlanMismatchError(f"the plan does not fit this model: {problem}", path=path, hint=REPLAN_HINT)


def _kernel(weight, rewrite: FcRewrite, transposed: bool):
    _, channels, height, width = rewrite.input_shape
    return fc_weight_to_kernel(weight, rewrite.out_channels, channels, height, width, transposed=transposed).weight
