"""Build TensorRT engines on the device from ONNX, and keep them in a safe cache.

Runs on the robot (Python 3.6, TensorRT 8.2 on JetPack 4.6) and on newer devices
(TensorRT 8.5 to 11). The node calls :func:`build_or_load` at configure time, so deploying a
model means copying its ONNX file and config; ``tx2-convert engine`` calls the same function.

**The cache.** An engine is specific to the ONNX file, the TensorRT version, the GPU and the
build options, so its key is the sha256 of all of them (:func:`cache_key`). Beside each
``<name>.<precision>.<key>.engine`` is a ``.json`` metadata file holding the key's parts and the
engine's own sha256. Writes are atomic (temp file, fsync, ``os.replace``; metadata last), so a
build killed at any point leaves either no entry or a complete one. A lock file serialises
builders of the same key: two processes asking for one engine build it once. An entry whose
checksum does not match (a corrupted file) is rebuilt. An engine given by path whose metadata
names another TensorRT version or GPU is rebuilt from its ONNX when that is at hand, otherwise
refused with a message saying what to do.

**TensorRT calls** follow NVIDIA's Python API reference and samples
(``samples/python/efficientdet/build_engine.py``, the ``IInt8EntropyCalibrator2`` sample
calibrators), per version:

- network: ``Builder.create_network(1 << EXPLICIT_BATCH)`` up to 10.x (ignored in 10, gone in
  11); ``STRONGLY_TYPED`` for a QDQ model on 10.x; TensorRT 11 is always strongly typed
  (``backends.trt_api.network_flags``).
- parse: ``OnnxParser(network, logger).parse(bytes)``, errors via ``num_errors/get_error``.
- workspace: ``config.max_workspace_size`` (<= 8.3) or
  ``config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)`` (8.4+), chosen by
  ``backends.trt_api.builder_features``.
- precision: ``BuilderFlag.FP16`` / ``INT8`` + ``config.int8_calibrator`` (an
  ``IInt8EntropyCalibrator2`` or ``IInt8MinMaxCalibrator``) up to 10.x; TensorRT 11 takes
  precision from the ONNX (QDQ nodes: make them with ``tx2-convert quantize``).
  ``builder.platform_has_fast_fp16 / _int8`` (up to 10.x) drive a warning.
- DLA: ``config.default_device_type = DeviceType.DLA``, ``config.DLA_core``,
  ``BuilderFlag.GPU_FALLBACK``.
- timing cache (8.0+): ``config.create_timing_cache(bytes)``,
  ``config.set_timing_cache(cache, ignore_mismatch=False)``,
  ``config.get_timing_cache().serialize()`` after the build.
- shape profiles: ``builder.create_optimization_profile()``, ``profile.set_shape(name, min,
  opt, max)``, ``config.add_optimization_profile(profile)`` (returns the profile's index, -1
  when invalid). A network with dynamic inputs gets ``BuildOptions.profiles`` identical
  profiles, one per executor slot: TensorRT lets one execution context use a profile at a
  time, and the runtime's slot ``i`` selects profile ``i`` (``backends/trt_api.py``). A static
  network gets none (every context shares the implicit profile 0), or the one ``--shapes``
  describes, as before. The count is in the cache key and metadata of dynamic engines.
- build: ``builder.build_serialized_network(network, config)`` (8.0+); None means failure.
- progress: ``config.progress_monitor = IProgressMonitor subclass`` (10.0+); before that a
  heartbeat log line while the build runs, and the calibrator logs each batch.
"""

import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from tx2_inference.backends import PRECISIONS
from tx2_inference.backends.tensorrt.cuda import gpu_name_and_capability
from tx2_inference.core.fileio import atomic_write_bytes, atomic_write_text, file_sha256
from tx2_inference.errors import BackendUnavailableError, ConfigError, ModelError, UserError

LOG = logging.getLogger('tx2_inference.backends.tensorrt.builder')

METADATA_FORMAT = 1
CALIBRATORS = ('entropy', 'minmax')

ShapeProfile = Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]


class BuildOptions(object):
    """What an engine is built with; every field that changes the engine is in its key."""

    def __init__(self, precision: str = 'fp16', workspace_mb: int = 1024,
                 dla_core: Optional[int] = None, calib_images: Optional[str] = None,
                 calib_cache: Optional[str] = None, calibrator: str = 'entropy',
                 calib_batch: int = 8, calib_limit: int = 256,
                 timing_cache: Optional[str] = None,
                 shapes: Optional[Dict[str, ShapeProfile]] = None,
                 config_path: Optional[str] = None, profiles: int = 2) -> None:
        """Check and hold the options.

        :param precision: fp32, fp16 or int8.
        :param workspace_mb: builder workspace memory pool limit.
        :param dla_core: a DLA core (Xavier/Orin) with GPU fallback, or None for the GPU.
        :param calib_images: INT8 on TensorRT <= 10: a folder of representative images.
        :param calib_cache: INT8 calibration cache file, read if present and written after.
        :param calibrator: entropy (IInt8EntropyCalibrator2) or minmax (IInt8MinMaxCalibrator).
        :param calib_batch: images per calibration batch.
        :param calib_limit: at most this many calibration images.
        :param timing_cache: timing cache file, read if present and written after the build.
        :param shapes: input name -> (min, opt, max) shapes for dynamic inputs.
        :param config_path: the model config (for the calibration images' preprocessing).
        :param profiles: optimisation profiles for a network with dynamic inputs, identical, one
            per executor slot (the node's ``executor_depth``, default 2).
        :raises ConfigError: on a value out of range.
        """
        if precision not in PRECISIONS:
            raise ConfigError('precision {!r} is not one of {}.'.format(precision, PRECISIONS))
        if calibrator not in CALIBRATORS:
            raise ConfigError('calibrator {!r} is not one of {}.'.format(calibrator,
                                                                        CALIBRATORS))
        if workspace_mb < 1 or calib_batch < 1 or calib_limit < 1:
            raise ConfigError('workspace_mb, calib_batch and calib_limit must be positive.')
        if int(profiles) < 1:
            raise ConfigError('profiles must be at least 1 (one per executor slot, i.e. the '
                              "node's executor_depth), got {}.".format(profiles))
        self.precision = precision
        self.workspace_mb = int(workspace_mb)
        self.dla_core = dla_core
        self.calib_images = calib_images
        self.calib_cache = calib_cache
        self.calibrator = calibrator
        self.calib_batch = int(calib_batch)
        self.calib_limit = int(calib_limit)
        self.timing_cache = timing_cache
        self.shapes = dict(shapes or {})
        self.config_path = config_path
        self.profiles = int(profiles)

    def key_fields(self) -> Dict[str, Any]:
        """Return the options that change the engine (paths and cache files do not).

        ``profiles`` is there when shape profiles are given: a dynamic network needs them, so an
        engine built for 2 slots is not reused for 3. A static network's engine does not depend
        on it (its contexts share profile 0), and keeps its key.
        """
        fields = {'precision': self.precision, 'dla_core': self.dla_core,
                  'shapes': {k: [list(s) for s in v] for k, v in sorted(self.shapes.items())}}
        if self.shapes:
            fields['profiles'] = self.profiles
        if self.precision == 'int8':
            fields['calibrator'] = self.calibrator
        return fields


def parse_shape_profiles(text: Optional[str]) -> Dict[str, ShapeProfile]:
    """Parse ``'input:1x3x300x300:4x3x300x300:8x3x300x300,other:...'``.

    :raises UserError: on a malformed profile.
    """
    profiles = {}  # type: Dict[str, ShapeProfile]
    if not text:
        return profiles
    for item in text.split(','):
        parts = item.strip().rsplit(':', 3)
        if len(parts) != 4:
            raise UserError('Shape profile {!r}: write name:MIN:OPT:MAX with shapes like '
                            '1x3x300x300.'.format(item))
        try:
            shapes = [tuple(int(d) for d in p.split('x')) for p in parts[1:]]
        except ValueError:
            raise UserError('Shape profile {!r}: shapes are integers joined by x, e.g. '
                            '1x3x300x300.'.format(item)) from None
        if len({len(s) for s in shapes}) != 1 or any(
                not (a <= b <= c) for a, b, c in zip(*shapes)):
            raise UserError('Shape profile {!r}: MIN <= OPT <= MAX per dimension, same '
                            'rank.'.format(item))
        profiles[parts[0]] = (shapes[0], shapes[1], shapes[2])
    return profiles


# --------------------------------------------------------------------------- identity & keys

class DeviceIdentity(object):
    """The TensorRT version and GPU an engine is built for."""

    def __init__(self, trt_version: str, gpu_name: str, compute_capability: str) -> None:
        """Hold the three identity fields."""
        self.trt_version = trt_version
        self.gpu_name = gpu_name
        self.compute_capability = compute_capability

    def as_dict(self) -> Dict[str, str]:
        """Return the fields as a dict (stored in the metadata)."""
        return {'trt_version': self.trt_version, 'gpu_name': self.gpu_name,
                'compute_capability': self.compute_capability}


def device_identity() -> DeviceIdentity:
    """Return this machine's TensorRT version and GPU (probes the GPU before TensorRT)."""
    from tx2_inference.backends.tensorrt.runtime import import_tensorrt
    gpu, cc = gpu_name_and_capability()
    trt = import_tensorrt()
    return DeviceIdentity(str(trt.__version__), gpu, cc)


def cache_key(onnx_sha256: str, identity: DeviceIdentity, options: BuildOptions) -> str:
    """Return the engine's cache key: sha256 of ONNX hash, TensorRT, GPU and build options."""
    parts = {'onnx_sha256': onnx_sha256, 'identity': identity.as_dict(),
             'options': options.key_fields(), 'format': METADATA_FORMAT}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode('utf-8')).hexdigest()


# --------------------------------------------------------------------------- the cache

@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (released by the OS if the process dies)."""
    import fcntl
    os.makedirs(os.path.dirname(os.path.abspath(path)) or '.', exist_ok=True)
    with open(path, 'a') as f:
        waited = time.time()
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (IOError, OSError):
            LOG.info('another process is building this engine; waiting for it (%s)', path)
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            LOG.info('waited %.1f s for the other build', time.time() - waited)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class CacheEntry(object):
    """The files of one cached engine."""

    def __init__(self, folder: str, stem: str, precision: str, key: str) -> None:
        """Name the entry's engine, metadata and lock files."""
        base = os.path.join(folder, '{}.{}.{}'.format(stem, precision, key[:16]))
        self.key = key
        self.engine = base + '.engine'
        self.metadata = base + '.json'
        self.lock = base + '.lock'


BuildFn = Callable[[str, BuildOptions], bytes]


class EngineCache(object):
    """Engines keyed by ONNX hash, TensorRT version, GPU and options, in one folder."""

    def __init__(self, folder: str) -> None:
        """Use ``folder`` (created when first written)."""
        self.folder = folder

    def entry(self, onnx_path: str, onnx_sha256: str, identity: DeviceIdentity,
              options: BuildOptions) -> CacheEntry:
        """Return the entry (files may not exist) for this ONNX, device and options."""
        stem = os.path.splitext(os.path.basename(onnx_path))[0]
        return CacheEntry(self.folder, stem, options.precision,
                          cache_key(onnx_sha256, identity, options))

    @staticmethod
    def read_metadata(path: str) -> Optional[Dict[str, Any]]:
        """Return an engine's metadata, or None if missing or unreadable."""
        try:
            with open(path) as f:
                data = json.load(f)
        except (IOError, OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def check(self, entry: CacheEntry) -> str:
        """Return 'ok', 'missing' or 'corrupt' (metadata or checksum do not match)."""
        if not os.path.isfile(entry.engine) or not os.path.isfile(entry.metadata):
            return 'missing'
        meta = self.read_metadata(entry.metadata)
        if not meta or meta.get('key') != entry.key:
            return 'corrupt'
        if os.path.getsize(entry.engine) != meta.get('engine_bytes'):
            return 'corrupt'
        if file_sha256(entry.engine) != meta.get('engine_sha256'):
            return 'corrupt'
        return 'ok'

    def store(self, entry: CacheEntry, engine: bytes, metadata: Dict[str, Any]) -> None:
        """Write the engine, then its metadata, each atomically (metadata last: it commits)."""
        if not engine:
            raise ModelError('TensorRT returned an empty engine; nothing was written.')
        with contextlib.suppress(OSError):
            os.unlink(entry.metadata)  # an old entry stops being valid before it is replaced
        atomic_write_bytes(entry.engine, engine)
        meta = dict(metadata)
        meta.update({'format': METADATA_FORMAT, 'key': entry.key,
                     'engine_sha256': hashlib.sha256(engine).hexdigest(),
                     'engine_bytes': len(engine),
                     'engine_file': os.path.basename(entry.engine)})
        atomic_write_text(entry.metadata, json.dumps(meta, indent=1, sort_keys=True) + '\n')

    def get_or_build(self, onnx_path: str, options: BuildOptions, identity: DeviceIdentity,
                     build_fn: BuildFn, force: bool = False) -> str:
        """Return a valid cached engine for ``onnx_path``, building it under the lock if needed.

        :param build_fn: ``(onnx_path, options) -> engine bytes``; the real one is
            :func:`build_engine_bytes` (tests replace only this function).
        """
        if not os.path.isfile(onnx_path):
            raise ModelError('ONNX model {!r} does not exist: copy the .onnx file (and its '
                             '.yaml) to the robot.'.format(onnx_path))
        onnx_sha = file_sha256(onnx_path)
        entry = self.entry(onnx_path, onnx_sha, identity, options)
        if not force and self.check(entry) == 'ok':
            LOG.info('engine cache hit: %s', entry.engine)
            return entry.engine
        with file_lock(entry.lock):
            state = self.check(entry)  # another process may have built it while we waited
            if state == 'ok' and not force:
                LOG.info('engine built by another process: %s', entry.engine)
                return entry.engine
            if state == 'corrupt':
                LOG.warning('engine %s fails its checksum (corrupted?): rebuilding',
                            entry.engine)
            self._remove_temp_files(entry)
            started = time.time()
            engine = build_fn(onnx_path, options)
            seconds = time.time() - started
            meta = {'onnx_sha256': onnx_sha, 'onnx_path': os.path.abspath(onnx_path),
                    'options': options.key_fields(), 'build_seconds': round(seconds, 3),
                    'built_at': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
            meta.update(identity.as_dict())
            self.store(entry, engine, meta)
            LOG.info('engine built in %.1f s: %s', seconds, entry.engine)
            return entry.engine

    def _remove_temp_files(self, entry: CacheEntry) -> None:
        """Delete temp files a killed build left behind for this entry."""
        if not os.path.isdir(self.folder):
            return
        for name in os.listdir(self.folder):
            for target in (entry.engine, entry.metadata):
                prefix = '.' + os.path.basename(target) + '.'
                if name.startswith(prefix) and name.endswith('.tmp'):
                    with contextlib.suppress(OSError):
                        os.unlink(os.path.join(self.folder, name))


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
    LOG.warning('engine %s %s: rebuilding from %s', engine_path, problem, onnx_path)
    if options is None:
        saved = (meta or {}).get('options') or {}
        shapes = {name: (tuple(lo), tuple(opt), tuple(hi))
                  for name, (lo, opt, hi) in (saved.get('shapes') or {}).items()}
        options = BuildOptions(precision=saved.get('precision', 'fp16'),
                               dla_core=saved.get('dla_core'), shapes=shapes,
                               profiles=saved.get('profiles', 2))
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


# --------------------------------------------------------------------------- calibration

class CalibrationBatches(object):
    """Full batches of preprocessed calibration images (no GPU; what the calibrator feeds).

    Only full batches are produced, as TensorRT's calibrators expect a constant batch size:
    ``len(paths) // batch_size`` batches; the remainder is logged and skipped.
    """

    def __init__(self, paths: Sequence[str], input_cfg: Dict[str, Any],
                 shape: Sequence[int], dtype: Any, batch_size: int) -> None:
        """Plan batches of ``batch_size`` over ``paths`` for an input of ``shape`` (batch 1)."""
        if batch_size < 1:
            raise ConfigError('calibration batch size must be positive.')
        if len(paths) < batch_size:
            raise UserError('{} calibration image(s) for a batch of {}: give more images or a '
                            'smaller --calib-batch.'.format(len(paths), batch_size))
        self.paths = list(paths)
        self.input_cfg = input_cfg
        self.item_shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.batch_size = int(batch_size)
        self.count = len(self.paths) // self.batch_size
        skipped = len(self.paths) - self.count * self.batch_size
        if skipped:
            LOG.info('calibration: %d image(s) left out to keep batches of %d', skipped,
                     batch_size)

    @property
    def batch_shape(self) -> Tuple[int, ...]:
        """Return the shape of one batch (batch size first)."""
        return (self.batch_size,) + self.item_shape[1:]

    @property
    def nbytes(self) -> int:
        """Return the size of one batch in bytes (the device buffer to allocate)."""
        return int(np.prod(self.batch_shape)) * self.dtype.itemsize

    def __len__(self) -> int:
        """Return the number of full batches."""
        return self.count

    def __iter__(self) -> Iterator[np.ndarray]:
        """Yield contiguous batches of ``batch_shape`` and ``dtype``."""
        from tx2_inference.core import images
        out = np.empty(self.batch_shape, self.dtype)
        for b in range(self.count):
            for i, path in enumerate(self.paths[b * self.batch_size:(b + 1) * self.batch_size]):
                out[i] = images.prepare(images.read_rgb(path), self.input_cfg, self.item_shape,
                                        self.dtype)[0]
            yield out


def make_calibrator(trt: Any, kind: str, batches: Optional[CalibrationBatches],
                    cache_path: Optional[str]) -> Any:
    """Return an ``IInt8EntropyCalibrator2`` or ``IInt8MinMaxCalibrator`` (TensorRT <= 10).

    Mirrors NVIDIA's sample calibrators: ``get_batch_size``, ``get_batch(names)`` returning
    device pointers (None when done), ``read_calibration_cache`` / ``write_calibration_cache``.
    With a cache file and no images, TensorRT calibrates from the cache alone.
    """
    base = trt.IInt8MinMaxCalibrator if kind == 'minmax' else trt.IInt8EntropyCalibrator2

    class Calibrator(base):  # type: ignore
        """Feeds ``batches`` to TensorRT through one device buffer."""

        def __init__(self) -> None:
            base.__init__(self)
            self.batches = batches
            self.cache_path = cache_path
            self.device = None  # type: Any
            self.buffer = None  # type: Any
            self.iterator = iter(batches) if batches is not None else None
            self.done = 0
            if batches is not None:
                from tx2_inference.backends.tensorrt.cuda import open_cuda
                self.device = open_cuda()
                self.device.push()
                self.buffer = self.device.mem_alloc(batches.nbytes)
                self.stream = self.device.stream()
                self.event = self.device.event()

        def get_batch_size(self) -> int:
            return self.batches.batch_size if self.batches is not None else 1

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            if self.iterator is None:
                return None
            try:
                batch = next(self.iterator)
            except StopIteration:
                LOG.info('calibration: all %d batches fed', self.done)
                return None
            self.device.memcpy_htod_async(self.buffer, batch, self.stream)
            self.device.record(self.event, self.stream)
            self.device.synchronize(self.event)
            self.done += 1
            LOG.info('calibration batch %d/%d', self.done, len(self.batches))
            return [int(self.buffer)]

        def read_calibration_cache(self) -> Optional[bytes]:
            if self.cache_path and os.path.isfile(self.cache_path):
                LOG.info('using calibration cache %s', self.cache_path)
                with open(self.cache_path, 'rb') as f:
                    return f.read()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if self.cache_path:
                atomic_write_bytes(self.cache_path, bytes(cache))
                LOG.info('wrote calibration cache %s', self.cache_path)

        def release(self) -> None:
            if self.device is not None:
                self.device.free(self.buffer, self.stream, self.event)
                self.device.pop()
                self.device.close()
                self.device = None

    return Calibrator()


# --------------------------------------------------------------------------- the build

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


def _is_qdq(onnx_path: str) -> bool:
    """Return True if the ONNX model has QuantizeLinear/DequantizeLinear nodes."""
    import onnx
    model = onnx.load(onnx_path, load_external_data=False)
    return any(n.op_type in ('QuantizeLinear', 'DequantizeLinear') for n in model.graph.node)


def _input_cfg(options: BuildOptions, onnx_path: str) -> Dict[str, Any]:
    """Return the model config's input section (for calibration preprocessing)."""
    from tx2_inference.core.model_config import config_path_for, ModelConfig
    path = options.config_path or config_path_for(onnx_path)
    return dict(ModelConfig.load(path).to_dict().get('input') or {})


def build_engine_bytes(onnx_path: str, options: BuildOptions) -> bytes:
    """Build a serialized TensorRT engine from ONNX (needs TensorRT and a GPU).

    :raises BackendUnavailableError: no GPU / no TensorRT.
    :raises ModelError: the ONNX cannot be parsed, or the build fails.
    """
    from tx2_inference.backends.tensorrt.api import builder_features, network_flags
    from tx2_inference.backends.tensorrt.runtime import import_tensorrt, tensorrt_logger
    trt = import_tensorrt()  # probes the GPU first: TensorRT segfaults without one
    if not hasattr(trt, 'Builder'):
        raise BackendUnavailableError(
            'this TensorRT ({} {}) is the runtime-only package (no Builder/OnnxParser): build '
            'the engine where full TensorRT is installed (JetPack: python3-libnvinfer), or pass '
            'a prebuilt engine.'.format(trt.__name__, trt.__version__))
    logger = tensorrt_logger(trt)
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    feats = builder_features(dir(config), trt.BuilderFlag.__members__, dir(trt), dir(builder))
    qdq = _is_qdq(onnx_path)
    flag_enum = trt.NetworkDefinitionCreationFlag
    flags = 0
    for name in network_flags(trt.__version__, flag_enum.__members__,
                              strongly_typed=qdq and options.precision == 'int8'):
        flags |= 1 << int(getattr(flag_enum, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    with open(onnx_path, 'rb') as f:
        if not parser.parse(f.read()):
            errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
            raise ModelError('TensorRT cannot parse {!r}: {}. Re-export with a fixed input '
                             'shape and cut unsupported ops (tx2-convert onnx --outputs).'
                             .format(onnx_path, '; '.join(errors) or 'unknown error'))
    # workspace: max_workspace_size up to 8.3, set_memory_pool_limit from 8.4
    if feats.workspace == 'set_memory_pool_limit':
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)
    elif feats.workspace == 'max_workspace_size':
        config.max_workspace_size = options.workspace_mb << 20
    calibrator = _set_precision(trt, builder, config, network, feats, qdq, onnx_path, options)
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
    try:
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


def _set_precision(trt: Any, builder: Any, config: Any, network: Any, feats: Any, qdq: bool,
                   onnx_path: str, options: BuildOptions) -> Any:
    """Set FP16/INT8 flags and the calibrator; warn where the GPU lacks fast support."""
    precision = options.precision
    if not feats.precision_flags:  # TensorRT 11: strongly typed, precision is in the ONNX
        if precision == 'int8' and not qdq:
            raise UserError('TensorRT {} builds INT8 only from a QDQ ONNX: run `tx2-convert '
                            'quantize {} --calib-images DIR -o model_int8.onnx` and build that.'
                            .format(trt.__version__, onnx_path))
        if precision == 'fp16':
            LOG.warning('TensorRT %s is strongly typed: an FP32 ONNX builds an FP32 engine; '
                        'export an FP16 ONNX for FP16.', trt.__version__)
        return None
    if precision in ('fp16', 'int8'):
        if not getattr(builder, 'platform_has_fast_fp16', True):
            LOG.warning('this GPU has no fast FP16: an FP16 engine may not be faster.')
        config.set_flag(trt.BuilderFlag.FP16)
    if precision != 'int8':
        return None
    if not getattr(builder, 'platform_has_fast_int8', True):
        LOG.warning('this GPU has no fast INT8 (e.g. Tegra X2, sm_62): INT8 will not be faster '
                    'than FP16 here; prefer --precision fp16.')
    config.set_flag(trt.BuilderFlag.INT8)
    if qdq:
        LOG.info('QDQ ONNX: INT8 scales come from the model, no calibration')
        return None
    if not feats.calibrators:
        raise UserError('this TensorRT has no INT8 calibrators: build from a QDQ ONNX '
                        '(tx2-convert quantize).')
    have_cache = bool(options.calib_cache and os.path.isfile(options.calib_cache))
    batches = None
    if options.calib_images:
        from tx2_inference.core import images
        inp = network.get_input(0)
        shape = [d if d > 0 else 1 for d in inp.shape]
        batches = CalibrationBatches(images.list_images(options.calib_images,
                                                        options.calib_limit),
                                     _input_cfg(options, onnx_path), [1] + list(shape[1:]),
                                     trt.nptype(inp.dtype), options.calib_batch)
    elif not have_cache:
        raise UserError('INT8 needs calibration: pass --calib-images DIR (a few hundred images '
                        'like the camera sees) or an existing --calib-cache.')
    calibrator = make_calibrator(trt, options.calibrator, batches, options.calib_cache)
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
