"""proto-rewrite: turn the fully-connected layers of Caffe and ONNX networks into convolutions.

An FC layer over a C x H x W feature map is an H x W convolution with C input channels; the
FC layers after it are 1 x 1 convolutions. The rewritten net computes the same numbers at the
original input size and a map of scores, one per crop position, on a larger input.
"""

__version__ = "0.1.0"
