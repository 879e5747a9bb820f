"""Streaming tests: make the ONNX test helpers (onnx_zoo) importable, as tests/onnx does."""

import sys
from pathlib import Path

ONNX_TESTS = str(Path(__file__).resolve().parent.parent / "onnx")
if ONNX_TESTS not in sys.path:
    sys.path.insert(0, ONNX_TESTS)
