"""Upgrade a legacy Caffe NetParameter, in memory, to the current (V2 ``layer``) format.

The upgrade is a chain of small, ordered steps, each a pair "is it needed?" / "apply it", in the
order of BVLC Caffe's ``UpgradeNetAsNeeded`` (``src/caffe/util/upgrade_proto.cpp``):

1. V0 layers -> V1 layers: ``layers { layer { type: "conv" ... } }`` becomes
   ``layers { type: CONVOLUTION convolution_param { ... } }``; V0 "padding" layers are folded
   into the pad of the conv/pool layer that reads them.
2. V1 data transformation fields -> transform_param: scale, mean_file, crop_size and mirror
   move out of data_param / image_data_param / window_data_param.
3. V1 layers -> V2 layer: enum types become type strings, blobs_lr / weight_decay / param names /
   blob_share_mode become ``param { lr_mult decay_mult name share_mode }``.
4. net input fields -> Input layer: ``input`` + ``input_shape`` (or ``input_dim``) becomes a first
   layer named "input" of type "Input".
5. BatchNorm param specs -> frozen: a BatchNorm layer that declares three param specs gets
   lr_mult 0 and decay_mult 0 on each (its statistics are not learned); names are kept.

Where Caffe logs an error and carries on (losing a value on the way), these steps raise
:class:`UpgradeError` instead, naming the layer: a value that was set is never dropped. So do
net inputs without any shape, which Caffe strips (harmless for a weights file, fatal for a net
definition). A step that raises leaves the net as the previous step left it. The net-level fields
Caffe's V0 upgrade would discard (``state``, ``debug_info``...) are kept.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import Message

from proto_rewrite.caffe.schema import schema_of
from proto_rewrite.errors import UpgradeError
from proto_rewrite.wire import is_repeated

# --- tables -----------------------------------------------------------------------------------

# V0 type string -> V1 LayerType enum name.
V0_TYPE_TO_V1_TYPE = {
    "accuracy": "ACCURACY",
    "bnll": "BNLL",
    "concat": "CONCAT",
    "conv": "CONVOLUTION",
    "data": "DATA",
    "dropout": "DROPOUT",
    "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN",
    "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL",
    "images": "IMAGE_DATA",
    "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT",
    "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING",
    "relu": "RELU",
    "sigmoid": "SIGMOID",
    "softmax": "SOFTMAX",
    "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT",
    "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

V0_PADDING_TYPE = "padding"

# V0 field that only some layer types understand -> {V0 type: where it lands in the V1 layer}.
# A path "a.b" is field b of sub-message a; a path without a dot is a whole sub-message.
V0_FIELD_TARGETS = {
    "num_output": {"conv": "convolution_param.num_output", "innerproduct": "inner_product_param.num_output"},
    "biasterm": {"conv": "convolution_param.bias_term", "innerproduct": "inner_product_param.bias_term"},
    "weight_filler": {"conv": "convolution_param.weight_filler", "innerproduct": "inner_product_param.weight_filler"},
    "bias_filler": {"conv": "convolution_param.bias_filler", "innerproduct": "inner_product_param.bias_filler"},
    "pad": {"conv": "convolution_param.pad", "pool": "pooling_param.pad"},
    "kernelsize": {"conv": "convolution_param.kernel_size", "pool": "pooling_param.kernel_size"},
    "group": {"conv": "convolution_param.group"},
    "stride": {"conv": "convolution_param.stride", "pool": "pooling_param.stride"},
    "pool": {"pool": "pooling_param.pool"},
    "dropout_ratio": {"dropout": "dropout_param.dropout_ratio"},
    "local_size": {"lrn": "lrn_param.local_size"},
    "alpha": {"lrn": "lrn_param.alpha"},
    "beta": {"lrn": "lrn_param.beta"},
    "k": {"lrn": "lrn_param.k"},
    "source": {
        "data": "data_param.source",
        "hdf5_data": "hdf5_data_param.source",
        "images": "image_data_param.source",
        "window_data": "window_data_param.source",
        "infogain_loss": "infogain_loss_param.source",
    },
    "batchsize": {
        "data": "data_param.batch_size",
        "hdf5_data": "hdf5_data_param.batch_size",
        "images": "image_data_param.batch_size",
        "window_data": "window_data_param.batch_size",
    },
    "rand_skip": {"data": "data_param.rand_skip", "images": "image_data_param.rand_skip"},
    "shuffle_images": {"images": "image_data_param.shuffle"},
    "new_height": {"images": "image_data_param.new_height"},
    "new_width": {"images": "image_data_param.new_width"},
    "concat_dim": {"concat": "concat_param.concat_dim"},
    "det_fg_threshold": {"window_data": "window_data_param.fg_threshold"},
    "det_bg_threshold": {"window_data": "window_data_param.bg_threshold"},
    "det_fg_fraction": {"window_data": "window_data_param.fg_fraction"},
    "det_context_pad": {"window_data": "window_data_param.context_pad"},
    "det_crop_mode": {"window_data": "window_data_param.crop_mode"},
    "hdf5_output_param": {"hdf5_output": "hdf5_output_param"},
}

# V0 data transformation field -> field of the V1 transform_param (for every layer type).
V0_TRANSFORM_FIELDS = {"scale": "scale", "meanfile": "mean_file", "cropsize": "crop_size", "mirror": "mirror"}

# V0 fields copied to the V1 field of the same name.
V0_SAME_NAME_FIELDS = ("name", "blobs", "blobs_lr", "weight_decay")

# V1 data layer type -> its parameter message that once held the transformation fields.
V1_DATA_LAYER_PARAMS = {"DATA": "data_param", "IMAGE_DATA": "image_data_param", "WINDOW_DATA": "window_data_param"}
V1_TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")

# V1 LayerType enum name -> V2 type string.
V1_TYPE_TO_V2_TYPE = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# V1 per-blob lists -> the ParamSpec field each entry becomes (entry i goes to param i).
V1_PARAM_SPEC_FIELDS = {
    "param": "name",
    "blob_share_mode": "share_mode",
    "blobs_lr": "lr_mult",
    "weight_decay": "decay_mult",
}

# V1 fields copied to the V2 field of the same name. Every other set V1 field must be an
# ``*_param`` message that LayerParameter also has.
V1_SAME_NAME_FIELDS = ("bottom", "top", "name", "include", "exclude", "blobs", "loss_weight")

INPUT_LAYER_NAME = "input"
INPUT_LAYER_TYPE = "Input"
BATCH_NORM_TYPE = "BatchNorm"
BATCH_NORM_PARAM_COUNT = 3  # mean, variance, moving-average factor


# --- the chain --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpgradeStep:
    """One upgrade: ``apply`` changes the net in place, and is run only when ``is_needed``."""

    name: str
    is_needed: Callable[[Message], bool]
    apply: Callable[[Message], None]


def detect_format(net: Message) -> str:
    """ "V0" (a ``layers`` entry holds a nested V0 ``layer``), "V1" (``layers``) or "V2"."""
    if any(entry.HasField("layer") for entry in net.layers):
        return "V0"
    return "V1" if len(net.layers) else "V2"


def upgrade_net(net: Message) -> list[str]:
    """Apply, in order, every step the net needs; return the names of the steps that ran."""
    ran = []
    for step in UPGRADE_STEPS:
        if step.is_needed(net):
            step.apply(net)
            ran.append(step.name)
    return ran


# --- shared helpers ---------------------------------------------------------------------------


def _copy(message: Message) -> Message:
    duplicate = type(message)()
    duplicate.CopyFrom(message)
    return duplicate


def _replace_repeated(container, messages: list) -> None:
    del container[:]
    container.extend(messages)


def _v1_type_name(v1_layer: Message) -> str:
    enum_type = v1_layer.DESCRIPTOR.fields_by_name["type"].enum_type
    return enum_type.values_by_number[v1_layer.type].name


def _entry_name(entry: Message) -> str:
    """The name of a ``layers`` entry, whether it is V1 or wraps a V0 layer."""
    return entry.layer.name if entry.HasField("layer") else entry.name


def _reject_mixed_layer_fields(net: Message) -> None:
    if len(net.layer) and len(net.layers):
        raise UpgradeError(
            "the net has both current 'layer' entries and legacy 'layers' entries",
            layer=net.layer[0].name,
            hint="write every layer in one format; Caffe would silently ignore the 'layer' entries",
        )


# --- step 1: V0 layers -> V1 layers -----------------------------------------------------------


def _is_padding(entry: Message) -> bool:
    return entry.HasField("layer") and entry.layer.type == V0_PADDING_TYPE


def _fold_padding_into(consumer: Message, slot: int, padding: Message) -> None:
    """Move a padding layer's pad into the conv/pool that reads its output at bottom ``slot``."""
    name, pad_name = _entry_name(consumer), padding.layer.name
    if not consumer.HasField("layer") or consumer.layer.type not in ("conv", "pool"):
        raise UpgradeError(
            f"reads the output of V0 padding layer '{pad_name}', but only conv and pool layers "
            "can take over a padding layer's pad",
            layer=name,
            hint="feed the padding layer into a conv or pool layer, or set pad on the layer itself",
        )
    if len(consumer.bottom) != 1 or len(padding.bottom) != 1 or len(padding.top) != 1:
        raise UpgradeError(
            f"V0 padding layer '{pad_name}' can only be folded when it has one bottom and one top "
            "and feeds a layer with a single bottom",
            layer=name,
            hint="give the padding layer and the layer reading it exactly one input each",
        )
    if consumer.layer.pad:
        raise UpgradeError(
            f"has its own pad {consumer.layer.pad} and also reads V0 padding layer '{pad_name}'",
            layer=name,
            hint="add the two pads together on the conv/pool layer and remove the padding layer",
        )
    consumer.layer.pad = padding.layer.pad
    consumer.bottom[slot] = padding.bottom[0]


def _fold_padding_layers(entries: list, input_names) -> list:
    """``entries`` without V0 padding layers, each folded into the conv/pool layer reading it."""
    last_producer: dict[str, int | None] = {name: None for name in input_names}
    folded = set()
    for index, entry in enumerate(entries):
        for slot, blob in enumerate(entry.bottom):
            producer = last_producer.get(blob)
            if producer is not None and _is_padding(entries[producer]):
                _fold_padding_into(entry, slot, entries[producer])
                folded.add(producer)
        for blob in entry.top:
            last_producer[blob] = index
    for index, entry in enumerate(entries):
        if _is_padding(entry) and index not in folded:
            raise UpgradeError(
                "V0 padding layer is not read by any conv or pool layer",
                layer=entry.layer.name,
                hint="remove it, or feed its output to a conv or pool layer",
            )
    return [entry for entry in entries if not _is_padding(entry)]


def _converted_value(source_field, value, target_field):
    """``value`` of ``source_field`` as ``target_field`` holds it (enums are matched by name)."""
    if target_field.enum_type is None:
        return value
    value_name = source_field.enum_type.values_by_number[value].name
    return target_field.enum_type.values_by_name[value_name].number


def _store(message: Message, path: str, source_field, value) -> None:
    """Store ``value`` at ``path`` ("param.field" or "param") under ``message``."""
    *parents, field_name = path.split(".")
    for parent in parents:
        message = getattr(message, parent)
    target_field = message.DESCRIPTOR.fields_by_name[field_name]
    if target_field.message_type is not None:
        getattr(message, field_name).CopyFrom(value)
    elif is_repeated(target_field):
        getattr(message, field_name).append(_converted_value(source_field, value, target_field))
    else:
        setattr(message, field_name, _converted_value(source_field, value, target_field))


def _copy_same_name(field, value, target: Message) -> None:
    """Copy a set field to the field of the same name in ``target`` (another message type)."""
    if is_repeated(field):
        getattr(target, field.name).extend(value)
    else:
        _store(target, field.name, field, value)


def _v1_type_number(v1_layer: Message, v0_type: str, layer_name: str) -> int:
    if v0_type not in V0_TYPE_TO_V1_TYPE:
        raise UpgradeError(
            f"unknown V0 layer type '{v0_type}'",
            layer=layer_name,
            hint=f"V0 types are: {', '.join(sorted(V0_TYPE_TO_V1_TYPE))}",
        )
    enum_type = v1_layer.DESCRIPTOR.fields_by_name["type"].enum_type
    return enum_type.values_by_name[V0_TYPE_TO_V1_TYPE[v0_type]].number


def _upgrade_v0_field(v0_layer: Message, field, value, v1_layer: Message) -> None:
    name, layer_name, v0_type = field.name, v0_layer.name, v0_layer.type
    if name == "type":
        v1_layer.type = _v1_type_number(v1_layer, value, layer_name)
    elif name in V0_SAME_NAME_FIELDS:
        _copy_same_name(field, value, v1_layer)
    elif name in V0_TRANSFORM_FIELDS:
        _store(v1_layer, f"transform_param.{V0_TRANSFORM_FIELDS[name]}", field, value)
    elif name in V0_FIELD_TARGETS:
        targets = V0_FIELD_TARGETS[name]
        if v0_type not in targets:
            raise UpgradeError(
                f"V0 field '{name}' has no meaning for a layer of type '{v0_type}'",
                layer=layer_name,
                hint=f"'{name}' applies to V0 types {', '.join(sorted(targets))}; remove it",
            )
        _store(v1_layer, targets[v0_type], field, value)
    else:
        raise UpgradeError(
            f"V0 field '{name}' has no equivalent in later Caffe formats",
            layer=layer_name,
            hint="remove it (Caffe's own upgrade drops it)",
        )


def _v1_from_v0(entry: Message) -> Message:
    """The V1 layer for a ``layers`` entry that wraps a V0 layer."""
    extra = [field.name for field, _ in entry.ListFields() if field.name not in ("bottom", "top", "layer")]
    if extra:
        raise UpgradeError(
            f"wraps a V0 layer but also sets V1 field(s) {', '.join(extra)}",
            layer=_entry_name(entry),
            hint="write the layer either in V0 form (layer { ... } bottom top) or in V1 form",
        )
    v1_layer = schema_of(entry).V1LayerParameter()
    v1_layer.bottom.extend(entry.bottom)
    v1_layer.top.extend(entry.top)
    for field, value in entry.layer.ListFields():
        _upgrade_v0_field(entry.layer, field, value, v1_layer)
    return v1_layer


def needs_v0_upgrade(net: Message) -> bool:
    return detect_format(net) == "V0"


def upgrade_v0_layers(net: Message) -> None:
    """V0 ``layers { layer { ... } }`` -> V1 ``layers``; entries already in V1 form are kept."""
    _reject_mixed_layer_fields(net)
    entries = _fold_padding_layers([_copy(entry) for entry in net.layers], net.input)
    upgraded = [_v1_from_v0(entry) if entry.HasField("layer") else entry for entry in entries]
    _replace_repeated(net.layers, upgraded)


# --- step 2: V1 data transformation fields -> transform_param ---------------------------------


def _legacy_transform_holder(v1_layer: Message) -> Message | None:
    """The data_param / image_data_param / window_data_param of a V1 data layer, else None."""
    param_name = V1_DATA_LAYER_PARAMS.get(_v1_type_name(v1_layer))
    return None if param_name is None else getattr(v1_layer, param_name)


def needs_data_transform_upgrade(net: Message) -> bool:
    for v1_layer in net.layers:
        holder = _legacy_transform_holder(v1_layer)
        if holder is not None and any(holder.HasField(name) for name in V1_TRANSFORM_FIELDS):
            return True
    return False


def _check_no_transform_conflict(v1_layer: Message, holder: Message) -> None:
    transform = v1_layer.transform_param
    for name in V1_TRANSFORM_FIELDS:
        both_set = holder.HasField(name) and transform.HasField(name)
        if both_set and getattr(holder, name) != getattr(transform, name):
            raise UpgradeError(
                f"sets {name} both in transform_param ({getattr(transform, name)!r}) and, "
                f"differently, in its data parameters ({getattr(holder, name)!r})",
                layer=v1_layer.name,
                hint=f"keep {name} in transform_param only",
            )


def upgrade_data_transform(net: Message) -> None:
    """Move scale / mean_file / crop_size / mirror of V1 data layers into transform_param."""
    holders = [(v1_layer, _legacy_transform_holder(v1_layer)) for v1_layer in net.layers]
    holders = [(v1_layer, holder) for v1_layer, holder in holders if holder is not None]
    for v1_layer, holder in holders:
        _check_no_transform_conflict(v1_layer, holder)
    for v1_layer, holder in holders:
        for name in V1_TRANSFORM_FIELDS:
            if holder.HasField(name):
                setattr(v1_layer.transform_param, name, getattr(holder, name))
                holder.ClearField(name)


# --- step 3: V1 layers -> V2 layer ------------------------------------------------------------


def _v2_type(v1_layer: Message) -> str:
    enum_name = _v1_type_name(v1_layer)
    if enum_name not in V1_TYPE_TO_V2_TYPE:
        raise UpgradeError(
            f"V1 layer type {enum_name} has no known current type string",
            layer=v1_layer.name,
            hint='write this layer in the current format: layer { type: "..." }',
        )
    return V1_TYPE_TO_V2_TYPE[enum_name]


def _add_param_specs(v1_layer: Message, layer: Message) -> None:
    """V1 per-blob lists (param names, share modes, blobs_lr, weight_decay) -> ``param`` specs."""
    spec_field_of = layer.DESCRIPTOR.fields_by_name["param"].message_type.fields_by_name
    for v1_name, spec_name in V1_PARAM_SPEC_FIELDS.items():
        source_field = v1_layer.DESCRIPTOR.fields_by_name[v1_name]
        for index, value in enumerate(getattr(v1_layer, v1_name)):
            while len(layer.param) <= index:
                layer.param.add()
            target_field = spec_field_of[spec_name]
            setattr(layer.param[index], spec_name, _converted_value(source_field, value, target_field))


def _copy_layer_param_message(v1_layer: Message, field, value, layer: Message) -> None:
    """Copy a V1 ``*_param`` message to the LayerParameter field of the same name and type."""
    target = layer.DESCRIPTOR.fields_by_name.get(field.name)
    same_type = (
        target is not None
        and target.message_type is not None
        and field.message_type is not None
        and target.message_type.full_name == field.message_type.full_name
    )
    if not same_type:
        raise UpgradeError(
            f"V1 field '{field.name}' has no equivalent in the current layer format",
            layer=v1_layer.name,
            hint="remove the field, or write this layer in the current format",
        )
    getattr(layer, field.name).CopyFrom(value)


def _v2_from_v1(v1_layer: Message) -> Message:
    if v1_layer.HasField("layer"):
        raise UpgradeError(
            "still wraps a V0 layer",
            layer=_entry_name(v1_layer),
            hint="upgrade V0 layers to V1 first (the 'V0 layers -> V1 layers' step)",
        )
    layer = schema_of(v1_layer).LayerParameter()
    if v1_layer.HasField("type"):
        layer.type = _v2_type(v1_layer)
    _add_param_specs(v1_layer, layer)
    for field, value in v1_layer.ListFields():
        if field.name in V1_SAME_NAME_FIELDS:
            _copy_same_name(field, value, layer)
        elif field.name != "type" and field.name not in V1_PARAM_SPEC_FIELDS:
            _copy_layer_param_message(v1_layer, field, value, layer)
    return layer


def needs_v1_upgrade(net: Message) -> bool:
    return len(net.layers) > 0


def upgrade_v1_layers(net: Message) -> None:
    """V1 ``layers`` -> V2 ``layer``, in order."""
    _reject_mixed_layer_fields(net)
    upgraded = [_v2_from_v1(v1_layer) for v1_layer in net.layers]
    net.ClearField("layers")
    net.layer.extend(upgraded)


# --- step 4: net input fields -> Input layer --------------------------------------------------


def _input_shapes(net: Message) -> list[Message]:
    """One BlobShape per net input, from input_shape or from 4 input_dim values each."""
    names, count = list(net.input), len(net.input)
    if not len(net.input_shape) and not len(net.input_dim):
        raise UpgradeError(
            f"net input(s) {names} have no shape",
            hint="give each input a shape (input_shape { dim: ... } or four input_dim values), "
            "or declare an Input layer",
        )
    if len(net.input_shape) and len(net.input_dim):
        raise UpgradeError(
            f"net inputs {names} have both input_shape and input_dim",
            hint="keep one of them (input_shape is the newer)",
        )
    if len(net.input_shape):
        if len(net.input_shape) != count:
            raise UpgradeError(
                f"{count} net input(s) {names} but {len(net.input_shape)} input_shape entries",
                hint="give one input_shape per input, in the same order",
            )
        return [_copy(shape) for shape in net.input_shape]
    if len(net.input_dim) != 4 * count:
        raise UpgradeError(
            f"{count} net input(s) {names} need {4 * count} input_dim values, found {len(net.input_dim)}",
            hint="give four input_dim values (num, channels, height, width) per input, "
            "or use input_shape { dim: ... } per input",
        )
    dims = list(net.input_dim)
    return [schema_of(net).BlobShape(dim=dims[4 * i : 4 * i + 4]) for i in range(count)]


def needs_input_upgrade(net: Message) -> bool:
    return len(net.input) > 0


def upgrade_net_input(net: Message) -> None:
    """``input`` + ``input_shape`` / ``input_dim`` -> a first layer "input" of type "Input"."""
    if len(net.layers):
        raise UpgradeError(
            "net input fields cannot become an Input layer while the net still has V1 'layers'",
            layer=_entry_name(net.layers[0]),
            hint="upgrade V1 layers first (the 'V1 layers -> V2 layer' step)",
        )
    input_layer = schema_of(net).LayerParameter(name=INPUT_LAYER_NAME, type=INPUT_LAYER_TYPE)
    input_layer.top.extend(net.input)
    input_layer.input_param.shape.extend(_input_shapes(net))
    _replace_repeated(net.layer, [input_layer] + [_copy(layer) for layer in net.layer])
    for name in ("input", "input_shape", "input_dim"):
        net.ClearField(name)


# --- step 5: BatchNorm param specs -> lr_mult 0, decay_mult 0 ---------------------------------


def _is_frozen(spec: Message) -> bool:
    return spec.HasField("lr_mult") and spec.lr_mult == 0 and spec.HasField("decay_mult") and spec.decay_mult == 0


def _legacy_batch_norms(net: Message) -> list[Message]:
    """BatchNorm layers that declare their three param specs, as the old definition required."""
    return [
        layer for layer in net.layer if layer.type == BATCH_NORM_TYPE and len(layer.param) == BATCH_NORM_PARAM_COUNT
    ]


def needs_batch_norm_upgrade(net: Message) -> bool:
    # Caffe re-applies this to every such layer; here it counts as needed only when it changes one.
    return any(not _is_frozen(spec) for layer in _legacy_batch_norms(net) for spec in layer.param)


def upgrade_batch_norm(net: Message) -> None:
    """Set lr_mult 0 and decay_mult 0 on the param specs of old-style BatchNorm layers."""
    for layer in _legacy_batch_norms(net):
        for spec in layer.param:
            spec.lr_mult = 0.0
            spec.decay_mult = 0.0


UPGRADE_STEPS: tuple[UpgradeStep, ...] = (
    UpgradeStep("V0 layers -> V1 layers", needs_v0_upgrade, upgrade_v0_layers),
    UpgradeStep(
        "V1 data transformation fields -> transform_param", needs_data_transform_upgrade, upgrade_data_transform
    ),
    UpgradeStep("V1 layers -> V2 layer", needs_v1_upgrade, upgrade_v1_layers),
    UpgradeStep("net input fields -> Input layer", needs_input_upgrade, upgrade_net_input),
    UpgradeStep("BatchNorm param specs -> lr_mult 0, decay_mult 0", needs_batch_norm_upgrade, upgrade_batch_norm),
)
