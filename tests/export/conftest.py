"""Export tests: helper modules beside the tests, and the per-net error table in the summary."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

pytest.importorskip("onnxruntime")

ERROR_TABLE: list[tuple[str, str, str, float]] = []  # (net, input scale, output, max relative error)


@pytest.fixture
def error_table():
    return ERROR_TABLE


def pytest_terminal_summary(terminalreporter):
    if not ERROR_TABLE:
        return
    terminalreporter.section("Caffe -> ONNX export: onnxruntime vs OpenCV dnn (max abs error / max |output|)")
    for net, scale, output, error in sorted(ERROR_TABLE):
        terminalreporter.write_line(f"{net:34s} {scale:7s} {output:28s} {error:.2e}")
