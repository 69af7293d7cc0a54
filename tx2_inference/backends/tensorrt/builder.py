"""Build TensorRT engines on the device from ONNX (``build_engine_bytes``, ``build_or_load``).

Runs on the robot (Python 3.6; TensorRT 8.0.1 on JetPack 4.6, 8.2.1 on JetPack 4.6.1 and later
4.6.x, the last releases for Tegra X2) and on newer devices (TensorRT 8.5 to 11). The node calls
:func:`build_or_load` at configure time, so deploying a model means copying its ONNX file and
config; ``tx2-convert engine`` calls the same function. The options are in ``options.py``, the
cache (keys, lock, metadata, checksums) in ``cache.py``, INT8 calibration in ``calibrator.py``.
An engine given by path whose metadata names another TensorRT version or GPU is rebuilt from its
ONNX when that is at hand (:func:`check_engine_file`), otherwise refused with what to do.

**TensorRT calls** follow NVIDIA's Python API (``python/src/infer/pyCore.cpp`` of each release
branch) and samples (``samples/python/efficientdet/build_engine.py``), per version; every one of
them exists from 8.0 on unless said otherwise:

- network: ``Builder.create_network(1 << EXPLICIT_BATCH)`` up to 9.x (ignored in 10, gone in
  11); ``STRONGLY_TYPED`` for a QDQ model built as INT8 on 10.x; TensorRT 11 is always strongly
  typed (``api.network_flags``).
- parse: ``OnnxParser(network, logger).parse(bytes)``, errors via ``num_errors/get_error``.
- workspace: ``config.max_workspace_size`` (8.0 to 8.6) or
  ``config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)`` (8.4+), chosen by
  ``api.builder_features``.
- precision: ``BuilderFlag.FP16`` / ``INT8`` up to 10.x, never on a strongly typed network
  (TensorRT 10 rejects them there: NVIDIA/TensorRT#4253, "condition:
  !config.getFlag(BuilderFlag::kFP16)"; trtexec clears them too), where the types come from the
  ONNX; INT8 from a plain ONNX adds ``config.int8_calibrator`` and, for dynamic inputs,
  ``config.set_calibration_profile`` (``calibrator.py``). ``builder.platform_has_fast_fp16 /
  _int8`` (up to 10.x) drive a warning.
- version compatible (8.6+, ``--version-compatible``): ``BuilderFlag.VERSION_COMPATIBLE`` and
  ``EXCLUDE_LEAN_RUNTIME``, so the runtime-only ``tensorrt_lean`` runs the engine; refused for
  models with TensorRT plugin ops.
- DLA: ``config.default_device_type = DeviceType.DLA``, ``config.DLA_core``,
  ``BuilderFlag.GPU_FALLBACK``.
- timing cache (8.0+): ``config.create_timing_cache(bytes)``,
  ``config.set_timing_cache(cache, ignore_mismatch=False)``,
  ``config.get_timing_cache().serialize()`` after the build.
- shape profiles: ``builder.create_optimization_profile()``, ``profile.set_shape(name, min,
  opt, max)``, ``config.add_optimization_profile(profile)`` (returns the profile's index, -1
  when invalid). A network with dynamic inputs gets ``BuildOptions.profiles`` identical
  profiles, one per executor slot: TensorRT lets one execution context use a profile at a
  time, and the runtime's slot ``i`` selects profile ``i`` (``api.py``). A static network gets
  none (every context shares the implicit profile 0), or the one ``--shapes`` describes.
- build: ``builder.build_serialized_network(network, config)`` (8.0+); None means failure. The
  calibrator's CUDA state is made right before it and released after it on every path.
- progress: ``config.progress_monitor = IProgressMonitor subclass`` (10.0+); before that a
  heartbeat log line while the build runs, and the calibrator logs each batch.
"""

import contextlib
import logging
import os
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

from tx2_inference.backends.tensorrt import loader, preflight
from tx2_inference.backends.tensorrt.cache import (  # noqa: F401 (the package's build API)
    BuildFn,
    cache_key,
    CacheEntry,
    device_identity,
    DeviceIdentity,
    engine_metadata,
    EngineCache,
    file_lock,
    METADATA_FORMAT,
)
from tx2_inference.backends.tensorrt.calibrator import (
    calibration_shape,
    CalibrationBatches,
    make_calibrator,
)
from tx2_inference.backends.tensorrt.loader import import_onnx, ONNX_PIP_PY36  # noqa: F401
from tx2_inference.backends.tensorrt.options import (  # noqa: F401
    BuildOptions,
    CALIBRATORS,
    parse_shape_profiles,
    PRECISIONS,
    ShapeProfile,
)
from tx2_inference.core.fileio import atomic_write_bytes, atomic_write_text, file_sha256
from tx2_inference.errors import BackendUnavailableError, ConfigError, ModelError, UserError

LOG = logging.getLogger('tx2_inference.backends.tensorrt.builder')

# ONNX ops that TensorRT runs as plugins (a version-compatible engine cannot hold them).
_PLUGIN_DOMAINS = ('trt.plugins',)


def check_engine_file(engine_path: str, identity: DeviceIdentity,
                      onnx_path: Optional[str] = None,
                      options: Optional[BuildOptions] = None,
                      build_fn: Optional[BuildFn] = None) -> str:
    """Validate an engine given by path against its metadata; rebuild it if stale or corrupt.

    :returns: a usable engine path (``engine_path`` or a rebuilt cache entry beside it).
    :raises ModelError: stale or corrupt with no ONNX at hand to rebuild from.
    """
    meta = EngineCache.read_metadata(os.path.splitext(engine_path)[0] + '.json')
    problem = ''
    if not os.path.isfile(engine_path):
        problem = 'does not exist'
    elif meta is None:
        problem = 'has no metadata file beside it (.json)'
    elif file_sha256(engine_path) != meta.get('engine_sha256'):
        problem = 'fails its checksum (corrupted or partly copied)'
    else:
        mismatched = ['{} {} (this device: {})'.format(k, meta.get(k), v)
                      for k, v in sorted(identity.as_dict().items()) if meta.get(k) != v]
        if mismatched:
            problem = 'was built for another device: ' + ', '.join(mismatched)
    if not problem:
        return engine_path
    onnx_path = onnx_path or (meta or {}).get('onnx_path')
    if not onnx_path or not os.path.isfile(onnx_path):
        raise ModelError('Engine {!r} {}, and its ONNX model is not at hand to rebuild it '
                         'from. Copy the .onnx file (and its .yaml) to the robot and point the '
                         'node at it; the engine is then built here.'.format(engine_path,
                                                                            problem))
    if options is None:  # as it was built: key fields, calibration, workspace, timing cache
        options = BuildOptions.from_metadata(meta or {})
    missing = options.calibration_missing()
    if missing and not _is_qdq(_onnx_ops(onnx_path)):
        raise ModelError('Engine {!r} {}; rebuilding this INT8 engine needs {}, not found here. '
                         'Copy them to the robot and build it again: {}'.format(
                             engine_path, problem, ' and '.join(missing),
                             options.engine_command(onnx_path, engine_path)))
    LOG.warning('engine %s %s: rebuilding from %s', engine_path, problem, onnx_path)
    cache = EngineCache(os.path.dirname(os.path.abspath(engine_path)))
    return cache.get_or_build(onnx_path, options, identity, build_fn or build_engine_bytes,
                              force=True)


def build_or_load(onnx_path: str, options: BuildOptions, cache_dir: Optional[str] = None,
                  output: Optional[str] = None, force: bool = False,
                  identity: Optional[DeviceIdentity] = None,
                  build_fn: Optional[BuildFn] = None) -> str:
    """Return a valid engine for ``onnx_path`` on this device, building it if needed.

    :param cache_dir: the cache folder (default: ``engines/`` beside the ONNX).
    :param output: also copy the engine and its metadata here (atomically).
    """
    if not os.path.isfile(onnx_path):
        raise ModelError('ONNX model {!r} does not exist.'.format(onnx_path))
    identity = identity or device_identity()
    options = preflight.fit_options(onnx_path, options, identity.gpu_name,
                                    identity.compute_capability)
    cache = EngineCache(cache_dir or os.path.join(os.path.dirname(os.path.abspath(onnx_path)),
                                                  'engines'))
    path = cache.get_or_build(onnx_path, options, identity, build_fn or build_engine_bytes,
                              force=force)
    if output:
        with open(path, 'rb') as f:
            atomic_write_bytes(output, f.read())
        with open(os.path.splitext(path)[0] + '.json') as f:
            atomic_write_text(os.path.splitext(output)[0] + '.json', f.read())
        path = output
    return path




def _progress_monitor(trt: Any) -> Any:
    """Return an ``IProgressMonitor`` logging build phases (TensorRT 10+), else None."""
    if not hasattr(trt, 'IProgressMonitor'):
        return None

    class Monitor(trt.IProgressMonitor):  # type: ignore
        """Logs each phase start/finish and every tenth step (thread-safe: logging is)."""

        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.steps = {}  # type: Dict[str, int]

        def phase_start(self, phase_name: str, parent_phase: Optional[str],
                        num_steps: int) -> None:
            self.steps[phase_name] = num_steps
            LOG.info('build: %s%s (%d steps)', (parent_phase + ' > ') if parent_phase else '',
                     phase_name, num_steps)

        def step_complete(self, phase_name: str, step: int) -> bool:
            total = self.steps.get(phase_name, 0)
            if total >= 10 and (step + 1) % max(total // 10, 1) == 0:
                LOG.info('build: %s %d/%d', phase_name, step + 1, total)
            return True  # False would cancel the build

        def phase_finish(self, phase_name: str) -> None:
            LOG.debug('build: %s done', phase_name)

    return Monitor()


@contextlib.contextmanager
def _heartbeat(what: str, every_s: float = 15.0) -> Iterator[None]:
    """Log '<what>: N s' every ``every_s`` while the body runs (for TensorRT < 10)."""
    stop = threading.Event()
    started = time.time()

    def beat() -> None:
        while not stop.wait(every_s):
            LOG.info('%s: %.0f s so far', what, time.time() - started)

    thread = threading.Thread(target=beat, name='build-heartbeat')
    thread.daemon = True
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()




def _onnx_ops(onnx_path: str) -> List[Tuple[str, str]]:
    """Return the (domain, op_type) of every node of the ONNX model's graph."""
    model = import_onnx().load(onnx_path, load_external_data=False)
    return [(n.domain, n.op_type) for n in model.graph.node]


def onnx_inputs(onnx_path: str) -> List[Tuple[str, List[int]]]:
    """Return (name, dims) of the ONNX model's inputs (weights excluded), -1 where free."""
    model = import_onnx().load(onnx_path, load_external_data=False)
    weights = {i.name for i in model.graph.initializer}
    return [(t.name, [d.dim_value if d.HasField('dim_value') else -1
                      for d in t.type.tensor_type.shape.dim])
            for t in model.graph.input if t.name not in weights]


def _is_qdq(ops: List[Tuple[str, str]]) -> bool:
    """Return True if the model has QuantizeLinear/DequantizeLinear nodes."""
    return any(op in ('QuantizeLinear', 'DequantizeLinear') for _, op in ops)


def _plugin_ops(ops: List[Tuple[str, str]]) -> List[str]:
    """Return the ops TensorRT would run as plugins (``*_TRT``, domain ``trt.plugins``)."""
    return sorted({op for domain, op in ops if domain in _PLUGIN_DOMAINS or op.endswith('_TRT')})


def _input_cfg(options: BuildOptions, onnx_path: str) -> Dict[str, Any]:
    """Return the model config's input section (for calibration preprocessing)."""
    from tx2_inference.core.model_config import config_path_for, ModelConfig
    path = options.config_path or config_path_for(onnx_path)
    return dict(ModelConfig.load(path).to_dict().get('input') or {})


def build_engine_bytes(onnx_path: str, options: BuildOptions) -> bytes:
    """Build a serialized TensorRT engine from ONNX (needs TensorRT and a GPU).

    :raises BackendUnavailableError: no GPU / no TensorRT / a runtime-only TensorRT.
    :raises ModelError: the ONNX cannot be parsed, or the build fails.
    :raises UserError: options this TensorRT or model cannot build.
    """
    from tx2_inference.backends.tensorrt.api import builder_features, network_flags
    trt = loader.import_tensorrt()  # probes the GPU first: TensorRT segfaults without one
    if not (hasattr(trt, 'Builder') and hasattr(trt, 'OnnxParser')):
        raise BackendUnavailableError(
            'this TensorRT ({} {}) is the runtime-only package (no Builder/OnnxParser): build '
            'the engine where full TensorRT is installed (JetPack: python3-libnvinfer), or pass '
            'a prebuilt engine.'.format(trt.__name__, trt.__version__))
    for line in preflight.before_build(onnx_path, trt.__version__):  # raises on a hard one
        LOG.warning('preflight: %s', line)
    logger = loader.tensorrt_logger(trt)
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    feats = builder_features(dir(config), trt.BuilderFlag.__members__, dir(trt), dir(builder))
    ops = _onnx_ops(onnx_path)
    qdq = _is_qdq(ops)
    flag_enum = trt.NetworkDefinitionCreationFlag
    names = network_flags(trt.__version__, flag_enum.__members__,
                          strongly_typed=qdq and options.precision == 'int8')
    flags = 0
    for name in names:
        flags |= 1 << int(getattr(flag_enum, name))
    strongly_typed = 'STRONGLY_TYPED' in names or not feats.precision_flags
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, 'rb') as f:
        if not parser.parse(f.read()):
            errors = [parser.get_error(i) for i in range(parser.num_errors)]
            raise ModelError('TensorRT {} cannot parse {!r}: {}. Check the model for this '
                             'TensorRT on the desktop: tx2-convert check {} --target trt{}.'
                             .format(trt.__version__, onnx_path,
                                     preflight.describe_parser_errors(errors, onnx_path),
                                     onnx_path, preflight.devices.release_for(trt.__version__)))
    # workspace: max_workspace_size up to 8.3, set_memory_pool_limit from 8.4
    if feats.workspace == 'set_memory_pool_limit':
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    elif feats.workspace == 'max_workspace_size':
        config.max_workspace_size = options.workspace_mb << 20
    calibrate = _set_precision(trt, builder, config, feats, qdq, strongly_typed, onnx_path,
                               options)
    if options.version_compatible:
        _set_version_compatible(trt, config, _plugin_ops(ops), onnx_path)
    if options.dla_core is not None:
        if getattr(builder, 'num_DLA_cores', 0) <= options.dla_core:
            raise ConfigError('DLA core {} requested, this device has {} DLA cores (Xavier and '
                              'Orin have DLA; TX2 has none).'.format(
                                  options.dla_core, getattr(builder, 'num_DLA_cores', 0)))
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    _add_profiles(builder, config, network, options)
    timing_cache = None
    if options.timing_cache and hasattr(config, 'create_timing_cache'):
        data = b''
        if os.path.isfile(options.timing_cache):
            with open(options.timing_cache, 'rb') as f:
                data = f.read()
        timing_cache = config.create_timing_cache(data)
        config.set_timing_cache(timing_cache, ignore_mismatch=False)
    monitor = _progress_monitor(trt)
    if monitor is not None:
        config.progress_monitor = monitor
    LOG.info('building %s engine from %s (TensorRT %s); this takes minutes on a Jetson',
             options.precision, onnx_path, trt.__version__)
    calibrator = None
    try:
        if calibrate:  # last: nothing that can refuse the build comes after its CUDA state
            calibrator = _calibrator(trt, builder, config, network, onnx_path, options)
            calibrator.open()
        with _heartbeat('building engine'):
            serialized = builder.build_serialized_network(network, config)
    finally:
        if calibrator is not None:
            calibrator.release()
    if serialized is None:
        raise ModelError('TensorRT failed to build an engine from {!r} (see its log above).'
                         .format(onnx_path))
    if timing_cache is not None:
        atomic_write_bytes(options.timing_cache, bytes(config.get_timing_cache().serialize()))
    return bytes(serialized)


def _set_precision(trt: Any, builder: Any, config: Any, feats: Any, qdq: bool,
                   strongly_typed: bool, onnx_path: str, options: BuildOptions) -> bool:
    """Set FP16/INT8 flags where the network takes them; return True when INT8 calibrates.

    A strongly typed network (TensorRT 11 always; 10.x for a QDQ model built as INT8) takes
    its types from the ONNX and no precision flag: TensorRT 10 refuses the build otherwise.
    """
    precision = options.precision
    if strongly_typed:
        if precision == 'int8' and not qdq:
            raise UserError('TensorRT {} builds INT8 only from a QDQ ONNX: run `tx2-convert '
                            'quantize {} --calib-images DIR -o model_int8.onnx` and build that.'
                            .format(trt.__version__, onnx_path))
        if precision == 'fp16':
            LOG.warning('TensorRT %s is strongly typed: an FP32 ONNX builds an FP32 engine; '
                        'export an FP16 ONNX for FP16.', trt.__version__)
        else:
            LOG.info('strongly typed network: precision comes from the ONNX (no FP16/INT8 '
                     'flags)')
        return False
    if precision in ('fp16', 'int8'):
        if not getattr(builder, 'platform_has_fast_fp16', True):
            LOG.warning('this GPU has no fast FP16: an FP16 engine may not be faster.')
        config.set_flag(trt.BuilderFlag.FP16)
    if precision != 'int8':
        return False
    if not getattr(builder, 'platform_has_fast_int8', True):
        LOG.warning('this GPU has no fast INT8 (e.g. Tegra X2, sm_62): INT8 will not be faster '
                    'than FP16 here; prefer --precision fp16.')
    config.set_flag(trt.BuilderFlag.INT8)
    if qdq:
        LOG.info('QDQ ONNX: INT8 scales come from the model, no calibration')
        return False
    if not feats.calibrators:
        raise UserError('this TensorRT has no INT8 calibrators: build from a QDQ ONNX '
                        '(tx2-convert quantize).')
    if not options.calib_images and not (options.calib_cache
                                         and os.path.isfile(options.calib_cache)):
        raise UserError('INT8 needs calibration: pass --calib-images DIR (a few hundred images '
                        'like the camera sees) or an existing --calib-cache.')
    return True


def _set_version_compatible(trt: Any, config: Any, plugins: List[str], onnx_path: str) -> None:
    """Set ``VERSION_COMPATIBLE | EXCLUDE_LEAN_RUNTIME`` (8.6+), for the lean runtime."""
    members = trt.BuilderFlag.__members__
    if 'VERSION_COMPATIBLE' not in members or 'EXCLUDE_LEAN_RUNTIME' not in members:
        raise UserError('TensorRT {} cannot build version-compatible engines (8.6 and later '
                        'can): build without --version-compatible and run the engine with full '
                        'TensorRT.'.format(trt.__version__))
    if plugins:
        raise UserError('{!r} uses TensorRT plugin op(s) {}, which a version-compatible engine '
                        'cannot hold: export the model without them (e.g. the decoder and NMS '
                        'on the CPU), or build without --version-compatible and run it with full '
                        'TensorRT.'.format(onnx_path, ', '.join(plugins)))
    config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)


def _calibrator(trt: Any, builder: Any, config: Any, network: Any, onnx_path: str,
                options: BuildOptions) -> Any:
    """Make the INT8 calibrator (not yet opened); set the calibration profile where needed."""
    batches = None
    if options.calib_images:
        from tx2_inference.core import images
        if network.num_inputs != 1:
            raise UserError('INT8 calibration from images feeds one input; this network has {}: '
                            'calibrate with a cache or build from a QDQ ONNX.'.format(
                                network.num_inputs))
        inp = network.get_input(0)
        shape, needs_profile = calibration_shape(tuple(inp.shape), options.shapes.get(inp.name),
                                                 options.calib_batch)
        if needs_profile:
            profile = builder.create_optimization_profile()
            profile.set_shape(inp.name, shape, shape, shape)
            if not config.set_calibration_profile(profile):
                raise ModelError('TensorRT refused the calibration profile {} for {!r}: check '
                                 '--shapes and --calib-batch.'.format(list(shape), inp.name))
        LOG.info('INT8 calibration of %r in batches of shape %s', inp.name, list(shape))
        batches = CalibrationBatches(images.list_images(options.calib_images,
                                                        options.calib_limit),
                                     _input_cfg(options, onnx_path), shape,
                                     trt.nptype(inp.dtype))
    calibrator = make_calibrator(trt, options.calibrator, batches, options.calib_cache,
                                 source=options.calibration_digest() if batches else None)
    config.int8_calibrator = calibrator
    return calibrator


def _add_profiles(builder: Any, config: Any, network: Any, options: BuildOptions) -> None:
    """Add the optimisation profiles: ``options.profiles`` identical ones for dynamic inputs.

    One profile per executor slot, since TensorRT lets one execution context use a profile at a
    time. A static network gets none, or the single one ``options.shapes`` describes.
    """
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    dynamic = [i for i in inputs if any(d < 0 for d in i.shape)]
    if not dynamic and not options.shapes:
        return
    shapes = []  # type: List[Tuple[str, ShapeProfile]]
    for inp in inputs:
        if inp.name in options.shapes:
            lo, opt, hi = options.shapes[inp.name]
        elif inp in dynamic:
            raise UserError('Input {!r} has a dynamic shape {}: pass --shapes {}:MIN:OPT:MAX '
                            '(e.g. 1x3x300x300), or export with a fixed shape.'.format(
                                inp.name, list(inp.shape), inp.name))
        else:
            continue
        if len(lo) != len(inp.shape) or any(
                s > 0 and s != v for s, v in zip(inp.shape, lo)):
            raise UserError('Shape profile for {!r} {} does not fit the input shape {}.'.format(
                inp.name, list(lo), list(inp.shape)))
        shapes.append((inp.name, (lo, opt, hi)))
    count = options.profiles if dynamic else 1
    if dynamic:
        LOG.info('dynamic input(s) %s: %d identical optimisation profiles, one per executor '
                 'slot', ', '.join(i.name for i in dynamic), count)
    for number in range(count):
        profile = builder.create_optimization_profile()
        for name, (lo, opt, hi) in shapes:
            profile.set_shape(name, lo, opt, hi)
        index = config.add_optimization_profile(profile)
        if index != number:  # -1: TensorRT found the profile invalid
            raise ModelError('TensorRT refused optimisation profile {} (add_optimization_profile '
                             'returned {}): check --shapes (see the TensorRT log above).'.format(
                                 number, index))
