"""load_caffe / save_caffe: weights attached by name and checked, phases, layer types, the
same-stem weights rule, and all-or-nothing saving."""

import numpy as np
import pytest

from proto_rewrite.caffe.caffemodel import read_caffemodel, write_caffemodel
from proto_rewrite.caffe.model import AUTO, load_caffe, save_caffe
from proto_rewrite.caffe.prototxt import parse_net_text
from proto_rewrite.caffe.schema import bundled_schema
from proto_rewrite.errors import InputFileError, OutputError, UnknownLayerTypeError, UsageError

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite

NET = """name: "m"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 3 dim: 3 } } }
layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 4 } }
layer { name: "bn" type: "BatchNorm" bottom: "fc" top: "fc" }
"""


def fc_weights():
    rng = np.random.RandomState(3)
    return {
        "fc": [rng.randn(4, 18).astype(np.float32), rng.randn(4).astype(np.float32)],
        "bn": [np.ones(4, np.float32), np.ones(4, np.float32), np.ones(1, np.float32)],
    }


def write_model(folder, text=NET, weights=None, stem="m"):
    prototxt = folder / f"{stem}.prototxt"
    prototxt.write_text(text)
    caffemodel = folder / f"{stem}.caffemodel"
    write_caffemodel(caffemodel, parse_net_text(text, prototxt), weights or fc_weights())
    return prototxt, caffemodel


def test_same_stem_weights_are_found(tmp_path):
    prototxt, caffemodel = write_model(tmp_path)
    model = load_caffe(prototxt)  # AUTO by default
    assert model.weights_path == str(caffemodel)
    assert load_caffe(prototxt, weights=None).weights == {}
    caffemodel.unlink()
    assert load_caffe(prototxt, AUTO).weights_path is None


def test_legacy_blob_shapes_become_the_layer_shapes(tmp_path):
    prototxt = tmp_path / "m.prototxt"
    prototxt.write_text(NET)
    net = schema.NetParameter()
    layer = net.layers.add(name="fc", type=schema.V1LayerParameter.INNER_PRODUCT)
    weight = layer.blobs.add(num=1, channels=1, height=4, width=18)
    weight.data.extend(range(72))
    bias = layer.blobs.add(num=1, channels=1, height=1, width=4)
    bias.data.extend(range(4))
    legacy = tmp_path / "legacy.caffemodel"
    legacy.write_bytes(net.SerializeToString())
    model = load_caffe(prototxt, legacy)
    assert [a.shape for a in model.weights["fc"]] == [(4, 18), (4,)]
    assert any("'bn' (BatchNorm) has no weights" in d.message for d in model.diagnostics)


def test_caffemodel_layers_missing_from_prototxt_are_reported(tmp_path):
    prototxt, _ = write_model(tmp_path)
    trained = (
        NET
        + 'layer { name: "extra" type: "InnerProduct" bottom: "fc" top: "extra" inner_product_param { num_output: 2 } }\n'
    )
    weights = {**fc_weights(), "extra": [np.zeros((2, 4), np.float32), np.zeros(2, np.float32)]}
    other = tmp_path / "other.caffemodel"
    write_caffemodel(other, parse_net_text(trained, "x"), weights)
    model = load_caffe(prototxt, other)
    messages = [d.message for d in model.diagnostics]
    assert any("'extra' (InnerProduct, 2 blobs) is not in the prototxt" in m for m in messages)
    assert "extra" not in model.weights


def test_save_round_trip_keeps_weights_and_bytes(tmp_path):
    prototxt, caffemodel = write_model(tmp_path)
    model = load_caffe(prototxt)
    out = tmp_path / "out"
    out.mkdir()
    save_caffe(model, out / "m.prototxt", out / "m.caffemodel")
    assert (out / "m.caffemodel").read_bytes() == caffemodel.read_bytes()
    again = load_caffe(out / "m.prototxt")
    for name, arrays in model.weights.items():
        for a, b in zip(arrays, again.weights[name]):
            assert a.tobytes() == b.tobytes()
    stored = read_caffemodel(out / "m.caffemodel")
    assert [layer.name for layer in stored.layers] == ["data", "fc", "bn"]


def test_failed_save_leaves_nothing_behind(tmp_path):
    prototxt, _ = write_model(tmp_path)
    model = load_caffe(prototxt)
    model.weights["fc"][0] = model.weights["fc"][0].astype(np.float16)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(Exception):
        save_caffe(model, tmp_path / "new.prototxt", tmp_path / "new.caffemodel")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    with pytest.raises(OutputError, match="does not exist"):
        save_caffe(load_caffe(prototxt), tmp_path / "no" / "x.prototxt", tmp_path / "x.caffemodel")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


TRAIN_VAL = """name: "tv"
layer { name: "train_data" type: "Input" top: "data" include { phase: TRAIN }
        input_param { shape { dim: 64 dim: 1 dim: 28 dim: 28 } } }
layer { name: "test_data" type: "Input" top: "data" include { phase: TEST }
        input_param { shape { dim: 100 dim: 1 dim: 28 dim: 28 } } }
layer { name: "ip" type: "InnerProduct" bottom: "data" top: "ip" inner_product_param { num_output: 10 } }
layer { name: "drop" type: "Dropout" bottom: "ip" top: "ip" exclude { phase: TEST } }
layer { name: "staged" type: "ReLU" bottom: "ip" top: "ip" include { stage: "deploy" } }
"""


@pytest.mark.parametrize(
    "phase, kept",
    [
        ("TEST", ["test_data", "ip"]),
        ("TRAIN", ["train_data", "ip", "drop"]),
    ],
)
def test_phase_rules_select_layers(write_text, phase, kept):
    model = load_caffe(write_text("tv.prototxt", TRAIN_VAL), weights=None, phase=phase)
    assert [layer.name for layer in model.net.layer] == kept
    assert "staged" in model.excluded_layers


def test_unknown_phase_is_a_usage_error(write_text):
    with pytest.raises(UsageError):
        load_caffe(write_text("tv.prototxt", TRAIN_VAL), weights=None, phase="DEPLOY")


def test_unknown_type_warns_and_strict_refuses(write_text):
    text = NET.replace('type: "BatchNorm"', 'type: "MyFancyNorm"')
    path = write_text("u.prototxt", text)
    model = load_caffe(path, weights=None)
    (warning,) = [d for d in model.diagnostics if d.level == "warning"]
    assert "MyFancyNorm" in warning.message and warning.location.line == 4
    with pytest.raises(UnknownLayerTypeError) as info:
        load_caffe(path, weights=None, strict=True)
    assert info.value.location.layer == "bn"


def test_python_layer_is_data_never_imported(write_text):
    text = NET + (
        'layer { name: "py" type: "Python" bottom: "fc" top: "py" '
        'python_param { module: "os_must_not_be_imported_xyz" layer: "L" } }\n'
    )
    model = load_caffe(write_text("py.prototxt", text), weights=None, strict=True)
    assert any("Python layer" in d.message for d in model.diagnostics)
    import sys

    assert "os_must_not_be_imported_xyz" not in sys.modules


def test_fork_layers_are_known(write_text):
    text = NET + (
        'layer { name: "n" type: "Normalize" bottom: "fc" top: "n" '
        "norm_param { across_spatial: false channel_shared: false } }\n"
    )
    model = load_caffe(write_text("ssd.prototxt", text), weights=None, strict=True)
    assert model.net.layer[-1].norm_param.across_spatial is False


def test_caffemodel_given_as_model(tmp_path):
    _, caffemodel = write_model(tmp_path)
    with pytest.raises(InputFileError, match="caffemodel was given as the model"):
        load_caffe(caffemodel)
