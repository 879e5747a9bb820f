"""The shipped descriptor is schemas/caffe.proto compiled, and the schema keeps Caffe's numbers."""

import importlib.util

import pytest
from corpus import ROOT

from proto_rewrite.caffe.schema import bundled_schema

schema = bundled_schema()  # the Caffe schema shipped with proto-rewrite


def load_build_script():
    spec = importlib.util.spec_from_file_location("build_descriptor", ROOT / "schemas" / "build_descriptor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_descriptor_matches_the_proto():
    pytest.importorskip("grpc_tools", reason="grpcio-tools (test extra) compiles the .proto")
    build = load_build_script()
    assert build.same_descriptor(build.compile_descriptor(), build.DESCRIPTOR.read_bytes()), (
        "run: python schemas/build_descriptor.py"
    )


# (message, field) -> number: facts of BVLC caffe.proto and of the forks, spot-checked.
FIELD_NUMBERS = {
    ("NetParameter", "layer"): 100,
    ("NetParameter", "layers"): 2,
    ("NetParameter", "input_dim"): 4,
    ("LayerParameter", "blobs"): 7,
    ("LayerParameter", "convolution_param"): 106,
    ("LayerParameter", "inner_product_param"): 117,
    ("LayerParameter", "pooling_param"): 121,
    ("LayerParameter", "input_param"): 143,
    ("V1LayerParameter", "blobs"): 6,
    ("V1LayerParameter", "layer"): 1,
    ("V0LayerParameter", "blobs"): 50,
    ("BlobProto", "data"): 5,
    ("BlobProto", "shape"): 7,
    ("BlobProto", "double_data"): 8,
    ("InnerProductParameter", "transpose"): 6,
    ("PoolingParameter", "round_mode"): 13,
    ("LayerParameter", "norm_param"): 206,  # SSD
    ("LayerParameter", "permute_param"): 202,  # SSD
    ("LayerParameter", "prior_box_param"): 203,  # SSD
    ("LayerParameter", "detection_output_param"): 204,  # SSD
}


@pytest.mark.parametrize("message, field", sorted(FIELD_NUMBERS))
def test_field_numbers(message, field):
    descriptor = schema.message_class(message).DESCRIPTOR
    assert descriptor.fields_by_name[field].number == FIELD_NUMBERS[(message, field)]


def test_defaults_follow_caffe():
    conv = schema.message_class("ConvolutionParameter")()
    assert conv.bias_term is True and conv.group == 1
    assert schema.message_class("LRNParameter")().local_size == 5
    assert schema.message_class("LRNParameter")().k == 1.0
    assert schema.message_class("BatchNormParameter")().eps == pytest.approx(1e-5)
    assert schema.message_class("PoolingParameter")().ceil_mode is True  # the forks' default
    assert schema.BlobProto.DESCRIPTOR.fields_by_name["data"].GetOptions().packed


def test_classes_live_in_a_private_pool():
    from google.protobuf import descriptor_pool

    with pytest.raises(KeyError):
        descriptor_pool.Default().FindMessageTypeByName("caffe.NetParameter")
