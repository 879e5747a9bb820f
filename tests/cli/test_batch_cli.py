"""convert with several models: a folder, globs, --jobs, JSON records, the worst exit code."""

import io
import json
import shutil

from corpus import CAFFE_DATA, ROOT

from proto_rewrite.cli import main


def run(argv):
    out, err = io.StringIO(), io.StringIO()
    return main([str(a) for a in argv], stdout=out, stderr=err), out.getvalue(), err.getvalue()


EXPECTED_REWRITES = {  # corpus net -> FC layers rewritten (every other net has none)
    "bvlc_alexnet.prototxt": ["fc6", "fc7", "fc8"],
    "bvlc_googlenet.prototxt": ["loss3/classifier"],
    "bvlc_reference_caffenet.prototxt": ["fc6", "fc7", "fc8"],
    "caffenet_v0.prototxt": ["fc6", "fc7", "fc8"],
    "cifar10_quick.prototxt": ["ip1", "ip2"],
    "lenet.prototxt": ["ip1", "ip2"],
    "resnet50.prototxt": ["fc1000"],
}


def test_batch_over_the_corpus(tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run(["convert", CAFFE_DATA, "-o", out, "--no-weights", "--jobs", "2", "--format", "json"])
    assert code == 0, err
    records = {json.loads(line)["model"].rsplit("/", 1)[-1]: json.loads(line) for line in stdout.splitlines()}
    assert len(records) == len(list(CAFFE_DATA.glob("*.prototxt")))
    for name, record in records.items():
        assert record["rewritten"] == EXPECTED_REWRITES.get(name, []), name
        assert record["status"] == ("converted" if name in EXPECTED_REWRITES else "unchanged")
        assert (out / name).exists()


def test_one_bad_model_does_not_stop_the_others(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(ROOT / "samples" / "lenet" / "lenet.prototxt", folder)
    shutil.copy(ROOT / "samples" / "lenet" / "lenet.caffemodel", folder)
    shutil.copy(ROOT / "samples" / "onnx" / "vgg_mini.onnx", folder)
    (folder / "broken.prototxt").write_text("layer { name: 'x' \n")
    code, stdout, _ = run(["convert", folder / "*.prototxt", folder / "*.onnx", "-o", tmp_path / "out"])
    assert code == 2
    assert "broken.prototxt  error" in stdout and "lenet.prototxt   converted" in stdout
    assert "2 converted, 1 error of 3" in stdout
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "lenet.caffemodel",
        "lenet.prototxt",
        "vgg_mini.onnx",
    ]


def test_batch_refuses_clashing_outputs_and_single_file_options(tmp_path):
    code, _, err = run(
        ["convert", ROOT / "samples" / "lenet" / "lenet.prototxt", CAFFE_DATA / "lenet.prototxt", "-o", tmp_path]
    )
    assert code == 2 and "same file" in err
    code, _, err = run(["convert", CAFFE_DATA, "-o", tmp_path, "--save-plan", tmp_path / "p.json"])
    assert code == 2 and "do not apply to a batch" in err


def test_in_place(tmp_path):
    model = tmp_path / "lenet.prototxt"
    shutil.copy(ROOT / "samples" / "lenet" / "lenet.prototxt", model)
    shutil.copy(ROOT / "samples" / "lenet" / "lenet.caffemodel", tmp_path)
    assert run(["convert", model, "-o", model])[0] == 2
    code, _, err = run(["convert", model, "-o", model, "--in-place"])
    assert code == 0, err
    assert 'type: "InnerProduct"' not in model.read_text()
    assert run(["inspect", model])[0] == 0  # the replaced weights match the replaced prototxt
