"""Numerical equivalence of two models with onnxruntime: inputs, runs, comparison, report."""
