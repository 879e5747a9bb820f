"""onnxruntime sessions with the same settings for both models of a comparison."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from proto_rewrite.errors import UsageError

CPU = "cpu"
CUDA = "cuda"


class DeviceError(UsageError):
    """The requested device cannot be used (no onnxruntime-gpu, no GPU)."""


@dataclass(frozen=True)
class RuntimeOptions:
    device: str = CPU
    optimize: bool = False  # onnxruntime graph optimisations (off by default: compare the graphs as they are)
    threads: int | None = None


def providers_for(options: RuntimeOptions) -> list:
    import onnxruntime as ort

    if options.device == CPU:
        return ["CPUExecutionProvider"]
    if options.device != CUDA:
        raise UsageError(f"unknown device {options.device!r}", options=("device",), hint="set device to cpu or cuda")
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        raise DeviceError(
            f"this onnxruntime ({ort.__version__}) has no CUDA execution provider (it has: {', '.join(available)})",
            hint=gpu_install_hint(installed_onnxruntimes()),
        )
    # TF32 off: a comparison at fp32 tolerances needs fp32 arithmetic.
    return [("CUDAExecutionProvider", {"use_tf32": "0"}), "CPUExecutionProvider"]


ONNXRUNTIME_DISTRIBUTIONS = (
    "onnxruntime",
    "onnxruntime-gpu",
    "onnxruntime-directml",
    "onnxruntime-openvino",
    "onnxruntime-training",
    "ort-nightly",
    "ort-nightly-gpu",
)


def installed_onnxruntimes() -> dict[str, str]:
    """The installed distributions that provide the ``onnxruntime`` module: name -> version."""
    from importlib import metadata

    found = {}
    for name in ONNXRUNTIME_DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def gpu_install_hint(installed: dict[str, str]) -> str:
    """What to run to get onnxruntime's CUDA build, given what is installed. Two onnxruntime
    distributions install the same module, so whichever pip wrote last wins: keep exactly one."""
    import sys

    pip = f"{sys.executable} -m pip"
    if "onnxruntime-gpu" in installed and len(installed) > 1:
        others = " ".join(sorted(set(installed) - {"onnxruntime-gpu"}))
        return (
            f"both onnxruntime-gpu and {others} are installed; they write the same 'onnxruntime' module and the "
            f"CPU build's files won. Keep one: {pip} uninstall -y {others} onnxruntime-gpu && "
            f"{pip} install onnxruntime-gpu"
        )
    if "onnxruntime-gpu" in installed:
        return (
            "onnxruntime-gpu is installed but lists no CUDA provider: reinstall it "
            f"({pip} install --force-reinstall --no-deps onnxruntime-gpu)"
        )
    names = " ".join(sorted(installed)) or "onnxruntime"
    return (
        f"replace the CPU build with the GPU one: {pip} uninstall -y {names} && {pip} install onnxruntime-gpu "
        "(uninstall first: the two write the same module)"
    )


# A model whose weights would pass protobuf's 2 GB limit inline is handed to onnxruntime with its
# external initializers left in their files: the proto keeps the references, and the session is
# told the folder they are relative to. Patched smaller by the tests.
INLINE_LIMIT = 2**31 - 1 - 2**24
_EXTERNAL_FOLDERS: dict[int, tuple[object, str]] = {}


def keep_external(proto, folder: str) -> None:
    """Record that ``proto``'s external data files are relative to ``folder``."""
    _EXTERNAL_FOLDERS[id(proto)] = (proto, folder)


def external_folder(proto) -> str | None:
    """The folder recorded by :func:`keep_external` for ``proto``, None for an inline model."""
    entry = _EXTERNAL_FOLDERS.get(id(proto))
    return entry[1] if entry is not None and entry[0] is proto else None


@contextlib.contextmanager
def _working_folder(folder: str | None):
    """onnxruntime before the folder setting above (1.18 has none) reads a serialized model's
    external data relative to the working folder: be there while the session loads it."""
    if folder is None:
        yield
        return
    previous = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


def make_session(model, options: RuntimeOptions, *, what: str = "model", external_folder: str | None = None):
    """An InferenceSession for ``model`` (serialized bytes or a path). ``external_folder``: where
    the external data files of a serialized model with external initializers are."""
    import onnxruntime as ort

    settings = ort.SessionOptions()
    if external_folder is not None:
        settings.add_session_config_entry("session.model_external_initializers_file_folder_path", str(external_folder))
    settings.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL if options.optimize else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    settings.log_severity_level = 3
    if options.threads:
        settings.intra_op_num_threads = options.threads
        settings.inter_op_num_threads = 1
    providers = providers_for(options)
    try:
        with _working_folder(external_folder):
            session = ort.InferenceSession(model, sess_options=settings, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for bad models
        raise UsageError(
            f"onnxruntime cannot load the {what}: {str(err).strip().splitlines()[0]}",
            hint="check the model with: python -c \"import onnx; onnx.checker.check_model('MODEL')\"",
        ) from err
    if options.device == CUDA and "CUDAExecutionProvider" not in session.get_providers():
        raise DeviceError(
            "onnxruntime could not start its CUDA execution provider (no usable GPU or CUDA libraries)",
            hint="check nvidia-smi and the CUDA/cuDNN versions onnxruntime-gpu needs, or set device to cpu",
            options=("device",),
        )
    return session


def run_session(session, fetch: list[str], feed: dict, *, what: str = "model") -> list:
    """``session.run`` with onnxruntime's errors (wrong input shape or type...) as user errors."""
    try:
        return session.run(fetch, feed)
    except Exception as err:  # onnxruntime raises its own exception types
        shapes = ", ".join(f"{name} {'x'.join(map(str, value.shape))}" for name, value in feed.items())
        raise UsageError(
            f"onnxruntime cannot run the {what} on {shapes}: {str(err).strip().splitlines()[0]}",
            hint="check input_shapes (and the batch size) against the model's inputs",
            options=("input_shapes",),
        ) from err
