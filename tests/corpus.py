"""Where the test networks are: tests/data, and ../shared for the files that may not be copied."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
CAFFE_DATA = DATA / "caffe"
SHARED_CORPUS = ROOT.parent / "shared" / "corpus" / "caffe"

# Files of the shared corpus that may not be copied into the project (licence unclear).
NOT_COPIED = ("vgg16.prototxt", "densenet121.prototxt")


def corpus_file(name: str) -> Path:
    """A corpus prototxt: from tests/data/caffe, or from ../shared for the ones not copied."""
    local = CAFFE_DATA / name
    if local.is_file():
        return local
    shared = SHARED_CORPUS / name
    if shared.is_file():
        return shared
    pytest.skip(f"{name} is not in tests/data/caffe and ../shared/corpus/caffe is absent")


def corpus_names() -> list[str]:
    names = sorted(p.name for p in CAFFE_DATA.glob("*.prototxt"))
    return names + list(NOT_COPIED)


SAMPLES = ROOT / "samples"


def sample_script():
    """samples/make_samples.py as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_samples", SAMPLES / "make_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
