"""What validate --device cuda tells a user whose onnxruntime lacks CUDA, for each install state
(checkable without a GPU)."""

import sys

from proto_rewrite.validation.runtime import gpu_install_hint, installed_onnxruntimes


def test_installed_distributions_are_found():
    found = installed_onnxruntimes()
    assert found and all(isinstance(v, str) for v in found.values())


def test_cpu_build_only():
    hint = gpu_install_hint({"onnxruntime": "1.32.0"})
    assert hint.startswith("replace the CPU build") and f"{sys.executable} -m pip uninstall -y onnxruntime &&" in hint
    assert hint.count("install onnxruntime-gpu") == 1


def test_both_builds_installed():
    hint = gpu_install_hint({"onnxruntime": "1.32.0", "onnxruntime-gpu": "1.32.0"})
    assert "both onnxruntime-gpu and onnxruntime are installed" in hint
    assert "uninstall -y onnxruntime onnxruntime-gpu" in hint and hint.endswith("install onnxruntime-gpu")


def test_gpu_build_without_its_provider():
    assert "--force-reinstall --no-deps onnxruntime-gpu" in gpu_install_hint({"onnxruntime-gpu": "1.32.0"})
