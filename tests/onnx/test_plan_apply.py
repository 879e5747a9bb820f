"""The plan is pure data, apply executes exactly it; outputs are byte-deterministic and a second
conversion changes nothing."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnx_zoo as zoo
import pytest
from onnx_check import convert

from proto_rewrite.errors import UsageError
from proto_rewrite.onnx.model import OnnxModel, load_onnx, save_onnx
from proto_rewrite.onnx.rewrite import apply_onnx_plan, plan_onnx_rewrite
from proto_rewrite.rewrite_plan import RewritePlan

ROOT = Path(__file__).resolve().parents[2]
BUILDERS = [
    zoo.flatten_gemm,
    zoo.dynamic_chain,
    zoo.matmul_add,
    zoo.gap_gemm,
    zoo.mlp,
    zoo.nhwc,
    zoo.activations,
    zoo.two_outputs,
    zoo.shared_weight,
]


def _saved(model, path) -> bytes:
    save_onnx(model, path)
    return path.read_bytes()


@pytest.mark.parametrize("mode", ["fcn", "exact"])
@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_idempotent(builder, mode, tmp_path):
    _, once = convert(builder(13, np.float32), mode=mode)
    first = _saved(once, tmp_path / "once.onnx")
    plan, twice = convert(load_onnx(tmp_path / "once.onnx"), mode=mode)
    assert not plan.changes_anything, plan.render_text()
    assert _saved(twice, tmp_path / "twice.onnx") == first


@pytest.mark.parametrize("builder", BUILDERS, ids=lambda b: b.__name__)
def test_deterministic(builder, tmp_path):
    model = OnnxModel.from_proto(builder(13, np.float32))
    runs = [_saved(convert(model, mode="fcn")[1], tmp_path / f"{i}.onnx") for i in range(2)]
    assert runs[0] == runs[1]


def test_deterministic_across_processes(tmp_path):
    source = tmp_path / "vgg.onnx"
    onnx.save(zoo.dynamic_chain(13, np.float32), source)
    script = (
        "import sys; from proto_rewrite.onnx.model import load_onnx, save_onnx; "
        "from proto_rewrite.onnx.rewrite import plan_onnx_rewrite, apply_onnx_plan; "
        "m = load_onnx(sys.argv[1]); save_onnx(apply_onnx_plan(m, plan_onnx_rewrite(m)), sys.argv[2])"
    )
    outputs = []
    for index in range(2):
        out = tmp_path / f"out{index}.onnx"
        subprocess.run(
            [sys.executable, "-c", script, str(source), str(out)],
            check=True,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "PYTHONHASHSEED": str(index)},
        )
        outputs.append(out.read_bytes())
    model = load_onnx(source)
    assert outputs[0] == outputs[1] == _saved(apply_onnx_plan(model, plan_onnx_rewrite(model)), tmp_path / "here.onnx")


def test_plan_is_pure():
    model = OnnxModel.from_proto(zoo.dynamic_chain(13, np.float32))
    before = model.to_bytes()
    plan_onnx_rewrite(model, mode="fcn")
    plan_onnx_rewrite(model, mode="exact", classifier_before_pool=True)
    assert model.to_bytes() == before


@pytest.mark.parametrize(
    "options", [{"mode": "fcn"}, {"mode": "exact"}, {"mode": "fcn", "classifier_before_pool": True}]
)
def test_plan_through_json(options, tmp_path):
    model = OnnxModel.from_proto(zoo.gap_gemm(13, np.float32))
    plan = plan_onnx_rewrite(model, **options)
    again = RewritePlan.from_dict(json.loads(plan.to_json()))
    assert _saved(apply_onnx_plan(model, again), tmp_path / "a.onnx") == _saved(
        apply_onnx_plan(model, plan), tmp_path / "b.onnx"
    )


def test_plan_of_another_model_is_refused():
    plan = plan_onnx_rewrite(OnnxModel.from_proto(zoo.flatten_gemm(13, np.float32)))
    with pytest.raises(UsageError, match="does not fit"):
        apply_onnx_plan(OnnxModel.from_proto(zoo.matmul_add(13, np.float32)), plan)
    edited = RewritePlan.from_dict(plan.to_dict())
    edited.edits.pop()
    with pytest.raises(UsageError, match="does not fit"):
        apply_onnx_plan(OnnxModel.from_proto(zoo.flatten_gemm(13, np.float32)), edited)


def test_empty_plan_changes_nothing(tmp_path):
    source = tmp_path / "m.onnx"
    onnx.save(zoo.trans_a(13, np.float32), source)
    model = load_onnx(source)
    plan = plan_onnx_rewrite(model)
    assert not plan.changes_anything and "nothing to rewrite" in plan.render_text()
    assert _saved(apply_onnx_plan(model, plan), tmp_path / "out.onnx") == source.read_bytes()


@pytest.mark.parametrize(
    "options,words",
    [
        ({"mode": "dense"}, "unknown mode"),
        ({"input_shapes": {"y": (1, 3, 8, 8)}}, "not an input"),
        ({"input_shapes": {"x": (1, 3, 8)}}, "dimensions"),
        ({"input_shapes": {"x": (1, 3, 9, 9)}}, "fixed shape"),
    ],
)
def test_bad_options(options, words):
    model = OnnxModel.from_proto(zoo.flatten_gemm(13, np.float32))
    with pytest.raises(UsageError, match=words):
        plan_onnx_rewrite(model, **options)


def test_unknown_selected_name():
    from proto_rewrite.rewrite_plan import Selection

    model = OnnxModel.from_proto(zoo.flatten_gemm(13, np.float32))
    with pytest.raises(UsageError, match="not FC layers"):
        plan_onnx_rewrite(model, selection=Selection(only=frozenset({"conv"})))


def test_value_info_is_refreshed():
    original = zoo.flatten_gemm(13, np.float32)
    original.graph.value_info.extend(onnx.shape_inference.infer_shapes(original).graph.value_info)
    _, new = convert(original, mode="fcn")
    proto = new.to_proto()
    names = {o for n in proto.graph.node for o in n.output}
    infos = {vi.name: vi for vi in proto.graph.value_info}
    assert infos and set(infos) <= names and "flatten_out" not in infos
    assert len(infos["fc6_out"].type.tensor_type.shape.dim) == 4
    onnx.checker.check_model(proto, full_check=True)
