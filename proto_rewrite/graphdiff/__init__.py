"""Graph diff: what a conversion changed, layer by layer and weight by weight.

``load`` reads the two models (Caffe/Caffe or ONNX/ONNX) into the format-neutral graph of
``proto_rewrite.graph_view`` (built by the adapters ``caffe.view`` / ``onnx.view``, which inspect
uses too); ``match`` pairs their nodes; ``compare`` compares the pairs (``weights`` relates weight
values, ``cost`` counts MACs); ``text`` and ``html`` render the result, and ``GraphDiff.to_dict``
is the JSON report (``schemas/diff.schema.json``).
"""
