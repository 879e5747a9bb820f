"""The validation report: a text table, or the JSON of ``schemas/report.schema.json``."""

from __future__ import annotations

from proto_rewrite.shape_text import shape_text
from proto_rewrite.validation.relations import FCN, SPATIAL_MEAN
from proto_rewrite.validation.stats import SCALE

# ``result``: a ``compare_models.ValidationResult``, ``tensor``: one of its ``TensorResult``s (not
# imported: ``compare_models`` imports this module to render its results).

REPORT_VERSION = 1


def to_dict(result) -> dict:
    options = result.options
    return {
        "report_version": REPORT_VERSION,
        "kind": "validate",
        "passed": result.passed,
        "model_a": result.model_a,
        "model_b": result.model_b,
        "runtime": {
            "device": options.runtime.device,
            "providers": result.providers,
            "graph_optimizations": options.runtime.optimize,
            "threads": options.runtime.threads,
        },
        "inputs": {name: {"shape": list(shape), "dtype": dtype} for name, (shape, dtype) in result.inputs.items()},
        "seed": None if options.inputs_file else options.seed,
        "trials": len(result.input_values),
        "inputs_file": options.inputs_file,
        "comparison": options.tolerances.rule,
        "input_defaults": [d.to_dict() for d in result.input_defaults],
        "outputs": [_tensor(t) for t in result.outputs],
        "intermediates": [_tensor(t) for t in result.intermediates],
        "first_divergence": result.first_divergence,
        "warnings": list(result.warnings),
    }


def _tensor(tensor) -> dict:
    return {
        "name": tensor.name,
        "role": tensor.role,
        "shape_a": list(tensor.shape_a),
        "shape_b": list(tensor.shape_b),
        "relation": tensor.relation,
        "dtype": tensor.dtype,
        **tensor.comparison.to_dict(),
    }


def _row(tensor) -> tuple[str, ...]:
    c = tensor.comparison
    shapes = (
        shape_text(tensor.shape_a)
        if tensor.relation not in (FCN, SPATIAL_MEAN)
        else (
            f"{shape_text(tensor.shape_a)} ~ {shape_text(tensor.shape_b)}"
            + (" (mean)" if tensor.relation == SPATIAL_MEAN else "")
        )
    )
    cosine = "-" if c.cosine_similarity is None else f"{c.cosine_similarity:.6f}"
    scale = f"{c.scale_error:.3g}" + (f" (<= {c.scale_tol:g})" if c.rule == SCALE else "")
    return (
        tensor.name,
        shapes,
        f"{c.absolute.max:.3g}",
        f"{c.absolute.mean:.3g}",
        f"{c.absolute.p99:.3g}",
        f"{c.relative.max:.3g}",
        scale,
        cosine,
        f"{c.mismatches}/{c.elements}",
        f"{c.atol:g}/{c.rtol:g}",
        f"{c.min_atol:.3g}/{c.min_rtol:.3g}",
        "ok" if c.passed else "FAIL",
    )


HEADER = (
    "tensor",
    "shape",
    "max abs",
    "mean abs",
    "p99 abs",
    "max rel",
    "err/max|A|",
    "cosine",
    "beyond atol/rtol",
    "atol/rtol",
    "min atol/rtol",
    "result",
)


def rule_line(rule: str) -> str:
    if rule == SCALE:
        return (
            "comparison: scale-aware, an output passes when max|A-B| <= tol x max|A| (err/max|A|); "
            "element-wise figures beside it (--compare elementwise judges by them)"
        )
    return "comparison: element-wise, every element within atol + rtol x |A|"


def render_text(result) -> str:
    options = result.options
    lines = [
        f"validate {result.model_a} (A, reference) against {result.model_b} (B)",
        f"runtime: {options.runtime.device} ({', '.join(result.providers)}), graph optimisations "
        f"{'on' if options.runtime.optimize else 'off'}; {len(result.input_values)} trial(s)"
        + ("" if options.inputs_file else f", seed {options.seed}"),
    ]
    for name, (shape, dtype) in result.inputs.items():
        lines.append(f"input {name}: {shape_text(shape)} {dtype}")
    for default in result.input_defaults:
        lines.append(f"default shape: {default.describe()}")
    lines.append(rule_line(options.tolerances.rule))
    rows = [HEADER] + [_row(t) for t in result.outputs]
    if result.intermediates:
        rows += [("-- intermediate / softmax input --",) + ("",) * (len(HEADER) - 1)]
        rows += [_row(t) for t in result.intermediates]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    lines.append("")
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    fcn = [t.name for t in result.outputs if t.relation == FCN]
    if fcn:
        lines.append(f"\n(N, M) vs (N, M, 1, 1) compared as the same values (fcn rewrite): {', '.join(fcn)}")
    averaged = [t.name for t in result.outputs if t.relation == SPATIAL_MEAN]
    if averaged:
        lines.append(
            f"(N, K) vs B's (N, K, h, w) score map compared through the map's spatial mean, what A's global "
            f"average pool computes (--classifier-before-pool): {', '.join(averaged)}"
        )
    if result.first_divergence:
        lines.append(f"first diverging intermediate tensor (in A's order): {result.first_divergence}")
    for warning in result.warnings:
        lines.append(f"warning: {warning}")
    return "\n".join(lines) + "\n"


def summary_line(result) -> str:
    failed = [t.name for t in result.outputs if not t.comparison.passed]
    if not failed:
        return f"PASSED: {len(result.outputs)} output(s) of {result.model_b} match {result.model_a}"
    return f"FAILED: {', '.join(failed)} of {result.model_b} differ from {result.model_a} beyond tolerance"
