"""InnerProduct -> Convolution for Caffe nets: the names callers import, from
:mod:`proto_rewrite.caffe.planner` (the plan) and :mod:`proto_rewrite.caffe.apply` (executing it)."""

from proto_rewrite.caffe.apply import apply_caffe_plan
from proto_rewrite.caffe.planner import CaffeRewriteOptions, plan_caffe_rewrite

__all__ = ["CaffeRewriteOptions", "apply_caffe_plan", "plan_caffe_rewrite"]
