"""Long fuzzing runs over the prototxt parser, the caffemodel reader, the ONNX loader and the exporter.

    python benchmarks/fuzz.py --examples 3000              # 3000 examples per target
    python benchmarks/fuzz.py --examples 500 --target onnx --seed 7
    python benchmarks/fuzz.py --examples 200 --shrink      # stop at the first failure, minimised

The targets, seeds and mutations are those of the suite's fuzz tests
(``tests/hardening/fuzzing.py``): a mutated real file goes through ``proto-rewrite convert`` (or
``export``) in process and must end with exit 0 or a typed error (exit 2), without a traceback, within the
per-example time limit. A failing example's folder is kept (its path is printed) to reproduce it.

Prints, per target: how many examples ran, how many ended with exit 0, how many were refused, the
distinct error classes with their counts, the number of distinct messages (numbers and paths
masked), the slowest example, and every failure. Exit status 1 when anything failed.
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, ROOT / "tests", ROOT / "tests" / "hardening"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from fuzzing import FuzzFailure, run_example, targets  # noqa: E402 - from the paths above
from hypothesis import HealthCheck, given, seed, settings  # noqa: E402

_MASK = re.compile(r"(/[^\s':]+)+|\d+")


class Tally:
    def __init__(self) -> None:
        self.examples = 0
        self.codes = collections.Counter()
        self.errors = collections.Counter()
        self.messages = collections.Counter()
        self.by_class: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.failures: list[str] = []
        self.slowest = (0.0, "")

    def report(self, name: str, messages: int = 0) -> str:
        lines = [
            (
                f"{name}: {self.examples} examples: {self.codes[0]} passed (exit 0), {self.codes[2]} refused with "
                f"a typed error, {len(self.failures)} failures; {len(self.errors)} error classes, "
                f"{len(self.messages)} distinct messages; slowest {self.slowest[0]:.2f} s ({self.slowest[1]})"
            )
        ]
        for error, count in self.errors.most_common():
            lines.append(f"    {count:6d}  {error}")
            lines += [f"              {n:5d}  {text[:150]}" for text, n in self.by_class[error].most_common(messages)]
        lines += [f"  FAILURE: {failure}" for failure in self.failures]
        return "\n".join(lines)


def _describe(failure: str) -> str:
    """The failure's first line, the exception and the innermost frame of its traceback."""
    lines = failure.splitlines()
    frames = [line.strip() for line in lines if line.strip().startswith("File ")]
    raised = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", line)]
    return " | ".join([lines[0]] + raised[-1:] + frames[-1:])


def fuzz(target, examples: int, run_seed: int | None, shrink: bool) -> Tally:
    tally = Tally()

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=run_seed is None and not shrink,
        suppress_health_check=list(HealthCheck),
    )
    @given(target.strategy())
    def example(mutation):
        source, data = mutation
        start = time.perf_counter()
        try:
            outcome = run_example(target, source, data)
        except FuzzFailure as failure:
            tally.examples += 1
            tally.failures.append(_describe(str(failure)))
            if shrink:
                raise
            return
        elapsed = time.perf_counter() - start
        tally.examples += 1
        tally.codes[outcome.code] += 1
        if outcome.error:
            tally.errors[outcome.error] += 1
            tally.messages[_MASK.sub("#", outcome.message)] += 1
            tally.by_class[outcome.error][_MASK.sub("#", outcome.message)] += 1
        if elapsed > tally.slowest[0]:
            tally.slowest = (elapsed, source.name)

    if run_seed is not None:
        example = seed(run_seed)(example)
    try:
        example()
    except FuzzFailure as failure:
        print(f"shrunk failing example:\n{failure}", file=sys.stderr)
    return tally


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=1000, help="examples per target (default 1000)")
    parser.add_argument(
        "--target",
        action="append",
        choices=("prototxt", "caffemodel", "onnx", "export"),
        help="fuzz only this target (repeatable; default: all four; export: mutated prototxts "
        "through the Caffe -> ONNX exporter)",
    )
    parser.add_argument("--seed", type=int, help="hypothesis seed (default: a fixed, derandomized run)")
    parser.add_argument(
        "--messages",
        type=int,
        default=0,
        metavar="K",
        help="also print the K most frequent messages of each error class",
    )
    parser.add_argument("--shrink", action="store_true", help="stop at the first failure and minimise it")
    args = parser.parse_args(argv)
    chosen = targets()
    total = Tally()
    start = time.perf_counter()
    for name in args.target or sorted(chosen):
        tally = fuzz(chosen[name], args.examples, args.seed, args.shrink)
        print(tally.report(name, args.messages), flush=True)
        total.examples += tally.examples
        total.codes.update(tally.codes)
        total.errors.update(tally.errors)
        total.messages.update(tally.messages)
        total.failures += tally.failures
    print(
        f"total: {total.examples} examples in {time.perf_counter() - start:.0f} s, {total.codes[0]} passed, "
        f"{total.codes[2]} typed errors, {len(total.errors)} error classes, {len(total.messages)} distinct "
        f"messages, {len(total.failures)} failures"
    )
    return 1 if total.failures else 0


if __name__ == "__main__":
    sys.exit(main())
