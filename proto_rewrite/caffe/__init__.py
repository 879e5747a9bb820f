"""Caffe format: the schema, prototxt and caffemodel I/O, legacy upgrades."""
