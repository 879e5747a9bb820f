"""proto_rewrite.caffe.upgrade: each step on a tiny prototxt, the whole chain on real nets, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format

from proto_rewrite.caffe.schema import bundled_schema
from proto_rewrite.caffe.upgrade import (
    UPGRADE_STEPS,
    detect_format,
    needs_batch_norm_upgrade,
    needs_data_transform_upgrade,
    needs_input_upgrade,
    upgrade_batch_norm,
    upgrade_data_transform,
    upgrade_net,
    upgrade_net_input,
    upgrade_v0_layers,
    upgrade_v1_layers,
)
from proto_rewrite.errors import UpgradeError

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_CORPUS = REPO_ROOT / "tests" / "data" / "caffe"
SHARED_CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "caffe"

V0_TO_V1 = "V0 layers -> V1 layers"
DATA_TRANSFORM = "V1 data transformation fields -> transform_param"
V1_TO_V2 = "V1 layers -> V2 layer"
INPUT = "net input fields -> Input layer"
BATCH_NORM = "BatchNorm param specs -> lr_mult 0, decay_mult 0"


def corpus_path(name: str) -> Path:
    """tests/data/caffe/NAME if present, else ../shared/corpus/caffe/NAME; skip when neither is."""
    for folder in (LOCAL_CORPUS, SHARED_CORPUS):
        if (folder / name).is_file():
            return folder / name
    pytest.skip(f"corpus file {name} is in neither {LOCAL_CORPUS} nor {SHARED_CORPUS}")


def corpus_names() -> list[str]:
    names = set()
    for folder in (LOCAL_CORPUS, SHARED_CORPUS):
        if folder.is_dir():
            names.update(path.name for path in folder.glob("*.prototxt"))
    return sorted(names)


def parse(text: str):
    return text_format.Parse(text, schema.NetParameter())


def parse_file(path: Path):
    return parse(path.read_text())


def v0_net(*layer_blocks: str, inputs: str = 'input: "data"') -> str:
    return inputs + "\n" + "\n".join(layer_blocks)


# --- the chain and format detection -----------------------------------------------------------


def test_steps_follow_caffes_order():
    assert [step.name for step in UPGRADE_STEPS] == [V0_TO_V1, DATA_TRANSFORM, V1_TO_V2, INPUT, BATCH_NORM]


@pytest.mark.parametrize(
    "text, expected",
    [
        ('layers { layer { name: "c" type: "conv" } bottom: "data" top: "c" }', "V0"),
        ('layers { name: "c" type: CONVOLUTION bottom: "data" top: "c" }', "V1"),
        ('layer { name: "c" type: "Convolution" bottom: "data" top: "c" }', "V2"),
        ('name: "empty"', "V2"),
    ],
)
def test_detect_format(text, expected):
    assert detect_format(parse(text)) == expected


def test_a_current_net_needs_nothing():
    net = parse('layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 } } }')
    before = parse(text_format.MessageToString(net))
    assert upgrade_net(net) == []
    assert net == before


# --- step 1: V0 -> V1 -------------------------------------------------------------------------


def test_v0_padding_layer_folds_into_the_conv_and_every_conv_field_maps():
    net = parse(
        v0_net(
            'layers { layer { name: "pad1" type: "padding" pad: 2 } bottom: "data" top: "pad1" }',
            """layers {
             layer {
               name: "conv1" type: "conv" num_output: 4 biasterm: false kernelsize: 3 stride: 2 group: 2
               weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0.5 }
               blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
             }
             bottom: "pad1" top: "conv1"
           }""",
            'layers { layer { name: "pool1" type: "pool" pool: AVE kernelsize: 2 stride: 2 } '
            'bottom: "conv1" top: "pool1" }',
            inputs='name: "tiny" input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8',
        )
    )
    upgrade_v0_layers(net)
    assert net == parse("""
        name: "tiny" input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8
        layers {
          name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
          blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
          convolution_param {
            num_output: 4 bias_term: false pad: 2 kernel_size: 3 stride: 2 group: 2
            weight_filler { type: "gaussian" std: 0.01 } bias_filler { type: "constant" value: 0.5 }
          }
        }
        layers {
          name: "pool1" type: POOLING bottom: "conv1" top: "pool1"
          pooling_param { pool: AVE kernel_size: 2 stride: 2 }
        }""")


def test_v0_padding_layer_folds_into_a_pool():
    net = parse(
        v0_net(
            'layers { layer { name: "pad" type: "padding" pad: 1 } bottom: "data" top: "padded" }',
            'layers { layer { name: "pool" type: "pool" kernelsize: 3 } bottom: "padded" top: "pool" }',
        )
    )
    upgrade_v0_layers(net)
    assert len(net.layers) == 1
    assert list(net.layers[0].bottom) == ["data"]
    assert net.layers[0].pooling_param == schema.message_class("PoolingParameter")(pad=1, kernel_size=3)


@pytest.mark.parametrize(
    "v0_layer, v1_fields",
    [
        (
            'type: "innerproduct" num_output: 10 biasterm: false weight_filler { type: "xavier" }',
            "type: INNER_PRODUCT "
            'inner_product_param { num_output: 10 bias_term: false weight_filler { type: "xavier" } }',
        ),
        (
            'type: "lrn" local_size: 3 alpha: 0.5 beta: 0.25 k: 2',
            "type: LRN lrn_param { local_size: 3 alpha: 0.5 beta: 0.25 k: 2 }",
        ),
        ('type: "dropout" dropout_ratio: 0.3', "type: DROPOUT dropout_param { dropout_ratio: 0.3 }"),
        ('type: "concat" concat_dim: 2', "type: CONCAT concat_param { concat_dim: 2 }"),
        (
            'type: "data" source: "train_db" meanfile: "mean.binaryproto" batchsize: 32 cropsize: 227 '
            "mirror: true scale: 0.5 rand_skip: 7",
            'type: DATA data_param { source: "train_db" batch_size: 32 rand_skip: 7 } '
            'transform_param { scale: 0.5 mean_file: "mean.binaryproto" crop_size: 227 mirror: true }',
        ),
        (
            'type: "images" source: "list.txt" batchsize: 4 shuffle_images: true new_height: 256 new_width: 128',
            'type: IMAGE_DATA image_data_param { source: "list.txt" batch_size: 4 shuffle: true '
            "new_height: 256 new_width: 128 }",
        ),
        (
            'type: "window_data" source: "windows.txt" batchsize: 8 det_fg_threshold: 0.6 det_bg_threshold: 0.4 '
            'det_fg_fraction: 0.3 det_context_pad: 16 det_crop_mode: "square"',
            'type: WINDOW_DATA window_data_param { source: "windows.txt" batch_size: 8 fg_threshold: 0.6 '
            'bg_threshold: 0.4 fg_fraction: 0.3 context_pad: 16 crop_mode: "square" }',
        ),
        (
            'type: "hdf5_data" source: "h5.txt" batchsize: 2',
            'type: HDF5_DATA hdf5_data_param { source: "h5.txt" batch_size: 2 }',
        ),
        (
            'type: "hdf5_output" hdf5_output_param { file_name: "out.h5" }',
            'type: HDF5_OUTPUT hdf5_output_param { file_name: "out.h5" }',
        ),
        (
            'type: "infogain_loss" source: "infogain.binaryproto"',
            'type: INFOGAIN_LOSS infogain_loss_param { source: "infogain.binaryproto" }',
        ),
        ('type: "softmax_loss"', "type: SOFTMAX_LOSS"),
        ('type: "images"', "type: IMAGE_DATA"),
        ('type: "pool" pool: STOCHASTIC', "type: POOLING pooling_param { pool: STOCHASTIC }"),
    ],
)
def test_v0_fields_land_where_caffe_puts_them(v0_layer, v1_fields):
    net = parse(f'layers {{ layer {{ name: "x" {v0_layer} }} top: "x" }}')
    upgrade_v0_layers(net)
    assert net == parse(f'layers {{ name: "x" top: "x" {v1_fields} }}')


def test_v0_blobs_are_kept():
    net = parse(
        'layers { layer { name: "ip" type: "innerproduct" num_output: 2 '
        "blobs { num: 1 channels: 1 height: 2 width: 3 data: [1, 2, 3, 4, 5, 6] } } "
        'bottom: "data" top: "ip" }'
    )
    upgrade_v0_layers(net)
    assert list(net.layers[0].blobs[0].data) == [1, 2, 3, 4, 5, 6]
    assert net.layers[0].blobs[0].width == 3


# --- step 2: V1 data transformation fields -> transform_param ---------------------------------


def test_v1_data_layer_transformation_fields_move_to_transform_param():
    net = parse("""
        layers { name: "data" type: DATA top: "data"
                 data_param { source: "db" batch_size: 10 scale: 0.00390625 mean_file: "m.binaryproto"
                              crop_size: 224 mirror: true } }
        layers { name: "images" type: IMAGE_DATA top: "images" image_data_param { source: "l" mirror: true } }
        layers { name: "windows" type: WINDOW_DATA top: "w"
                 window_data_param { source: "w" crop_size: 8 } }""")
    assert needs_data_transform_upgrade(net)
    upgrade_data_transform(net)
    assert net == parse("""
        layers { name: "data" type: DATA top: "data" data_param { source: "db" batch_size: 10 }
                 transform_param { scale: 0.00390625 mean_file: "m.binaryproto" crop_size: 224
                                   mirror: true } }
        layers { name: "images" type: IMAGE_DATA top: "images" image_data_param { source: "l" }
                 transform_param { mirror: true } }
        layers { name: "windows" type: WINDOW_DATA top: "w" window_data_param { source: "w" }
                 transform_param { crop_size: 8 } }""")
    assert not needs_data_transform_upgrade(net)


def test_data_transform_upgrade_is_not_needed_without_legacy_fields():
    net = parse('layers { name: "d" type: DATA top: "d" data_param { source: "db" } transform_param { mirror: true } }')
    assert not needs_data_transform_upgrade(net)


# --- step 3: V1 -> V2 -------------------------------------------------------------------------


def test_v1_layer_becomes_v2_with_param_specs():
    net = parse("""
        name: "v1"
        layers {
          name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1"
          blobs_lr: 1 blobs_lr: 2 weight_decay: 1 weight_decay: 0
          param: "conv1_w" param: "conv1_b" blob_share_mode: STRICT blob_share_mode: PERMISSIVE
          convolution_param { num_output: 8 kernel_size: 3 }
        }
        layers {
          name: "loss" type: SOFTMAX_LOSS bottom: "conv1" bottom: "label" top: "loss" loss_weight: 2
          include { phase: TRAIN } exclude { stage: "deploy" }
          loss_param { ignore_label: 255 }
        }
        layers { name: "acc" type: ACCURACY bottom: "conv1" bottom: "label" top: "acc" blobs_lr: 3
                 accuracy_param { top_k: 5 } }""")
    upgrade_v1_layers(net)
    assert net == parse("""
        name: "v1"
        layer {
          name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
          param { name: "conv1_w" share_mode: STRICT lr_mult: 1 decay_mult: 1 }
          param { name: "conv1_b" share_mode: PERMISSIVE lr_mult: 2 decay_mult: 0 }
          convolution_param { num_output: 8 kernel_size: 3 }
        }
        layer {
          name: "loss" type: "SoftmaxWithLoss" bottom: "conv1" bottom: "label" top: "loss" loss_weight: 2
          include { phase: TRAIN } exclude { stage: "deploy" }
          loss_param { ignore_label: 255 }
        }
        layer { name: "acc" type: "Accuracy" bottom: "conv1" bottom: "label" top: "acc"
                param { lr_mult: 3 } accuracy_param { top_k: 5 } }""")


@pytest.mark.parametrize(
    "v1_type, v2_type",
    [
        ("CONVOLUTION", "Convolution"),
        ("INNER_PRODUCT", "InnerProduct"),
        ("SOFTMAX_LOSS", "SoftmaxWithLoss"),
        ("TANH", "TanH"),
        ("IM2COL", "Im2col"),
        ("HDF5_DATA", "HDF5Data"),
        ("ABSVAL", "AbsVal"),
        ("SIGMOID_CROSS_ENTROPY_LOSS", "SigmoidCrossEntropyLoss"),
        ("DECONVOLUTION", "Deconvolution"),
    ],
)
def test_v1_type_names(v1_type, v2_type):
    net = parse(f'layers {{ name: "x" type: {v1_type} }}')
    upgrade_v1_layers(net)
    assert net.layer[0].type == v2_type


# --- step 4: net inputs -> Input layer --------------------------------------------------------


def test_input_dim_becomes_a_first_input_layer():
    net = parse("""
        input: "data" input_dim: 10 input_dim: 3 input_dim: 227 input_dim: 227
        layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }""")
    assert needs_input_upgrade(net)
    upgrade_net_input(net)
    assert net == parse("""
        layer { name: "input" type: "Input" top: "data"
                input_param { shape { dim: 10 dim: 3 dim: 227 dim: 227 } } }
        layer { name: "relu" type: "ReLU" bottom: "data" top: "data" }""")
    assert not needs_input_upgrade(net)


def test_input_shape_becomes_an_input_layer_with_one_top_per_input():
    net = parse("""
        input: "data" input_shape { dim: 1 dim: 3 dim: 300 dim: 300 }
        input: "im_info" input_shape { dim: 1 dim: 3 }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" }""")
    assert upgrade_net(net) == [INPUT]
    assert net == parse("""
        layer { name: "input" type: "Input" top: "data" top: "im_info"
                input_param { shape { dim: 1 dim: 3 dim: 300 dim: 300 } shape { dim: 1 dim: 3 } } }
        layer { name: "conv" type: "Convolution" bottom: "data" top: "conv" }""")


# --- step 5: BatchNorm ------------------------------------------------------------------------


def test_batch_norm_param_specs_are_frozen_and_keep_their_names():
    net = parse("""
        layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x"
                param { name: "mean" lr_mult: 1 } param { lr_mult: 0 } param { decay_mult: 1 } }
        layer { name: "scale" type: "Scale" bottom: "x" top: "x" param { lr_mult: 1 } param { lr_mult: 1 }
                param { lr_mult: 1 } }""")
    assert needs_batch_norm_upgrade(net)
    upgrade_batch_norm(net)
    assert net == parse("""
        layer { name: "bn" type: "BatchNorm" bottom: "x" top: "x"
                param { name: "mean" lr_mult: 0 decay_mult: 0 } param { lr_mult: 0 decay_mult: 0 }
                param { lr_mult: 0 decay_mult: 0 } }
        layer { name: "scale" type: "Scale" bottom: "x" top: "x" param { lr_mult: 1 } param { lr_mult: 1 }
                param { lr_mult: 1 } }""")
    assert not needs_batch_norm_upgrade(net)


@pytest.mark.parametrize(
    "params",
    [
        "",
        "param { lr_mult: 0 decay_mult: 0 } " * 3,
        "param { lr_mult: 1 } param { lr_mult: 1 }",
    ],
)
def test_batch_norm_upgrade_not_needed(params):
    net = parse(f'layer {{ name: "bn" type: "BatchNorm" bottom: "x" top: "x" {params} }}')
    assert not needs_batch_norm_upgrade(net)


# --- the whole chain on real nets -------------------------------------------------------------


def _param_messages(layer) -> list:
    return [(field.name, value) for field, value in layer.ListFields() if field.name.endswith("_param")]


def test_caffenet_v0_upgrades_to_the_reference_caffenet():
    net = parse_file(corpus_path("caffenet_v0.prototxt"))
    reference = parse_file(corpus_path("bvlc_reference_caffenet.prototxt"))
    assert detect_format(net) == "V0"
    assert upgrade_net(net) == [V0_TO_V1, V1_TO_V2, INPUT]
    assert detect_format(net) == "V2"
    assert [layer.type for layer in net.layer] == [layer.type for layer in reference.layer]
    for upgraded, expected in zip(net.layer, reference.layer):
        assert _param_messages(upgraded) == _param_messages(expected), expected.name
        assert list(upgraded.bottom) == list(expected.bottom), expected.name
        assert list(upgraded.top) == list(expected.top), expected.name
    assert [layer.name for layer in net.layer[1:]] == [layer.name for layer in reference.layer[1:]]


VGG16_BLOCKS = ((1, 64, 2), (2, 128, 2), (3, 256, 3), (4, 512, 3), (5, 512, 3))


def _v2_layer(name: str, layer_type: str, bottom: str, top: str, params: str = "") -> str:
    return f'layer {{ name: "{name}" type: "{layer_type}" bottom: "{bottom}" top: "{top}" {params} }}\n'


def vgg16_v2_text() -> str:
    """VGG16 (deploy) written in the current format, as the V1 Model Zoo file describes it."""
    text = (
        'name: "VGG_ILSVRC_16_layers"\n'
        'layer { name: "input" type: "Input" top: "data" '
        "input_param { shape { dim: 10 dim: 3 dim: 224 dim: 224 } } }\n"
    )
    previous = "data"
    for block, channels, convs in VGG16_BLOCKS:
        for index in range(1, convs + 1):
            conv = f"conv{block}_{index}"
            text += _v2_layer(
                conv,
                "Convolution",
                previous,
                conv,
                f"convolution_param {{ num_output: {channels} pad: 1 kernel_size: 3 }}",
            )
            text += _v2_layer(f"relu{block}_{index}", "ReLU", conv, conv)
            previous = conv
        text += _v2_layer(
            f"pool{block}", "Pooling", previous, f"pool{block}", "pooling_param { pool: MAX kernel_size: 2 stride: 2 }"
        )
        previous = f"pool{block}"
    for fc, outputs in (("fc6", 4096), ("fc7", 4096)):
        number = fc[2:]
        text += _v2_layer(fc, "InnerProduct", previous, fc, f"inner_product_param {{ num_output: {outputs} }}")
        text += _v2_layer(f"relu{number}", "ReLU", fc, fc)
        text += _v2_layer(f"drop{number}", "Dropout", fc, fc, "dropout_param { dropout_ratio: 0.5 }")
        previous = fc
    text += _v2_layer("fc8", "InnerProduct", previous, "fc8", "inner_product_param { num_output: 1000 }")
    text += _v2_layer("prob", "Softmax", "fc8", "prob")
    return text


def test_vgg16_v1_upgrades_to_exactly_the_v2_spelling():
    path = SHARED_CORPUS / "vgg16.prototxt"  # CC BY-NC: read from shared/, never copied into the repo
    if not path.is_file():
        pytest.skip(f"{path} not found (vgg16.prototxt is read from ../shared/corpus/caffe only)")
    net = parse_file(path)
    assert detect_format(net) == "V1"
    assert upgrade_net(net) == [V1_TO_V2, INPUT]
    expected = parse(vgg16_v2_text())
    assert len(net.layer) == len(expected.layer) == 40
    assert net == expected


@pytest.mark.parametrize("name", corpus_names())
def test_every_corpus_net_upgrades_to_v2_and_then_needs_nothing(name):
    net = parse_file(corpus_path(name))
    upgrade_net(net)
    assert detect_format(net) == "V2"
    assert not len(net.input) and not len(net.input_dim) and not len(net.input_shape)
    assert [step.name for step in UPGRADE_STEPS if step.is_needed(net)] == []


# --- errors -----------------------------------------------------------------------------------


def _upgrade_error(text: str) -> UpgradeError:
    net = parse(text)
    before = parse(text)
    with pytest.raises(UpgradeError) as caught:
        upgrade_net(net)
    assert caught.value.hint
    assert net == before, "a failed first step must leave the net untouched"
    return caught.value


def test_unknown_v0_type_names_the_layer():
    err = _upgrade_error(v0_net('layers { layer { name: "mystery" type: "warp" } bottom: "data" top: "m" }'))
    assert err.location.layer == "mystery"
    assert "warp" in err.message


def test_dangling_padding_layer_names_the_layer():
    err = _upgrade_error(
        v0_net(
            'layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "data" top: "pad1" }',
            'layers { layer { name: "conv1" type: "conv" num_output: 1 kernelsize: 1 } bottom: "data" top: "c" }',
        )
    )
    assert err.location.layer == "pad1"


def test_padding_layer_feeding_a_non_conv_layer_names_that_layer():
    err = _upgrade_error(
        v0_net(
            'layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "data" top: "pad1" }',
            'layers { layer { name: "relu1" type: "relu" } bottom: "pad1" top: "r" }',
        )
    )
    assert err.location.layer == "relu1"
    assert "pad1" in err.message


def test_padding_layer_into_an_already_padded_conv_is_refused():
    err = _upgrade_error(
        v0_net(
            'layers { layer { name: "pad1" type: "padding" pad: 1 } bottom: "data" top: "pad1" }',
            'layers { layer { name: "conv1" type: "conv" pad: 2 kernelsize: 3 } bottom: "pad1" top: "c" }',
        )
    )
    assert err.location.layer == "conv1"


def test_v0_field_on_the_wrong_layer_type_is_refused():
    err = _upgrade_error(
        v0_net('layers { layer { name: "relu1" type: "relu" num_output: 3 } bottom: "data" top: "r" }')
    )
    assert err.location.layer == "relu1"
    assert "num_output" in err.message


def test_v0_field_without_a_later_equivalent_is_refused():
    err = _upgrade_error(v0_net('layers { layer { name: "d" type: "data" new_num: 3 } top: "d" }'))
    assert err.location.layer == "d"
    assert "new_num" in err.message


def test_v0_layer_mixed_with_v1_fields_is_refused():
    err = _upgrade_error(
        v0_net(
            'layers { layer { name: "c" type: "conv" } name: "c1" '
            'convolution_param { num_output: 2 } bottom: "data" top: "c" }'
        )
    )
    assert err.location.layer == "c"


@pytest.mark.parametrize(
    "legacy",
    [
        'layers { name: "old" type: RELU bottom: "data" top: "data" }',
        'layers { layer { name: "old" type: "relu" } bottom: "data" top: "data" }',
    ],
)
def test_mixed_layer_and_layers_is_refused(legacy):
    err = _upgrade_error(f'{legacy}\nlayer {{ name: "new" type: "ReLU" bottom: "data" top: "data" }}')
    assert err.location.layer == "new"


def test_data_transform_conflict_is_refused():
    err = _upgrade_error(
        'layers { name: "d" type: DATA top: "d" data_param { scale: 0.5 } transform_param { scale: 0.25 } }'
    )
    assert err.location.layer == "d"


@pytest.mark.parametrize(
    "inputs, words",
    [
        ('input: "data"', "no shape"),
        ('input: "data" input_dim: 1 input_dim: 3 input_dim: 8', "4 input_dim"),
        ('input: "a" input: "b" input_shape { dim: 1 }', "input_shape entries"),
        ('input: "data" input_shape { dim: 1 } input_dim: 1 input_dim: 1 input_dim: 1 input_dim: 1', "both"),
    ],
)
def test_bad_net_inputs_are_refused(inputs, words):
    err = _upgrade_error(inputs + '\nlayer { name: "relu" type: "ReLU" bottom: "data" top: "data" }')
    assert words in err.message


def test_v1_step_alone_refuses_a_nested_v0_layer():
    net = parse('layers { layer { name: "c" type: "conv" } bottom: "data" top: "c" }')
    with pytest.raises(UpgradeError) as caught:
        upgrade_v1_layers(net)
    assert caught.value.location.layer == "c"
