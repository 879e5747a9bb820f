"""Fuzz the prototxt parser, the caffemodel reader and the ONNX loader (through ``convert``) with
mutated real files, and the side inputs (--plan JSON, --inputs npz, --caffe-schema) and hostile
environments: only typed errors, never a traceback, each example within its time limit.

A modest number of examples per reader keeps the suite fast; ``benchmarks/fuzz.py --examples N``
runs the same targets for as long as wanted. ``HARDENING_FUZZ_EXAMPLES`` changes the count here.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from fuzzing import run_example, targets
from hypothesis import HealthCheck, given, settings

EXAMPLES = int(os.environ.get("HARDENING_FUZZ_EXAMPLES", "100"))
# The side inputs' targets are slower per example (onnxruntime sessions, subprocesses): fewer here.
SHARE = {"plan": 0.3, "npz": 0.15, "schema": 0.06, "environment": 0.1}
TARGETS = targets()


def _settings(name: str):
    return settings(
        max_examples=max(1, round(EXAMPLES * SHARE.get(name, 1.0))),
        deadline=timedelta(seconds=20),
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
    )


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz(name):
    target = TARGETS[name]

    @_settings(name)
    @given(target.strategy())
    def example(mutation):
        seed, data, *env = mutation
        run_example(target, seed, data, env=env[0] if env else None)

    example()


# Cases the 10 000-case campaign (benchmarks/fuzz_campaign.py) found, kept as regressions.


def test_campaign_case_a_plan_whose_renames_are_not_names():
    import json

    from fuzzing import plan_seeds

    target, seed = TARGETS["plan"], plan_seeds()[1]
    plan = json.loads(seed.data)
    plan["renames"] = {"ip1": ["not", "a", "name"]}
    outcome = run_example(target, seed, json.dumps(plan).encode())
    assert outcome.code == 2 and "renames must map names to names" in outcome.message


def test_campaign_case_an_onnx_input_of_a_huge_declared_batch():
    import onnx
    from fuzzing import onnx_seeds

    target = TARGETS["onnx"]
    seed = next(s for s in onnx_seeds() if s.name == "good.onnx")
    model = onnx.ModelProto.FromString(seed.data)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 249653125  # 134 GiB at float64
    outcome = run_example(target, seed, model.SerializeToString())
    assert outcome.code in (0, 2)  # converted, the fcn proof not run at that size; never a MemoryError
