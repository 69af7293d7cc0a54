"""Inference backends behind one small interface (``base.Backend``), opened by ``open_backend``.

Nothing heavy is imported here: each runtime is imported when a backend of its kind is opened,
so this package imports on a machine without TensorRT, CUDA or TFLite.
"""

import os
from typing import Any, Optional

from tx2_inference.backends.base import Backend, Slot, TensorInfo
from tx2_inference.errors import BackendUnavailableError, ConfigError, ModelError

__all__ = ['Backend', 'BACKENDS', 'FIXED_PRECISIONS', 'INPUTS_FROM', 'open_backend',
           'OUTPUTS_FROM', 'PRECISIONS', 'Slot', 'TensorInfo']

# The one list of each: what open_backend, the node's parameters and the CLIs accept.
BACKENDS = ('auto', 'onnxruntime', 'onnxruntime-cuda', 'onnxruntime-tensorrt', 'tensorrt',
            'tflite', 'triton')
# auto: the best the GPU has (backends.tensorrt.devices); the others as named.
FIXED_PRECISIONS = ('fp32', 'fp16', 'int8')
PRECISIONS = ('auto',) + FIXED_PRECISIONS
# Where the TensorRT backend's decoder reads outputs: its pinned buffers, or a CPU-cached copy.
OUTPUTS_FROM = ('pinned', 'copy')
# Where the pre-processor writes the TensorRT backend's inputs: its pinned buffers, or a CPU-cached
# array copied into them at launch.
INPUTS_FROM = ('pinned', 'copy')

_ENGINE_SUFFIXES = ('.engine', '.plan', '.trt')


def open_backend(model_path: str, backend: str = 'auto', precision: str = 'fp16',
                 threads: Optional[int] = None, device: int = 0,
                 engine_cache_dir: Optional[str] = None, spinning: Optional[bool] = None,
                 spin_us: Optional[int] = None,
                 outputs_from: Optional[str] = None, inputs_from: Optional[str] = None,
                 batch_size: int = 1,
                 depth: Optional[int] = None, **options: Any) -> Backend:
    """Open ``model_path`` with the named backend, or the best one here for ``'auto'``.

    ``auto``: a TensorRT engine file -> ``tensorrt``; ``.tflite`` -> ``tflite``; ``.onnx`` ->
    ``tensorrt`` when a GPU, TensorRT and the engine builder are present (the engine is
    built once and cached), else ONNX Runtime on CPU. ``triton``: the model runs on a Triton
    Inference Server; ``model_path`` only names it (its ``.yaml`` beside it), the server's
    address and the rest are ``options`` (``backends.triton_backend.TritonBackend``).

    :param precision: engine precision when a TensorRT engine is built from ONNX.
    :param threads: CPU threads for ONNX Runtime (intra-op) or TFLite.
    :param device: CUDA device number.
    :param engine_cache_dir: where built engines are cached.
    :param spinning: whether ONNX Runtime's intra-op pool threads spin between the parallel
        parts of a run (see ``OnnxRuntimeBackend``); None: the backend's default (off). The
        other backends ignore it.
    :param spin_us: ONNX Runtime 1.26+: the bounded spin of its pool in microseconds (see
        ``OnnxRuntimeBackend``); None: the backend's default (50). The others ignore it.
    :param outputs_from: TensorRT: ``pinned`` or ``copy`` (``TensorRTBackend``); None: its
        default (pinned). The other backends ignore it.
    :param inputs_from: TensorRT: ``pinned`` or ``copy`` (``TensorRTBackend``); None: its
        default (pinned). The other backends ignore it.
    :param batch_size: TensorRT from ``.onnx``: the most frames one inference runs; a model
        with a free batch dimension is built for batches 1..``batch_size``, the engine
        ``tx2-convert engine MODEL.onnx --batch N`` builds (same cache key).
    :param depth: TensorRT from ``.onnx``: the executor's slots, one optimisation profile
        each for a dynamic model (``--profiles``); None: 2, the node's default.
    :param options: passed on to the backend's constructor.
    :raises ConfigError: unknown backend name, or a model file the backend cannot run.
    :raises BackendUnavailableError: the backend's runtime or GPU is missing here.
    """
    if backend not in BACKENDS:
        raise ConfigError('unknown backend {!r}: choose one of {}'.format(
            backend, ', '.join(BACKENDS)))
    suffix = os.path.splitext(model_path)[1].lower()
    check_model_file(model_path, suffix)
    if backend == 'auto':
        backend = _auto(suffix)
    if backend == 'triton':
        from tx2_inference.backends.triton_backend import TritonBackend
        return TritonBackend(model_path, **options)
    if backend == 'tflite':
        if suffix != '.tflite':
            raise ConfigError('backend tflite needs a .tflite model, not {!r}'.format(
                model_path))
        from tx2_inference.backends.tflite_backend import TFLiteBackend
        return TFLiteBackend(model_path, threads=threads, **options)
    if backend == 'tensorrt':
        from tx2_inference.backends.tensorrt.runtime import TensorRTBackend
        if suffix == '.onnx':
            model_path = _engine_from_onnx(model_path, precision, engine_cache_dir,
                                           batch_size, depth)
            precision = _built_precision(model_path, precision)
        elif suffix not in _ENGINE_SUFFIXES:
            raise ConfigError('backend tensorrt needs a .onnx model or a TensorRT engine '
                              '({}), not {!r}'.format(' '.join(_ENGINE_SUFFIXES), model_path))
        else:
            try:
                model_path = _checked_engine(model_path)
            except BackendUnavailableError as error:
                raise BackendUnavailableError('cannot check or run the TensorRT engine {!r} '
                                              'here: {}'.format(model_path, error)) from error
            # A built engine's precision is fixed: its metadata's, not the parameter's (auto).
            precision = _built_precision(model_path, precision)
        if outputs_from is not None:
            options['outputs_from'] = outputs_from
        if inputs_from is not None:
            options['inputs_from'] = inputs_from
        try:
            result = TensorRTBackend(model_path, device=device, **options)
        except BackendUnavailableError as error:
            raise BackendUnavailableError('cannot run {!r} with TensorRT: {}'.format(
                model_path, error)) from error
        result.precision = precision
        return result
    if suffix != '.onnx':
        raise ConfigError('backend {} needs a .onnx model, not {!r}'.format(backend, model_path))
    from tx2_inference.backends.onnxruntime_backend import OnnxRuntimeBackend
    providers = {'onnxruntime': ['cpu'], 'onnxruntime-cuda': ['cuda', 'cpu'],
                 'onnxruntime-tensorrt': ['tensorrt', 'cuda', 'cpu']}[backend]
    if spinning is not None:
        options['spinning'] = bool(spinning)
    if spin_us is not None:
        options['spin_us'] = int(spin_us)
    try:
        return OnnxRuntimeBackend(model_path, providers=providers, intra_op_threads=threads,
                                  **options)
    except ModelError as error:
        if 'protobuf' not in str(error).lower():
            raise
        raise ModelError(
            '{!r} ({} bytes) is not a complete ONNX model: it is truncated or damaged ({}). '
            'Copy it again and compare its sha256 with the original, or export it again '
            '(tx2-convert onnx).'.format(model_path, os.path.getsize(model_path), error)
        ) from error


def _built_precision(engine_path: str, asked: str) -> str:
    """Return the precision an engine was built with (its metadata), e.g. what auto chose.

    An engine without metadata (built by trtexec, say) says nothing of it: ``asked``, or
    ``unknown`` when that is ``auto`` (no build chose it here).
    """
    import json
    try:
        with open(os.path.splitext(engine_path)[0] + '.json') as f:
            return str(json.load(f)['options']['precision'])
    except (OSError, ValueError, KeyError, TypeError):
        return 'unknown' if asked == 'auto' else asked


def check_model_file(model_path: str, suffix: str) -> None:
    """Refuse an empty model file, or one whose content is another format than its name says.

    :raises ModelError: the file is empty.
    :raises ConfigError: a TFLite flatbuffer (``TFL3`` at byte 4) not named ``.tflite``.
    """
    if not os.path.isfile(model_path):
        return  # each backend says which file is missing, and how to fix it
    if os.path.getsize(model_path) == 0:
        raise ModelError('model file {!r} is empty (0 bytes): the copy or the export failed. '
                         'Copy the model again (compare its size and sha256) or export it '
                         'again with tx2-convert.'.format(model_path))
    with open(model_path, 'rb') as f:
        head = f.read(8)
    if head[4:8] == b'TFL3' and suffix != '.tflite':
        raise ConfigError('{!r} is a TFLite model (its content says so) but is named {}: '
                          'rename it to {}.tflite (and its .yaml beside it), and point '
                          'model_path at the new name.'.format(
                              model_path, suffix or 'without an extension',
                              os.path.splitext(os.path.basename(model_path))[0]))


def _checked_engine(engine_path: str) -> str:
    """Return an engine usable on this device: as given, or rebuilt from its ONNX if stale.

    An engine without a metadata file (built by trtexec, say) is handed to TensorRT as it is;
    one whose metadata names another TensorRT version or GPU, or whose checksum fails, is
    rebuilt from the ONNX beside it or named in its metadata, else refused with what to do.
    """
    if not os.path.isfile(os.path.splitext(engine_path)[0] + '.json'):
        return engine_path
    from tx2_inference.backends.tensorrt import builder as engine_builder
    beside = os.path.splitext(engine_path)[0] + '.onnx'
    return engine_builder.check_engine_file(
        engine_path, engine_builder.device_identity(),
        onnx_path=beside if os.path.isfile(beside) else None)


def _auto(suffix: str) -> str:
    if suffix in _ENGINE_SUFFIXES:
        return 'tensorrt'
    if suffix == '.tflite':
        return 'tflite'
    if suffix == '.onnx' and _tensorrt_usable():
        return 'tensorrt'
    return 'onnxruntime'


def _tensorrt_usable() -> bool:
    """Return True when a GPU, TensorRT with its builder, and the engine builder are here.

    A runtime-only TensorRT (the lean runtime: no ``Builder`` / ``OnnxParser``) cannot build
    an engine from ONNX, so ``auto`` then picks ONNX Runtime.
    """
    from tx2_inference.backends.tensorrt.cuda import probe_gpu
    if probe_gpu()[0] == 0:
        return False  # checked first: TensorRT must not be touched without a GPU
    try:
        from tx2_inference.backends.tensorrt.runtime import import_tensorrt
        trt = import_tensorrt()
        from tx2_inference.backends.tensorrt import builder as engine_builder  # noqa: F401
    except (ImportError, BackendUnavailableError):
        return False
    return hasattr(trt, 'Builder') and hasattr(trt, 'OnnxParser')


def _engine_from_onnx(onnx_path: str, precision: str, cache_dir: Optional[str],
                      batch_size: int = 1, depth: Optional[int] = None) -> str:
    """Return a cached engine for ``onnx_path``, building it on this device if needed.

    Inputs with a free batch dimension get the profiles ``tx2-convert engine --batch
    batch_size --profiles depth`` gives them, so an engine built by hand is found here.
    """
    try:
        from tx2_inference.backends.tensorrt import builder
        from tx2_inference.backends.tensorrt.options import batch_shapes
    except ImportError as error:
        raise BackendUnavailableError(
            'cannot build a TensorRT engine from {!r} here ({}): pass a prebuilt .engine '
            'file'.format(onnx_path, error)) from error
    shapes = batch_shapes(builder.onnx_inputs(onnx_path), max(int(batch_size), 1))
    options = builder.BuildOptions(precision=precision, shapes=shapes, profiles=depth or 2)
    return builder.build_or_load(onnx_path, options, cache_dir=cache_dir)
