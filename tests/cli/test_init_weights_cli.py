"""proto-rewrite init-weights: writes a loadable caffemodel, deterministic per seed, all or nothing."""

import io

import numpy as np
from corpus import SAMPLES

from proto_rewrite.caffe.caffemodel import read_caffemodel
from proto_rewrite.caffe.model import load_caffe
from proto_rewrite.cli import main

LENET = str(SAMPLES / "lenet" / "lenet.prototxt")


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_writes_weights_that_load_with_the_prototxt(tmp_path):
    out = tmp_path / "random.caffemodel"
    code, stdout, err = run(["init-weights", LENET, "-o", str(out), "--seed", "3"])
    assert code == 0, err
    assert stdout == f"wrote {out}: random weights for 4 layers, 431,080 parameters (seed 3)\n"
    model = load_caffe(LENET, out)
    assert [a.shape for a in model.weights["ip1"]] == [(500, 800), (500,)]
    assert all(a.dtype == np.float32 for arrays in model.weights.values() for a in arrays)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    paths = [tmp_path / f"{i}.caffemodel" for i in range(3)]
    for path, seed in zip(paths, ("1", "1", "2")):
        assert run(["init-weights", LENET, "-o", str(path), "--seed", seed, "--input-shape", "data:1,1,28,28"])[0] == 0
    first, again, other = (path.read_bytes() for path in paths)
    assert first == again != other


def test_input_shape_changes_the_input_dependent_blobs(tmp_path):
    out = tmp_path / "big.caffemodel"
    assert run(["init-weights", LENET, "-o", str(out), "--input-shape", "data:1,1,36,36"])[0] == 0
    stored = {layer.name: [blob.values.shape for blob in layer.blobs] for layer in read_caffemodel(out).layers}
    assert stored["ip1"] == [(500, 50 * 6 * 6), (500,)]  # a 36 x 36 input leaves 6 x 6 after pool2


def test_bad_input_shapes_and_too_small_inputs_write_nothing(tmp_path):
    out = tmp_path / "w.caffemodel"
    for bad, message in [
        ("1,1,28,28", "expected NAME:D0,D1"),
        ("data:1,1,28,", "integers"),
        ("image:1,1,28,28", "its inputs are: data"),
    ]:
        code, _, err = run(["init-weights", LENET, "-o", str(out), "--input-shape", bad])
        assert code == 2 and message in err, (bad, err)
    code, _, err = run(["init-weights", LENET, "-o", str(out), "--input-shape", "data:1,1,9,9"])
    assert code == 2 and "layer 'conv2'" in err and "--input-shape" in err
    code, _, err = run(["init-weights", LENET, "-o", str(out), "--seed", "-1"])
    assert code == 2 and "--seed" in err
    assert list(tmp_path.iterdir()) == []


def test_unknown_shapes_name_the_layer(write_text, tmp_path):
    text = (
        'layer { name: "data" type: "Input" top: "data" }\n'
        'layer { name: "fc" type: "InnerProduct" bottom: "data" top: "fc" inner_product_param { num_output: 2 } }\n'
    )
    prototxt = write_text("n.prototxt", text)
    out = tmp_path / "n.caffemodel"
    code, _, err = run(["init-weights", str(prototxt), "-o", str(out)])
    assert code == 2 and f"{prototxt}:2: layer 'fc'" in err and "--input-shape" in err
    assert not out.exists()
    assert run(["init-weights", str(prototxt), "-o", str(out), "--input-shape", "data:2,5"])[0] == 0
    assert load_caffe(prototxt, out).weights["fc"][0].shape == (2, 5)


def test_layers_without_known_blobs_are_warned_about(write_text, tmp_path):
    text = (
        'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 4 } } }\n'
        'layer { name: "py" type: "Python" bottom: "data" top: "py" python_param { module: "m" layer: "L" } }\n'
    )
    code, _, err = run(["init-weights", str(write_text("p.prototxt", text)), "-o", str(tmp_path / "p.caffemodel")])
    assert code == 0 and "layer 'py'" in err and "gets none" in err


def test_help_and_refusing_to_overwrite_the_model(tmp_path):
    prototxt = tmp_path / "m.prototxt"
    prototxt.write_text((SAMPLES / "lenet" / "lenet.prototxt").read_text())
    code, _, err = run(["init-weights", str(prototxt), "-o", str(prototxt)])
    assert code == 2 and "the model itself" in err
    assert run(["init-weights", "--help"])[0] == 0
