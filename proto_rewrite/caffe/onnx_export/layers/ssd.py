"""SSD's PriorBox (a constant computed at export) and DetectionOutput (in standard ONNX ops).

PriorBox follows ``prior_box_layer.cpp`` of the SSD fork: per feature-map cell, per min_size
(truncated to an integer, as Caffe does), a square box of min_size, a square of
sqrt(min_size * max_size) when max sizes are given, then one box per aspect ratio (1 excepted;
flip adds 1/ratio); centres at ``(w + offset) * step``; coordinates divided by the image size;
optional clip; the variances in the second channel.

DetectionOutput follows ``detection_output_layer.cpp`` and ``bbox_util.cpp``:

1. decode every prior's box with its variances (CORNER, CENTER_SIZE or CORNER_SIZE);
2. per image and per class but the background: the ``top_k`` highest scores (TopK, which keeps
   equal scores in prior order like Caffe's stable sort), then greedy NMS dropping boxes whose
   IoU with a kept box is above ``nms_threshold`` among those scoring above
   ``confidence_threshold`` (NonMaxSuppression, with each (image, class) as its own batch so
   that every class has its own candidates);
3. per image, the ``keep_top_k`` highest scores over all classes;
4. rows ``[image, label, score, xmin, ymin, xmax, ymax]`` in Caffe's order: by image, by label,
   by score; shape (1, 1, rows, 7). No detection at all gives Caffe's one row per image
   ``[i, -1, -1, -1, -1, -1, -1]``.

Not supported: adaptive NMS (``eta`` < 1), a fourth bottom.
"""

from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from proto_rewrite.caffe.onnx_export.context import LayerContext, converter

CORNER, CENTER_SIZE, CORNER_SIZE = 1, 2, 3


def _legacy(shape, index: int) -> int:
    return shape[index] if index < len(shape) else 1


def aspect_ratios(param) -> list[float]:
    ratios = [1.0]
    for ratio in param.aspect_ratio:
        if all(abs(ratio - known) >= 1e-6 for known in ratios):
            ratios.append(float(ratio))
            if param.flip:
                ratios.append(float(np.float32(1.0 / ratio)))
    return ratios


def prior_boxes(param, layer_h: int, layer_w: int, img_h: int, img_w: int) -> np.ndarray:
    """The PriorBox top (1, 2, layer_h * layer_w * priors * 4), float32, as Caffe computes it."""
    if param.HasField("img_h") or param.HasField("img_w"):
        img_h, img_w = param.img_h, param.img_w
    elif param.HasField("img_size"):
        img_h = img_w = param.img_size
    if param.HasField("step_h") or param.HasField("step_w"):
        step_h, step_w = np.float32(param.step_h), np.float32(param.step_w)
    elif param.HasField("step"):
        step_h = step_w = np.float32(param.step)
    else:
        step_h, step_w = np.float32(img_h) / np.float32(layer_h), np.float32(img_w) / np.float32(layer_w)
    offset = np.float32(param.offset)
    sizes = []  # (width, height) of each prior of a cell, in Caffe's order
    for index, min_value in enumerate(param.min_size):
        min_size = int(min_value)
        sizes.append((float(min_size), float(min_size)))
        if len(param.max_size):
            side = float(np.float32(math.sqrt(min_size * int(param.max_size[index]))))
            sizes.append((side, side))
        for ratio in aspect_ratios(param):
            if abs(ratio - 1.0) < 1e-6:
                continue
            root = math.sqrt(ratio)
            sizes.append((float(np.float32(min_size * root)), float(np.float32(min_size / root))))
    widths = np.array([w for w, _ in sizes], np.float64)
    heights = np.array([h for _, h in sizes], np.float64)
    center_x = ((np.arange(layer_w, dtype=np.float32) + offset) * step_w).astype(np.float64)
    center_y = ((np.arange(layer_h, dtype=np.float32) + offset) * step_h).astype(np.float64)
    cy, cx = np.meshgrid(center_y, center_x, indexing="ij")  # (H, W)
    cx, cy = cx[..., None], cy[..., None]
    boxes = np.stack(
        [
            (cx - widths / 2.0) / img_w,
            (cy - heights / 2.0) / img_h,
            (cx + widths / 2.0) / img_w,
            (cy + heights / 2.0) / img_h,
        ],
        axis=-1,
    ).astype(np.float32)
    if param.clip:
        boxes = np.clip(boxes, 0.0, 1.0)
    variance = list(param.variance) or [0.1]
    if len(variance) not in (1, 4):
        raise ValueError(f"{len(variance)} variances; give 1 or 4")
    variances = np.broadcast_to(
        np.array(variance, np.float32)[-4:] if len(variance) == 4 else np.float32(variance[0]), boxes.shape
    )
    return np.stack([boxes.reshape(-1), np.ascontiguousarray(variances).reshape(-1)])[None]


@converter("PriorBox")
def prior_box(ctx: LayerContext) -> None:
    param = ctx.layer.prior_box_param
    feature = ctx.in_shapes[0]
    ctx.require_static(0, range(2, len(feature)), "its priors are computed for one feature-map size")
    has_image_size = param.HasField("img_h") or param.HasField("img_w") or param.HasField("img_size")
    if len(ctx.inputs) > 1:
        image = ctx.in_shapes[1]
        if not has_image_size:
            ctx.require_static(1, range(2, len(image)), "its priors are computed for one image size")
        img_h, img_w = _legacy(image, 2), _legacy(image, 3)
    elif has_image_size:
        img_h = img_w = 0
    else:
        raise ctx.error("has no image bottom and no img_size / img_h, img_w", "add the data blob as second bottom")
    if not len(param.min_size):
        raise ctx.error("min_size is not given")
    if len(param.max_size) and len(param.max_size) != len(param.min_size):
        raise ctx.error(f"{len(param.max_size)} max_size for {len(param.min_size)} min_size")
    try:
        priors = prior_boxes(param, _legacy(feature, 2), _legacy(feature, 3), img_h, img_w)
    except ValueError as err:
        raise ctx.error(str(err)) from err
    if priors.shape != tuple(ctx.out_shapes[0]):
        raise ctx.error(f"computed priors of shape {priors.shape}, Caffe's shape is {ctx.out_shapes[0]}")
    ctx.graph.add("Identity", [ctx.graph.const(priors, np.float32, ctx.sub("priors"))], [ctx.outputs[0]], name=ctx.name)


@converter("DetectionOutput")
def detection_output(ctx: LayerContext) -> None:
    _DetectionOutput(ctx).build()


class _DetectionOutput:
    def __init__(self, ctx: LayerContext) -> None:
        self.ctx, self.g = ctx, ctx.graph
        param = ctx.layer.detection_output_param
        self.param = param
        if len(ctx.inputs) != 3:
            raise ctx.refuse(f"{len(ctx.inputs)} bottoms: only (location, confidence, priors) is supported")
        if not param.HasField("num_classes"):
            raise ctx.error("num_classes is not given")
        if param.nms_param.eta != 1:
            raise ctx.refuse(
                f"adaptive NMS (eta {param.nms_param.eta}) has no ONNX equivalent", "set nms_param.eta to 1"
            )
        if param.code_type not in (CORNER, CENTER_SIZE, CORNER_SIZE):
            raise ctx.refuse(f"code_type {param.code_type} is not CORNER, CENTER_SIZE or CORNER_SIZE")
        self.classes = param.num_classes
        self.loc_classes = 1 if param.share_location else self.classes
        self.priors = _legacy(ctx.in_shapes[2], 2) // 4
        loc, conf = ctx.in_shapes[0], ctx.in_shapes[1]
        if (
            math.prod(loc[1:]) != self.priors * self.loc_classes * 4
            or math.prod(conf[1:]) != self.priors * self.classes
        ):
            raise ctx.error(f"inputs {loc} and {conf} do not hold {self.priors} priors x {self.classes} classes")
        ctx.require_static(2, range(len(ctx.in_shapes[2])), "the number of priors must be fixed")
        self.kept_classes = [c for c in range(self.classes) if c != param.background_label_id]
        top_k = param.nms_param.top_k if param.nms_param.HasField("top_k") else -1
        self.k = self.priors if top_k < 0 else min(top_k, self.priors)
        if self.k == 0 or not self.kept_classes:
            raise ctx.refuse("nms_param.top_k 0 or no class but the background: no detection can be kept")

    # small helpers
    def op(self, op: str, inputs, suffix: str, **attrs) -> str:
        return self.ctx.emit(op, inputs, suffix=suffix, **attrs)

    def ints(self, values, what: str) -> str:
        return self.ctx.ints(values, what)

    def scalar(self, value: int, what: str) -> str:
        return self.g.const(value, np.int64, self.ctx.sub(what))

    def gather(self, data: str, indices: str, suffix: str, axis: int = 0) -> str:
        return self.op("Gather", [data, indices], suffix, axis=axis)

    def build(self) -> None:
        ctx, g = self.ctx, self.g
        boxes = self.decode()
        batch = (
            g.dims_of(ctx.inputs[1], [0], ctx.sub("batch"))
            if ctx.dynamic(1, [0])
            else self.ints([ctx.in_shapes[1][0]], "batch")
        )
        batch_scalar = g.squeeze(batch, [0], name=ctx.sub("batch_scalar"))
        images = self.op("Range", [self.scalar(0, "zero"), batch_scalar, self.scalar(1, "one")], "images")

        # per image and kept class, the top_k scores and their priors
        conf = self.op("Reshape", [ctx.inputs[1], self.ints([0, self.priors, self.classes], "conf_shape")], "conf")
        scores = self.op("Transpose", [conf], "class_scores", perm=[0, 2, 1])
        if len(self.kept_classes) != self.classes:
            scores = self.gather(scores, self.ints(self.kept_classes, "kept_classes"), "kept_scores", axis=1)
        kept = len(self.kept_classes)
        top_scores, top_priors = g.add(
            "TopK",
            [scores, self.ints([self.k], "top_k")],
            [g.fresh(ctx.sub("top_scores")), g.fresh(ctx.sub("top_priors"))],
            name=ctx.sub("top_k"),
            axis=2,
        )
        first_row = self.op(
            "Mul",
            [g.unsqueeze(images, [1, 2], name=ctx.sub("images_3d")), self.scalar(self.priors, "priors")],
            "image_offset",
        )
        rows = self.op("Add", [first_row, top_priors], "box_rows")
        if not self.param.share_location:
            classes = self.ints(self.kept_classes, "class_ids_3d")
            classes = self.op("Reshape", [classes, self.ints([1, kept, 1], "class_shape")], "class_ids")
            rows = self.op(
                "Add",
                [self.op("Mul", [rows, self.scalar(self.classes, "classes")], "box_rows_c"), classes],
                "box_rows_class",
            )
        flat_boxes = self.op("Reshape", [boxes, self.ints([-1, 4], "box_shape")], "flat_boxes")
        candidates = self.gather(flat_boxes, rows, "candidates")  # (N, kept, k, 4)
        nms_boxes = self.op("Reshape", [candidates, self.ints([-1, self.k, 4], "nms_box_shape")], "nms_boxes")
        nms_scores = self.op("Reshape", [top_scores, self.ints([-1, 1, self.k], "nms_score_shape")], "nms_scores")
        nms_inputs = [
            nms_boxes,
            nms_scores,
            self.ints([self.k], "max_boxes"),
            ctx.floats([self.param.nms_param.nms_threshold], "iou_threshold"),
        ]
        if self.param.HasField("confidence_threshold"):
            nms_inputs.append(ctx.floats([self.param.confidence_threshold], "score_threshold"))
        selected = self.op("NonMaxSuppression", nms_inputs, "nms")

        # the selected boxes: image, label, score, box
        group = self.gather(selected, self.scalar(0, "column0"), "group", axis=1)  # image * kept + class
        candidate = self.gather(selected, self.scalar(2, "column2"), "candidate", axis=1)
        position = self.op(
            "Add", [self.op("Mul", [group, self.scalar(self.k, "k")], "group_start"), candidate], "position"
        )
        score = self.gather(self.op("Reshape", [top_scores, self.ints([-1], "flat")], "flat_scores"), position, "score")
        box = self.gather(
            self.op("Reshape", [candidates, self.ints([-1, 4], "box_shape")], "flat_candidates"), position, "box"
        )
        kept_t = self.scalar(kept, "kept")
        image = self.op("Div", [group, kept_t], "image")
        label = self.gather(
            self.ints(self.kept_classes, "kept_classes"), self.op("Mod", [group, kept_t], "class_index"), "label"
        )

        order = self.sort_descending(score, "by_score")
        if self.param.keep_top_k > -1:
            order = self.keep_top_k(order, image, images, batch)
        key = self.op("Add", [self.op("Mul", [image, self.scalar(self.classes, "classes")], "image_key"), label], "key")
        by_key = self.sort_ascending_stable(self.gather(key, order, "order_key"), "by_key")
        order = self.gather(order, by_key, "order")

        columns = [
            self.op("Cast", [self.gather(image, order, "out_image")], "image_float", to=TensorProto.FLOAT),
            self.op("Cast", [self.gather(label, order, "out_label")], "label_float", to=TensorProto.FLOAT),
            self.gather(score, order, "out_score"),
        ]
        columns = [g.unsqueeze(c, [1], name=ctx.sub(f"column{i}")) for i, c in enumerate(columns)]
        detections = self.op("Concat", [*columns, self.gather(box, order, "out_box")], "detections", axis=1)
        self.finish(detections, images, batch)

    def decode(self) -> str:
        """Boxes (N, P, 4), or (N, P, classes, 4) without shared locations."""
        ctx, param = self.ctx, self.param
        shared = param.share_location
        loc_shape = [0, self.priors, 4] if shared else [0, self.priors, self.classes, 4]
        loc = self.op("Reshape", [ctx.inputs[0], self.ints(loc_shape, "loc_shape")], "loc")
        priors = self.op("Reshape", [ctx.inputs[2], self.ints([-1, 4], "prior_shape")], "prior_rows")
        prior_shape = [self.priors, 4] if shared else [self.priors, 1, 4]
        boxes = self.op(
            "Reshape",
            [
                self.g.slice(priors, [0], [self.priors], [0], name=ctx.sub("prior_boxes")),
                self.ints(prior_shape, "prior_box_shape"),
            ],
            "prior",
        )
        variances = self.op(
            "Reshape",
            [
                self.g.slice(priors, [self.priors], [2 * self.priors], [0], name=ctx.sub("prior_variances")),
                self.ints(prior_shape, "prior_box_shape"),
            ],
            "variance",
        )
        encoded = param.variance_encoded_in_target

        def part(x, start, what):
            return self.g.slice(x, [start], [start + 2], [-1], name=ctx.sub(what))

        prior_min, prior_max = part(boxes, 0, "prior_min"), part(boxes, 2, "prior_max")
        size = self.op("Sub", [prior_max, prior_min], "prior_size")
        if param.code_type == CORNER:
            offsets = loc if encoded else self.op("Mul", [variances, loc], "scaled_loc")
            return self.op("Add", [boxes, offsets], "boxes")
        if param.code_type == CORNER_SIZE:
            sizes = self.op("Concat", [size, size], "prior_size4", axis=-1)
            offsets = loc if encoded else self.op("Mul", [variances, loc], "scaled_loc")
            return self.op("Add", [boxes, self.op("Mul", [offsets, sizes], "offsets")], "boxes")
        center = self.op(
            "Mul", [self.op("Add", [prior_min, prior_max], "prior_sum"), ctx.floats(0.5, "half")], "prior_center"
        )
        loc_center, loc_size = part(loc, 0, "loc_center"), part(loc, 2, "loc_size")
        if not encoded:
            loc_center = self.op("Mul", [part(variances, 0, "variance_center"), loc_center], "scaled_center")
            loc_size = self.op("Mul", [part(variances, 2, "variance_size"), loc_size], "scaled_size")
        box_center = self.op("Add", [self.op("Mul", [loc_center, size], "center_offset"), center], "box_center")
        box_size = self.op("Mul", [self.op("Exp", [loc_size], "size_factor"), size], "box_size")
        half = self.op("Mul", [box_size, ctx.floats(0.5, "half")], "box_half")
        return self.op(
            "Concat",
            [self.op("Sub", [box_center, half], "box_min"), self.op("Add", [box_center, half], "box_max")],
            "boxes",
            axis=-1,
        )

    def count(self, values: str, what: str) -> str:
        return self.g.op("Shape", [values], name=self.ctx.sub(what))

    def sort_descending(self, values: str, what: str) -> str:
        _, indices = self.g.add(
            "TopK",
            [values, self.count(values, f"{what}_count")],
            [self.g.fresh(self.ctx.sub(f"{what}_values")), self.g.fresh(self.ctx.sub(what))],
            name=self.ctx.sub(what),
            axis=0,
            largest=1,
            sorted=1,
        )
        return indices

    def sort_ascending_stable(self, keys: str, what: str) -> str:
        """Indices sorting int64 ``keys`` ascending; equal keys keep their order (TopK's tie rule)."""
        as_float = self.op("Cast", [keys], f"{what}_float", to=TensorProto.FLOAT)  # keys < 2^24: exact
        _, indices = self.g.add(
            "TopK",
            [as_float, self.count(keys, f"{what}_count")],
            [self.g.fresh(self.ctx.sub(f"{what}_values")), self.g.fresh(self.ctx.sub(what))],
            name=self.ctx.sub(what),
            axis=0,
            largest=0,
            sorted=1,
        )
        return indices

    def keep_top_k(self, order: str, image: str, images: str, batch: str) -> str:
        """Of ``order`` (by score), the keep_top_k first of each image."""
        ctx = self.ctx
        limit = self.param.keep_top_k
        if not ctx.dynamic(1, [0]) and ctx.in_shapes[1][0] == 1:
            return self.g.slice(order, [0], [limit], [0], name=ctx.sub("keep_top_k"))
        by_image = self.sort_ascending_stable(self.gather(image, order, "order_image"), "by_image")
        order = self.gather(order, by_image, "image_order")  # by image, then by score
        sorted_images = self.gather(image, order, "sorted_images")
        same = self.op("Equal", [self.g.unsqueeze(sorted_images, [1], name=ctx.sub("images_col")), images], "same")
        counts = self.g.reduce(
            "ReduceSum",
            self.op("Cast", [same], "same_int", to=TensorProto.INT64),
            [0],
            name=ctx.sub("counts"),
            keepdims=False,
        )
        starts = self.op("CumSum", [counts, self.scalar(0, "axis0")], "starts", exclusive=1)
        total = self.g.squeeze(self.count(order, "detection_count"), [0], name=ctx.sub("total"))
        positions = self.op("Range", [self.scalar(0, "zero"), total, self.scalar(1, "one")], "positions")
        rank = self.op("Sub", [positions, self.gather(starts, sorted_images, "image_start")], "rank")
        keep = self.op("Less", [rank, self.scalar(limit, "keep_top_k")], "keep")
        kept = self.op("Reshape", [self.op("NonZero", [keep], "kept_2d"), self.ints([-1], "flat")], "kept")
        return self.gather(order, kept, "kept_order")  # by image, then score: the key sort keeps that

    def finish(self, detections: str, images: str, batch: str) -> None:
        """(1, 1, rows, 7); Caffe's fake rows [i, -1, ...] when nothing was detected."""
        ctx = self.ctx
        image_ids = self.g.unsqueeze(
            self.op("Cast", [images], "image_ids", to=TensorProto.FLOAT), [1], name=ctx.sub("image_ids_col")
        )
        minus = self.op(
            "Expand",
            [
                ctx.floats(np.full((1, 6), -1.0, np.float32), "minus_one"),
                self.op("Concat", [batch, self.ints([6], "six")], "fake_shape", axis=0),
            ],
            "fake_values",
        )
        fake = self.op("Concat", [image_ids, minus], "fake_rows", axis=1)
        both = self.op("Concat", [detections, fake], "rows_and_fake", axis=0)
        found = self.g.slice(self.count(detections, "rows_shape"), [0], [1], [0], name=ctx.sub("found"))
        empty = self.op(
            "Cast", [self.op("Equal", [found, self.ints([0], "zero_1d")], "empty_bool")], "empty", to=TensorProto.INT64
        )
        end = self.op("Add", [found, self.op("Mul", [batch, empty], "fake_count")], "end")
        rows = self.g.slice(both, [0], end, [0], name=ctx.sub("rows"))
        self.g.unsqueeze(rows, [0, 1], name=ctx.name, out=ctx.outputs[0])
        ctx.unknown_dims[0] = {2: "detections"}
