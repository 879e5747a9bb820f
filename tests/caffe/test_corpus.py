"""Every real network of the corpus loads, saves and reloads to the same NetParameter."""

import pytest
from corpus import corpus_file, corpus_names

from proto_rewrite.caffe.model import load_caffe, save_caffe
from proto_rewrite.caffe.prototxt import format_net_text

EXPECTED = {  # file: (source format, layers after upgrade to V2)
    "bvlc_alexnet.prototxt": ("V2", 24),
    "bvlc_caffenet_full_conv.prototxt": ("V2", 24),
    "bvlc_googlenet.prototxt": ("V2", 143),
    "bvlc_reference_caffenet.prototxt": ("V2", 24),
    "caffenet_v0.prototxt": ("V0", 24),  # 23 V0 layers + the Input layer made from input_dim
    "cifar10_quick.prototxt": ("V2", 13),
    "densenet121.prototxt": ("V2", 548),
    "fcn8s_voc.prototxt": ("V2", 47),
    "lenet.prototxt": ("V2", 9),
    "mobilenet_v1.prototxt": ("V2", 112),
    "resnet50.prototxt": ("V2", 229),
    "squeezenet_v1_1.prototxt": ("V2", 67),
    "ssd300_vgg16_voc.prototxt": ("V2", 102),
    "vgg16.prototxt": ("V1", 40),
}


def test_expected_table_covers_the_corpus():
    assert sorted(EXPECTED) == sorted(corpus_names())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_load_save_load_gives_equal_net(name, tmp_path):
    model = load_caffe(corpus_file(name), weights=None)
    source_format, layer_count = EXPECTED[name]
    assert model.source_format == source_format
    assert len(model.net.layer) == layer_count
    assert not model.net.layers  # upgraded: no V1 layers left
    assert [d for d in model.diagnostics if d.level == "warning"] == []

    saved = tmp_path / name
    save_caffe(model, saved)
    again = load_caffe(saved, weights=None)
    assert again.net == model.net
    assert again.upgrades == []  # what we write is already current
    assert saved.read_text() == format_net_text(again.net)  # saving is a fixed point


@pytest.mark.parametrize("name", ["bvlc_googlenet.prototxt", "caffenet_v0.prototxt"])
def test_saving_is_deterministic_across_processes(name, tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; from proto_rewrite.caffe.model import load_caffe, save_caffe; "
        "save_caffe(load_caffe(sys.argv[1], weights=None), sys.argv[2])"
    )
    outputs = []
    for run in range(2):
        out = tmp_path / f"{run}.prototxt"
        subprocess.run([sys.executable, "-c", code, str(corpus_file(name)), str(out)], check=True)
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]


def test_layer_lines_point_at_the_layer_blocks():
    model = load_caffe(corpus_file("lenet.prototxt"), weights=None)
    text = corpus_file("lenet.prototxt").read_text().splitlines()
    for name, line in model.layer_lines.items():
        block = "\n".join(text[line - 1 : line + 3])
        assert block.lstrip().startswith("layer") and f'"{name}"' in block
    assert len(model.layer_lines) == len(model.net.layer)


def test_v0_layer_lines_use_the_nested_name():
    model = load_caffe(corpus_file("caffenet_v0.prototxt"), weights=None)
    lines = corpus_file("caffenet_v0.prototxt").read_text().splitlines()
    assert lines[model.layer_lines["conv1"] - 1].strip().startswith("layers")
