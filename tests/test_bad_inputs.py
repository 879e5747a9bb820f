"""The bad-input table: each malformed input gets its typed error, a message that says where and
what, a hint, exit code 2 from the CLI, no traceback, and leaves its input files untouched."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np
import pytest

from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.caffe.schema import bundled_schema
from proto_rewrite.cli import main
from proto_rewrite.errors import (
    CaffemodelError,
    InputFileError,
    NetStructureError,
    PrototxtSyntaxError,
    UnknownFieldError,
    UnknownLayerTypeError,
    UpgradeError,
    WeightsMismatchError,
)

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite

GOOD = """name: "t"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 4 dim: 4 } } }
layer {
  name: "conv"
  type: "Convolution"
  bottom: "data"
  top: "conv"
  convolution_param { num_output: 3 kernel_size: 3 }
}
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 5 } }
"""


def caffemodel(blobs: dict[str, list[tuple[tuple[int, ...], bool]]], short_by: int = 0) -> bytes:
    """A caffemodel with zero-filled blobs: layer -> [(shape, legacy)]; each blob ``short_by``
    values short of its shape."""
    net = schema.NetParameter()
    for name, shapes in blobs.items():
        layer = net.layer.add(name=name, type="Convolution")
        for shape, legacy in shapes:
            blob = layer.blobs.add()
            blob.data.extend(np.zeros(int(np.prod(shape)) - short_by).tolist())
            if legacy:
                blob.num, blob.channels, blob.height, blob.width = shape
            else:
                blob.shape.dim.extend(shape)
    return net.SerializeToString()


GOOD_WEIGHTS = {"conv": [((3, 2, 3, 3), False), ((3,), False)], "fc": [((5, 12), False), ((5,), False)]}


@dataclass
class Case:
    name: str
    prototxt: str | bytes
    error: type
    message: str  # regex the message must match
    line: int | None = None
    weights: bytes | None = None
    args: tuple[str, ...] = ()
    hint: str | None = None  # regex the hint must match


CASES = [
    Case(
        "missing closing brace",
        GOOD + 'layer { name: "x" type: "ReLU"\n',
        PrototxtSyntaxError,
        r"invalid prototxt",
        line=11,
    ),
    Case(
        "field at the wrong level",
        GOOD.replace('top: "conv"\n', 'top: "conv"\n  kernel_size: 3\n'),
        UnknownFieldError,
        r"unknown field 'kernel_size' in LayerParameter",
        line=8,
        hint="ConvolutionParameter",
    ),
    Case(
        "misspelt field",
        GOOD.replace("num_output: 3", "num_ouput: 3"),
        UnknownFieldError,
        r"unknown field 'num_ouput' in ConvolutionParameter",
        line=8,
        hint="num_output",
    ),
    Case(
        "string for a number",
        GOOD.replace("num_output: 3", 'num_output: "three"'),
        PrototxtSyntaxError,
        r"invalid prototxt.*integer",
        line=8,
    ),
    Case(
        "misspelt V1 enum type",
        'layers { name: "c" type: CONVOLUTON top: "c" }\n',
        PrototxtSyntaxError,
        r"'CONVOLUTON' is not a value of V1LayerParameter.LayerType",
        line=1,
        hint="CONVOLUTION",
    ),
    Case(
        "unknown layer type (strict)",
        GOOD.replace('type: "InnerProduct"', 'type: "InnerProdukt"'),
        UnknownLayerTypeError,
        r"unknown layer type 'InnerProdukt'",
        line=10,
        args=("--strict",),
        hint="InnerProduct",
    ),
    Case(
        "bottom never produced",
        GOOD.replace('bottom: "conv"', 'bottom: "conv9"'),
        NetStructureError,
        r"bottom 'conv9' is not produced",
        line=10,
    ),
    Case(
        "duplicate layer name",
        GOOD.replace('name: "fc"', 'name: "conv"'),
        NetStructureError,
        r"layer name 'conv' is used twice",
    ),
    Case(
        "top produced twice",
        GOOD.replace('top: "fc"', 'top: "data"'),
        NetStructureError,
        r"top 'data' is already produced by layer 'data'",
        line=10,
    ),
    Case(
        "unknown V0 layer type", 'layers { layer { name: "w" type: "warp" } top: "w" }\n', UpgradeError, r"warp", line=1
    ),
    Case(
        "V1 and V2 layers mixed",
        GOOD + 'layers { name: "r" type: RELU bottom: "fc" top: "fc" }\n',
        UpgradeError,
        r"layer.*layers|layers.*layer",
    ),
    Case(
        "binary file as prototxt", b"\x08\x96\x01\xff\xfe\x00\x12", InputFileError, r"not UTF-8 text", hint="caffemodel"
    ),
    Case(
        "prototxt given as weights",
        GOOD,
        CaffemodelError,
        r"not a valid caffemodel",
        weights=GOOD.encode(),
        hint="prototxt",
    ),
    Case("truncated caffemodel", GOOD, CaffemodelError, r"runs past the end", weights=caffemodel(GOOD_WEIGHTS)[:-9]),
    Case("empty caffemodel", GOOD, CaffemodelError, r"empty", weights=b""),
    Case(
        "blob count mismatch",
        GOOD.replace("num_output: 5 }", "num_output: 5 bias_term: false }"),
        WeightsMismatchError,
        r"holds 2 blobs for this InnerProduct layer.*has 1",
        line=10,
        weights=caffemodel(GOOD_WEIGHTS),
    ),
    Case(
        "kernel shape mismatch",
        GOOD.replace("kernel_size: 3", "kernel_size: 5").replace("dim: 4 dim: 4", "dim: 8 dim: 8"),
        WeightsMismatchError,
        r"blob 0 .* shape \[3, 2, 3, 3\].*expects \(3, 2, 5, 5\)",
        line=3,
        weights=caffemodel(GOOD_WEIGHTS),
    ),
    Case(
        "input too small for a kernel",
        GOOD.replace("kernel_size: 3", "kernel_size: 5"),
        NetStructureError,
        r"kernel \(5\) does not fit",
        line=3,
    ),
    Case(
        "legacy blob shape incompatible",
        GOOD,
        WeightsMismatchError,
        r"legacy 4-D.*expects \(5, 12\)",
        line=10,
        weights=caffemodel({**GOOD_WEIGHTS, "fc": [((5, 12, 1, 1), True), ((1, 1, 5, 2), True)]}),
    ),
    Case(
        "blob values do not fill the shape",
        GOOD,
        CaffemodelError,
        r"needs",
        weights=caffemodel(GOOD_WEIGHTS, short_by=1),
    ),
    Case(
        "num_output set twice",
        GOOD.replace("num_output: 3", "num_output: 3 num_output: 4"),
        PrototxtSyntaxError,
        r"num_output",
        line=8,
    ),
]


def write_case(case: Case, folder):
    prototxt = folder / "model.prototxt"
    data = case.prototxt if isinstance(case.prototxt, bytes) else case.prototxt.encode()
    prototxt.write_bytes(data)
    weights = None
    if case.weights is not None:
        weights = folder / "weights.caffemodel"
        weights.write_bytes(case.weights)
    return prototxt, weights


def digest(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_table_has_enough_cases():
    assert len(CASES) >= 15 and len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_library_raises_typed_error(case, tmp_path):
    prototxt, weights = write_case(case, tmp_path)
    with pytest.raises(case.error) as info:
        load_caffe(prototxt, weights, strict="--strict" in case.args)
    err = info.value
    assert type(err) is case.error
    assert re.search(case.message, err.message), err.message
    assert err.location.path is not None
    if case.line is not None:
        assert err.location.line == case.line, str(err)
    if case.hint is not None:
        assert err.hint and re.search(case.hint, err.hint), err.hint


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_cli_reports_without_traceback(case, tmp_path):
    prototxt, weights = write_case(case, tmp_path)
    before = digest(tmp_path)
    argv = ["inspect", str(prototxt), *case.args]
    argv += ["--weights", str(weights)] if weights else ["--no-weights"]
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, stdout=out, stderr=err) == 2
    text = err.getvalue()
    assert text.startswith("error: ") and "Traceback" not in text
    assert str(tmp_path) in text  # names the file
    if case.line is not None:
        assert f":{case.line}" in text
    assert digest(tmp_path) == before  # inputs untouched, nothing new written
