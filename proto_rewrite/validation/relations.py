"""How an output of B relates to the same output of A, shared by ``compare_models`` (which
decides it) and ``report`` (which shows it), so that ``report`` need not import ``compare_models``."""

SAME = "same"
FCN = "fcn"  # (N, M) against (N, M, 1, 1): the shape difference an fcn rewrite makes
# (N, K) or (N, K, 1, 1) against (N, K, h, w) at the same input size: a --classifier-before-pool
# conversion, whose score map B averages to what A's global average pool computed
SPATIAL_MEAN = "spatial-mean"
