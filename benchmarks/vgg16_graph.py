"""The VGG16 ONNX graph the benchmarks build (weights made by the caller), in one place.

``vgg16_nodes(weight, fc_width, variant)`` returns the nodes of VGG16 at 224 x 224 and the name of
its output; ``weight(name, shape)`` makes each initializer the caller's way (in memory, lazily...)
and returns its name. ``variant``: "gemm" (Gemm, transB=1) or "matmul" (MatMul + Add: every FC
weight stored transposed).
"""

from __future__ import annotations

VGG16_BLOCKS = [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)]
FLAT = 512 * 7 * 7  # pool5 flattened


def vgg16_nodes(weight, fc_width: int = 4096, variant: str = "gemm") -> tuple[list, str]:
    from onnx import helper

    nodes = []
    x, channels = "data", 3
    for block, (repeats, out) in enumerate(VGG16_BLOCKS, start=1):
        for index in range(1, repeats + 1):
            name = f"conv{block}_{index}"
            nodes.append(
                helper.make_node(
                    "Conv",
                    [x, weight(f"{name}.weight", (out, channels, 3, 3)), weight(f"{name}.bias", (out,))],
                    [name],
                    name=name,
                    kernel_shape=[3, 3],
                    pads=[1, 1, 1, 1],
                )
            )
            nodes.append(helper.make_node("Relu", [name], [f"relu{block}_{index}"], name=f"relu{block}_{index}"))
            x, channels = f"relu{block}_{index}", out
        nodes.append(
            helper.make_node("MaxPool", [x], [f"pool{block}"], name=f"pool{block}", kernel_shape=[2, 2], strides=[2, 2])
        )
        x = f"pool{block}"
    nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flatten", axis=1))
    x, inputs = "flat", FLAT
    for name, outputs in (("fc6", fc_width), ("fc7", fc_width), ("fc8", 1000)):
        if variant == "gemm":
            nodes.append(
                helper.make_node(
                    "Gemm",
                    [x, weight(f"{name}.weight", (outputs, inputs)), weight(f"{name}.bias", (outputs,))],
                    [name],
                    name=name,
                    transB=1,
                )
            )
        else:
            nodes.append(
                helper.make_node("MatMul", [x, weight(f"{name}.weight", (inputs, outputs))], [f"{name}.mm"], name=name)
            )
            nodes.append(
                helper.make_node("Add", [f"{name}.mm", weight(f"{name}.bias", (outputs,))], [name], name=f"{name}.add")
            )
        x, inputs = name, outputs
        if name != "fc8":
            nodes.append(helper.make_node("Relu", [x], [f"{name}.relu"], name=f"{name}.relu"))
            x = f"{name}.relu"
    return nodes, x
