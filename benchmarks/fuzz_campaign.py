"""A fuzz campaign over every target of the hardening harness, counting each exit code.

    python benchmarks/fuzz_campaign.py                     # 10 000 cases over all targets
    python benchmarks/fuzz_campaign.py --cases 500 --seed 3
    python benchmarks/fuzz_campaign.py --cases 2000 --target npz --target plan

The targets are those of ``tests/hardening/fuzzing.py``: mutated prototxts, caffemodels and ONNX
models through ``convert`` / ``export``, and the side inputs (``--plan`` JSON through ``diff``,
``--inputs`` npz through ``validate``, ``--caffe-schema`` through ``inspect``) and hostile
environment variables around a mutated prototxt. The cases are shared out over the targets by
weight (the subprocess targets, slower, get fewer). Every case is counted by its exit code,
whatever it is; a case that ends otherwise than its target allows (exit 3, a traceback, a timeout,
a signal, files left behind by an error) is a failure, printed with the folder that reproduces it.

Prints one line per target and a total: cases, the count of each exit code, failures, seconds.
Exit status 1 when there was a failure (the target is zero exit 3 and zero failures).
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, ROOT / "tests", ROOT / "tests" / "hardening"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from fuzzing import run_example, targets  # noqa: E402
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

WEIGHTS = {
    "prototxt": 3,
    "caffemodel": 3,
    "onnx": 3,
    "export": 1,
    "plan": 2,
    "npz": 1,
    "schema": 0.5,
    "environment": 0.5,
}


def share(cases: int, names: list[str]) -> dict[str, int]:
    """``cases`` split over ``names`` by weight, summing to ``cases`` exactly."""
    total = sum(WEIGHTS[name] for name in names)
    counts = {name: int(cases * WEIGHTS[name] / total) for name in names}
    for name in names[: cases - sum(counts.values())]:
        counts[name] += 1
    return counts


def campaign(target, cases: int, run_seed: int) -> tuple[collections.Counter, list[str], float]:
    codes: collections.Counter = collections.Counter()
    failures: list[str] = []
    start = time.perf_counter()

    @seed(run_seed)
    @settings(max_examples=cases, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(target.strategy())
    def example(mutation):
        source, data, *env = mutation
        outcome = run_example(target, source, data, env=env[0] if env else None, check=False)
        codes[outcome.code] += 1
        if outcome.problem:
            failures.append(outcome.problem.splitlines()[0] + "\n    " + outcome.stderr.strip()[-600:])

    example()
    return codes, failures, time.perf_counter() - start


def _codes(codes: collections.Counter) -> str:
    return ", ".join(f"exit {code}: {count}" for code, count in sorted(codes.items())) or "none"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000, help="cases in all (default 10000)")
    parser.add_argument("--target", action="append", choices=sorted(WEIGHTS), help="only this target (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (default 0)")
    args = parser.parse_args(argv)
    chosen = targets()
    names = args.target or sorted(WEIGHTS)
    total_codes: collections.Counter = collections.Counter()
    total_failures: list[str] = []
    start = time.perf_counter()
    for name, cases in share(args.cases, names).items():
        codes, failures, seconds = campaign(chosen[name], cases, args.seed)
        print(
            f"{name}: {sum(codes.values())} cases in {seconds:.0f} s: {_codes(codes)}; {len(failures)} failures",
            flush=True,
        )
        for failure in failures:
            print(f"  FAILURE {failure}", flush=True)
        total_codes.update(codes)
        total_failures += failures
    print(
        f"total: {sum(total_codes.values())} cases in {time.perf_counter() - start:.0f} s: {_codes(total_codes)}; "
        f"{len(total_failures)} failures"
    )
    return 1 if total_failures or total_codes.get(3) else 0


if __name__ == "__main__":
    sys.exit(main())
