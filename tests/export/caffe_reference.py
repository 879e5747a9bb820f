"""Caffe's forward passes in plain numpy loops, written from the Caffe / SSD sources, as
references for the exporter's unit tests (deliberately naive and independent of it)."""

from __future__ import annotations

import math

import numpy as np


def conv2d(x, w, b=None, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * pad[0], wd + 2 * pad[1]), np.float64)
    xp[:, :, pad[0] : pad[0] + h, pad[1] : pad[1] + wd] = x
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    oh, ow = (h + 2 * pad[0] - eh) // stride[0] + 1, (wd + 2 * pad[1] - ew) // stride[1] + 1
    out = np.zeros((n, m, oh, ow), np.float64)
    per = m // group
    for o in range(m):
        g = o // per
        for i in range(oh):
            for j in range(ow):
                patch = xp[
                    :,
                    g * cg : (g + 1) * cg,
                    i * stride[0] : i * stride[0] + eh : dilation[0],
                    j * stride[1] : j * stride[1] + ew : dilation[1],
                ]
                out[:, o, i, j] = np.sum(patch * w[o], axis=(1, 2, 3))
        if b is not None:
            out[:, o] += b[o]
    return out


def deconv2d(x, w, b=None, stride=(1, 1), pad=(0, 0), dilation=(1, 1), group=1):
    """Caffe's Deconvolution: the transpose of conv2d; weight (C, num_output/group, kh, kw)."""
    n, c, h, wd = x.shape
    _, mg, kh, kw = w.shape
    m = mg * group
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    full_h, full_w = stride[0] * (h - 1) + eh, stride[1] * (wd - 1) + ew
    full = np.zeros((n, m, full_h, full_w), np.float64)
    per_in = c // group
    for ci in range(c):
        g = ci // per_in
        for i in range(h):
            for j in range(wd):
                full[
                    :,
                    g * mg : (g + 1) * mg,
                    i * stride[0] : i * stride[0] + eh : dilation[0],
                    j * stride[1] : j * stride[1] + ew : dilation[1],
                ] += x[:, ci, i, j][:, None, None, None] * w[ci]
    out = full[:, :, pad[0] : full_h - pad[0], pad[1] : full_w - pad[1]]
    if b is not None:
        out = out + b[None, :, None, None]
    return out


def pool_output(size, kernel, stride, pad, ceil=True, padded=None):
    span = size + 2 * pad - kernel
    out = (-(-span // stride) if ceil else span // stride) + 1
    if (pad > 0 if padded is None else padded) and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def pool2d(x, kernel, stride, pad, mode="MAX", ceil=True):
    """pooling_layer.cpp Forward_cpu, MAX and AVE."""
    n, c, h, w = x.shape
    padded = pad[0] > 0 or pad[1] > 0
    oh = pool_output(h, kernel[0], stride[0], pad[0], ceil, padded)
    ow = pool_output(w, kernel[1], stride[1], pad[1], ceil, padded)
    out = np.zeros((n, c, oh, ow), np.float64)
    for i in range(oh):
        for j in range(ow):
            hs, ws = i * stride[0] - pad[0], j * stride[1] - pad[1]
            if mode == "MAX":
                he, we = min(hs + kernel[0], h), min(ws + kernel[1], w)
                hs, ws = max(hs, 0), max(ws, 0)
                out[:, :, i, j] = x[:, :, hs:he, ws:we].max(axis=(2, 3))
            else:
                he, we = min(hs + kernel[0], h + pad[0]), min(ws + kernel[1], w + pad[1])
                size = (he - hs) * (we - ws)
                hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
                out[:, :, i, j] = x[:, :, hs:he, ws:we].sum(axis=(2, 3)) / size
    return out


def lrn_across(x, size, alpha, beta, k):
    c = x.shape[1]
    pre = (size - 1) // 2
    sq = x.astype(np.float64) ** 2
    scale = np.empty_like(sq)
    for ch in range(c):
        lo, hi = max(ch - pre, 0), min(ch - pre + size, c)
        scale[:, ch] = k + alpha / size * sq[:, lo:hi].sum(axis=1)
    return x * scale**-beta


def lrn_within(x, size, alpha, beta):
    pad = (size - 1) // 2
    average = pool2d(x.astype(np.float64) ** 2, (size, size), (1, 1), (pad, pad), "AVE")
    return x * (1 + alpha * average) ** -beta


def batch_norm(x, mean, var, factor, eps, use_global_stats=True):
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    if use_global_stats:
        scale = 0.0 if factor == 0 else 1.0 / factor
        mean, var = mean * scale, var * scale
    else:
        mean = x.mean(axis=axes)
        var = ((x - mean.reshape(shape)) ** 2).mean(axis=axes)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)


def inner_product(x, w, b, axis=1, transpose=False):
    lead = x.shape[:axis]
    flat = x.reshape(int(np.prod(lead, dtype=np.int64)), -1).astype(np.float64)
    out = flat @ (w if transpose else w.T)
    if b is not None:
        out = out + b
    return out.reshape(*lead, -1)


def softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    e = np.exp(shifted.astype(np.float64))
    return e / e.sum(axis=axis, keepdims=True)


def mvn(x, across_channels=False, normalize_variance=True, eps=1e-9):
    axes = tuple(range(1 if across_channels else 2, x.ndim))
    centered = x - x.mean(axis=axes, keepdims=True)
    if not normalize_variance:
        return centered
    return centered / (np.sqrt((centered**2).mean(axis=axes, keepdims=True)) + eps)


def normalize(x, scale, across_spatial=True, channel_shared=True, eps=1e-10):
    axes = tuple(range(1, x.ndim)) if across_spatial else (1,)
    norm = np.sqrt((x.astype(np.float64) ** 2).sum(axis=axes, keepdims=True) + eps)
    factor = scale.reshape(()) if channel_shared else scale.reshape((-1,) + (1,) * (x.ndim - 2))
    return x / norm * factor


def argmax(x, top_k=1, out_max_val=False, axis=None):
    """argmax_layer.cpp: std::greater on (value, index) pairs: ties go to the larger index."""
    if axis is not None:
        moved = np.moveaxis(x, axis, -1)
        flat = moved.reshape(-1, moved.shape[-1])
        rows = []
        for row in flat:
            order = sorted(range(len(row)), key=lambda i: (row[i], i), reverse=True)[:top_k]
            rows.append([row[i] if out_max_val else i for i in order])
        result = np.array(rows, np.float64).reshape(*moved.shape[:-1], top_k)
        return np.moveaxis(result, -1, axis)
    flat = x.reshape(x.shape[0], -1)
    out = []
    for row in flat:
        order = sorted(range(len(row)), key=lambda i: (row[i], i), reverse=True)[:top_k]
        item = [float(i) for i in order]
        if out_max_val:
            item += [float(row[i]) for i in order]
        out.append(item)
    shape = [x.shape[0], 2 if out_max_val else 1, top_k] + [1] * (max(x.ndim, 3) - 3)
    return np.array(out, np.float64).reshape(shape)


# ---------------------------------------------------------------------------------------------
# SSD


def prior_box(
    layer_h,
    layer_w,
    img_h,
    img_w,
    min_sizes,
    max_sizes=(),
    aspect_ratios=(),
    flip=True,
    clip=False,
    variance=(0.1,),
    step=None,
    offset=0.5,
):
    ratios = [1.0]
    for ar in aspect_ratios:
        if all(abs(ar - r) >= 1e-6 for r in ratios):
            ratios.append(ar)
            if flip:
                ratios.append(1.0 / ar)
    step_h = step if step else img_h / layer_h
    step_w = step if step else img_w / layer_w
    boxes = []
    for h in range(layer_h):
        for w in range(layer_w):
            cx, cy = (w + offset) * step_w, (h + offset) * step_h
            for s, min_size in enumerate(min_sizes):
                min_size = int(min_size)
                sizes = [(min_size, min_size)]
                if max_sizes:
                    side = math.sqrt(min_size * int(max_sizes[s]))
                    sizes.append((side, side))
                for ar in ratios:
                    if abs(ar - 1.0) < 1e-6:
                        continue
                    sizes.append((min_size * math.sqrt(ar), min_size / math.sqrt(ar)))
                for bw, bh in sizes:
                    boxes.append(
                        [(cx - bw / 2) / img_w, (cy - bh / 2) / img_h, (cx + bw / 2) / img_w, (cy + bh / 2) / img_h]
                    )
    boxes = np.array(boxes, np.float64)
    if clip:
        boxes = np.clip(boxes, 0, 1)
    variances = np.tile(np.array(variance if len(variance) == 4 else variance * 4, np.float64), (len(boxes), 1))
    return np.stack([boxes.reshape(-1), variances.reshape(-1)])[None]


def _iou(a, b):
    if b[0] > a[2] or b[2] < a[0] or b[1] > a[3] or b[3] < a[1]:
        return 0.0
    iw, ih = min(a[2], b[2]) - max(a[0], b[0]), min(a[3], b[3]) - max(a[1], b[1])
    inter = iw * ih

    def size(r):
        return 0.0 if r[2] < r[0] or r[3] < r[1] else (r[2] - r[0]) * (r[3] - r[1])

    return inter / (size(a) + size(b) - inter)


def _decode(prior, var, loc, code_type, encoded):
    if code_type == "CORNER":
        return prior + (loc if encoded else var * loc)
    pw, ph = prior[2] - prior[0], prior[3] - prior[1]
    if code_type == "CORNER_SIZE":
        return prior + (loc if encoded else var * loc) * np.array([pw, ph, pw, ph])
    pcx, pcy = (prior[0] + prior[2]) / 2, (prior[1] + prior[3]) / 2
    v = np.ones(4) if encoded else var
    cx, cy = v[0] * loc[0] * pw + pcx, v[1] * loc[1] * ph + pcy
    w, h = math.exp(v[2] * loc[2]) * pw, math.exp(v[3] * loc[3]) * ph
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def detection_output(
    loc,
    conf,
    priors,
    num_classes,
    share_location=True,
    background=0,
    nms_threshold=0.3,
    top_k=-1,
    keep_top_k=-1,
    confidence_threshold=None,
    code_type="CENTER_SIZE",
    encoded=False,
):
    """detection_output_layer.cpp Forward_cpu with bbox_util's ApplyNMSFast: rows in Caffe's order."""
    num = loc.shape[0]
    num_priors = priors.shape[2] // 4
    loc_classes = 1 if share_location else num_classes
    loc = loc.reshape(num, num_priors, loc_classes, 4).astype(np.float64)
    conf = conf.reshape(num, num_priors, num_classes).astype(np.float64)
    prior_boxes = priors[0, 0].reshape(-1, 4).astype(np.float64)
    prior_vars = priors[0, 1].reshape(-1, 4).astype(np.float64)
    threshold = -np.inf if confidence_threshold is None else confidence_threshold
    rows = []
    for i in range(num):
        decoded = {
            c: [_decode(prior_boxes[p], prior_vars[p], loc[i, p, c], code_type, encoded) for p in range(num_priors)]
            for c in range(loc_classes)
        }
        indices = {}
        for c in range(num_classes):
            if c == background:
                continue
            boxes = decoded[0 if share_location else c]
            scores = conf[i, :, c]
            candidates = sorted([(s, p) for p, s in enumerate(scores) if s > threshold], key=lambda t: -t[0])
            if top_k > -1:
                candidates = candidates[:top_k]
            kept = []
            for _, p in candidates:
                if all(_iou(boxes[p], boxes[q]) <= nms_threshold for q in kept):
                    kept.append(p)
            indices[c] = kept
        total = sum(len(v) for v in indices.values())
        if keep_top_k > -1 and total > keep_top_k:
            pairs = sorted(((conf[i, p, c], c, p) for c, kept in indices.items() for p in kept), key=lambda t: -t[0])
            pairs = pairs[:keep_top_k]
            indices = {}
            for _, c, p in pairs:
                indices.setdefault(c, []).append(p)
        for c in sorted(indices):
            boxes = decoded[0 if share_location else c]
            for p in indices[c]:
                rows.append([i, c, conf[i, p, c], *boxes[p]])
    if not rows:
        rows = [[i, -1, -1, -1, -1, -1, -1] for i in range(num)]
    return np.array(rows, np.float64).reshape(1, 1, -1, 7)
