"""ONNX format: lazy model I/O, FC pattern matching, the Gemm/MatMul -> Conv rewrite, inspect.

load -> view -> plan -> apply -> check:

* ``model`` (with ``reader``, ``writer``, ``tensors``): load and save; initializers stay in the
  memory-mapped file until read and are written back as the bytes they were.
* ``shapes`` and ``graph``: shape inference without the weight data; a read-only graph index.
* ``fold``, ``shape_expr``, ``patterns``: the FC patterns (weights folded from constant subgraphs,
  shape chains evaluated), each check failing with a plan reason code.
* ``planner`` (with ``weights``): the whole rewrite decided, as a RewritePlan plus node edits.
* ``rewrite``: the public ``plan_onnx_rewrite`` / ``apply_onnx_plan``; ``build`` carries a plan
  out, ``fcn_check`` reports what still bakes the input size.
* ``summary``: the inspect summary.
"""
