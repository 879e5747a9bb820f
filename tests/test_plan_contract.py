"""The plan as a contract: apply refuses a plan that does not fit the model, names the first
difference, and honours a plan whose rewrites were edited into skips. Both formats."""

from __future__ import annotations

import dataclasses

import pytest
from corpus import SAMPLES

from proto_rewrite.caffe.fc_to_conv import apply_caffe_plan, plan_caffe_rewrite
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.errors import PlanMismatchError
from proto_rewrite.onnx.model import load_onnx
from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite
from proto_rewrite.rewrite_plan import Reason, RewritePlan, Skip


def _onnx(name, mode="fcn"):
    model = load_onnx(SAMPLES / "onnx" / f"{name}.onnx")
    return model, plan_onnx_rewrite(model, mode=mode)


def _caffe(name, mode="fcn"):
    from proto_rewrite.caffe.fc_to_conv import CaffeRewriteOptions

    model = load_caffe(SAMPLES / name / f"{name}.prototxt")
    return model, plan_caffe_rewrite(model, CaffeRewriteOptions(mode=mode))


FORMATS = {
    "onnx": (lambda mode="fcn": _onnx("vgg_mini", mode), lambda: _onnx("lenet"), apply_onnx_plan),
    "caffe": (lambda mode="fcn": _caffe("caffenet_mini", mode), lambda: _caffe("lenet"), apply_caffe_plan),
}


def _through_json(plan: RewritePlan) -> RewritePlan:
    return RewritePlan.from_dict(plan.to_dict())


@pytest.mark.parametrize("fmt", FORMATS)
def test_plan_records_fingerprint_and_options(fmt):
    make, _, apply = FORMATS[fmt]
    model, plan = make()
    assert plan.fingerprint.startswith("blake2b-sampled:") and plan.options["selection"] == {
        "only": None,
        "match": None,
        "exclude": [],
    }
    again = _through_json(plan)
    assert again.fingerprint == plan.fingerprint and again.options == plan.options
    apply(model, again)  # the plan as saved applies


@pytest.mark.parametrize("fmt", FORMATS)
def test_plan_of_another_model_is_refused(fmt):
    make, other, apply = FORMATS[fmt]
    _, plan = make()
    other_model, _ = other()
    with pytest.raises(PlanMismatchError, match="another model") as err:
        apply(other_model, _through_json(plan))
    assert "--dry-run --save-plan" in err.value.hint


@pytest.mark.parametrize("fmt", FORMATS)
def test_edited_kernel_is_refused(fmt):
    """The nasty edit: the same element count in another kernel shape."""
    make, _, apply = FORMATS[fmt]
    model, plan = make()
    edited = _through_json(plan)
    first = edited.rewrites[0]
    kh, kw = first.kernel
    edited.rewrites[0] = dataclasses.replace(first, kernel=(kh * kw, 1))
    with pytest.raises(
        PlanMismatchError,
        match=rf"rewrite '{first.name}': kernel \[{kh * kw}, 1\] in the plan, "
        rf"\[{kh}, {kw}\] from the model",
    ):
        apply(model, edited)


@pytest.mark.parametrize("fmt", FORMATS)
def test_edited_edit_is_refused(fmt):
    make, _, apply = FORMATS[fmt]
    model, plan = make("exact")  # exact mode: a Flatten where each chain ends
    edited = _through_json(plan)
    assert edited.edits
    edited.edits[0] = dataclasses.replace(edited.edits[0], name="somewhere-else")
    with pytest.raises(PlanMismatchError, match="edit 1"):
        apply(model, edited)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_rewrite_edited_into_a_skip_is_honoured(fmt):
    make, _, apply = FORMATS[fmt]
    model, plan = make()
    edited = _through_json(plan)
    dropped = edited.rewrites.pop()
    edited.skips.append(Skip(dropped.name, dropped.op_before, Reason.NOT_SELECTED, "dropped in review"))
    converted = apply(model, edited)
    if fmt == "onnx":
        ops = {node.name: node.op_type for node in converted.to_proto().graph.node}
        assert ops[dropped.name] in ("Gemm", "MatMul")
        assert all(ops[r.new_name] == "Conv" for r in edited.rewrites)
    else:
        types = {layer.name: layer.type for layer in converted.net.layer}
        assert types[dropped.name] == "InnerProduct"
        assert all(types[r.new_name] == "Convolution" for r in edited.rewrites)
