"""Import TensorRT after the GPU probe (the full package, else the lean runtime), and onnx.

The bottom of the TensorRT backend: ``runtime``, ``cache`` and ``builder`` import it, and it
imports none of them (``cache`` needs the TensorRT version for an engine's device identity,
``runtime`` needs ``cache`` for an engine's metadata). TensorRT itself is imported only after
``cuda.require_gpu``: it segfaults on a machine without a usable GPU instead of raising.
"""

from typing import Any

from tx2_inference.backends.tensorrt.cuda import require_gpu
from tx2_inference.errors import BackendUnavailableError

# Full TensorRT, then the runtime-only lean runtime: its frontend package (``tensorrt_lean``)
# or, in 11.x, the module its bindings wheel installs (``tensorrt_lean_bindings``).
TENSORRT_MODULES = ('tensorrt', 'tensorrt_lean', 'tensorrt_lean_bindings')


def import_tensorrt() -> Any:
    """Import TensorRT (full, else the runtime-only lean runtime), after the GPU probe."""
    require_gpu()
    errors = []
    for name in TENSORRT_MODULES:
        try:
            return __import__(name)
        except ImportError as error:
            errors.append(str(error))
    raise BackendUnavailableError(
        'TensorRT is not installed ({}): on a Jetson it comes with JetPack '
        '(python3-libnvinfer); elsewhere use backend onnxruntime'.format(errors[0]))


def is_lean(trt: Any) -> bool:
    """Return True for the runtime-only lean runtime (no builder; version-compatible only)."""
    return str(getattr(trt, '__name__', '')).startswith('tensorrt_lean')


def tensorrt_logger(trt: Any) -> Any:
    """Return a WARNING ``trt.Logger``, with TensorRT's plugins (EfficientNMS, ...) registered.

    The plugins are registered where the module has ``init_libnvinfer_plugins`` (not the lean
    runtime, which runs no plugins).
    """
    logger = trt.Logger(trt.Logger.WARNING)
    if hasattr(trt, 'init_libnvinfer_plugins'):
        trt.init_libnvinfer_plugins(logger, '')
    return logger


#: The last ``onnx`` release with a Python 3.6 wheel (cp36, manylinux2014 aarch64 too), for
#: JetPack 4.6. No rosdep key installs ``onnx`` (test/data/rosdep_keys.json): the README says it.
ONNX_PIP_PY36 = 'onnx==1.11.0'


def import_onnx() -> Any:
    """Return the ``onnx`` module, which every engine build reads the model with.

    :raises BackendUnavailableError: it is not installed; the message gives the pip line.
    """
    try:
        import onnx
    except ImportError as exc:
        raise BackendUnavailableError(
            'Building a TensorRT engine reads the ONNX model with the `onnx` package, which is '
            'not installed ({}). Install it: `pip3 install {}` on JetPack 4.6 (Python 3.6), '
            '`pip3 install onnx` elsewhere.'.format(exc, ONNX_PIP_PY36)) from exc
    return onnx
