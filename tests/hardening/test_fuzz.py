"""Fuzz the prototxt parser, the caffemodel reader and the ONNX loader (through ``convert``) with
mutated real files: only typed errors, never a traceback, each example within its time limit.

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
TARGETS = targets()
SETTINGS = settings(max_examples=EXAMPLES, deadline=timedelta(seconds=10), database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz(name):
    target = TARGETS[name]

    @SETTINGS
    @given(target.strategy())
    def example(mutation):
        seed, data = mutation
        run_example(target, seed, data)

    example()
