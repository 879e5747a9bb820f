"""Weight relations: pure numpy, every kind, both directions, and the block-wise paths."""

from __future__ import annotations

import numpy as np
import pytest

from proto_rewrite.fc_math import fc_weight_to_kernel
from proto_rewrite.graphdiff import weights
from proto_rewrite.graphdiff.weights import relate

RNG = np.random.default_rng(7)


def fc(m: int, k: int, dtype=np.float32) -> np.ndarray:
    return RNG.standard_normal((m, k)).astype(dtype)


def test_identical_and_reshaped():
    w = fc(8, 36)
    assert relate(w, w.copy()).kind == "identical"
    kernel = fc_weight_to_kernel(w, 8, 4, 3, 3).weight
    relation = relate(w, kernel)
    assert relation.kind == "reshaped" and relation.text() == "same bytes, new shape"


def test_transposed_fc_weight_becomes_kernel():
    w = fc(36, 8)  # (K, M): Caffe transpose: true, ONNX transB=0 / MatMul
    kernel = fc_weight_to_kernel(w, 8, 4, 3, 3, transposed=True).weight
    assert relate(w, kernel).kind == "transposed"
    one_by_one = np.ascontiguousarray(fc(16, 5).T)
    assert relate(one_by_one, one_by_one.T.reshape(16, 5, 1, 1).copy()).kind == "transposed"


def test_kernel_back_to_a_transposed_matrix():
    kernel = RNG.standard_normal((8, 4, 3, 3)).astype(np.float32)
    back = np.ascontiguousarray(kernel.reshape(8, -1).T)
    assert relate(kernel, back).kind == "transposed"


def test_permuted_kernel_of_an_nhwc_flatten():
    w = fc(8, 36)
    for transposed in (False, True):
        source = np.ascontiguousarray(w.T) if transposed else w
        kernel = fc_weight_to_kernel(source, 8, 4, 3, 3, transposed=transposed, channels_last=True).weight
        relation = relate(source, kernel)
        assert relation.kind == "permuted", transposed
        assert ("transposed" in relation.text()) == transposed


@pytest.mark.parametrize("factor", [0.5, 3.0, -1.25])
def test_scaled_in_each_layout(factor):
    w = fc(8, 36)
    kernel = (fc_weight_to_kernel(w, 8, 4, 3, 3).weight * np.float32(factor)).astype(np.float32)
    relation = relate(w, kernel)
    assert relation.kind == "scaled" and relation.factor == pytest.approx(factor) and relation.layout == "same"
    assert relation.text() == f"scaled x{factor:g}"
    wt = np.ascontiguousarray(w.T)
    kernel_t = fc_weight_to_kernel(wt, 8, 4, 3, 3, transposed=True).weight * np.float32(factor)
    relation = relate(wt, kernel_t)
    assert relation.kind == "scaled" and relation.layout == "transpose" and "transposed" in relation.text()


def test_scaled_bias_and_broadcast_bias():
    bias = RNG.standard_normal(5).astype(np.float32)
    assert relate(bias, bias * np.float32(2)).to_dict()["factor"] == 2.0
    assert relate(np.array([0.25], np.float32), np.full(5, 0.25, np.float32)).kind == "broadcast"
    scaled = relate(np.array(0.25, np.float32), np.full(5, 0.5, np.float32))
    assert scaled.kind == "broadcast" and scaled.factor == 2.0


def test_cast_and_different():
    w = fc(4, 6)
    assert relate(w, w.astype(np.float64)).kind == "cast"
    other = w.copy()
    other[1, 2] += 0.75
    relation = relate(w, other)
    assert relation.kind == "different" and relation.max_abs_diff == pytest.approx(0.75, rel=1e-6)
    assert "max abs diff 0.75" in relation.text()
    grown = relate(w, fc(4, 7))
    assert grown.kind == "different" and grown.max_abs_diff is None and "element count" in grown.text()


def test_almost_a_scale_is_different():
    w = fc(8, 8)
    b = w * np.float32(0.5)
    b[3, 3] += 1e-3
    assert relate(w, b).kind == "different"


def test_bytes_not_values_decide_identity():
    a = np.array([0.0, np.nan, 1.0], np.float32)
    assert relate(a, a.copy()).kind == "identical"  # NaN == NaN as bytes
    b = np.array([-0.0, np.nan, 1.0], np.float32)
    assert relate(a, b).kind != "identical"  # -0.0 has other bytes than 0.0


def test_zero_weight_is_not_a_scale():
    zeros = np.zeros((3, 4), np.float32)
    assert relate(zeros, np.ones((3, 4), np.float32)).kind == "different"


def test_integer_and_string_tensors():
    shape = np.array([1, -1], np.int64)
    assert relate(shape, shape.copy()).kind == "identical"
    assert relate(shape, np.array([1, 7], np.int64)).kind == "different"
    strings = np.array(["a", "b"], dtype=object)
    assert relate(strings, np.array(["a", "c"], dtype=object)).kind == "different"


def test_blockwise_comparison_covers_every_row(monkeypatch):
    monkeypatch.setattr(weights, "BLOCK_ELEMENTS", 64)  # blocks of one or two rows
    w = fc(37, 60)
    wt = np.ascontiguousarray(w.T)
    assert relate(w, w.reshape(37, 15, 2, 2).copy()).kind == "reshaped"
    assert relate(wt, w.reshape(37, 15, 2, 2).copy()).kind == "transposed"
    last_row = w.reshape(37, 15, 2, 2).copy()
    last_row[-1, -1, -1, -1] += 1
    assert relate(wt, last_row).kind == "different"


def test_to_dict_keeps_json_finite():
    a = np.array([1.0, 2.0], np.float32)
    relation = relate(a, np.array([1.0, np.inf], np.float32))
    assert relation.kind == "different" and relation.to_dict()["max_abs_diff"] is None
