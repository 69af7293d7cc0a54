"""The engine cache: device identity, keys, the lock, atomic entries with metadata and checksum.

An engine is specific to the ONNX file, the TensorRT version, the GPU and the build options
(workspace and INT8 calibration data included), so its key is the sha256 of all of them
(:func:`cache_key`). Beside each ``<name>.<precision>.<key>.engine`` is a ``.json`` metadata file
holding the key's parts, what a rebuild needs besides them (``build``: calibration images and
cache, timing cache, model config) and the engine's own sha256. Writes are atomic (temp file,
fsync, ``os.replace``; metadata last), so a build killed at any point leaves either no entry or
a complete one. A lock file serialises builders of the same key: two processes asking for one
engine build it once. An entry whose checksum does not match (a corrupted file) is rebuilt.

The cache folder is trusted code for the GPU: a folder that another user owns (root aside) or
that group or others may write is refused before any entry is read, a new one is made 0700,
and lock files are opened without following links (``O_NOFOLLOW``). ``prune`` keeps the newest
entries of each model (``tx2-convert engine --prune N``).

No TensorRT import here except in :func:`device_identity` (after the GPU probe); the build
itself is handed in as a function (``builder.build_engine_bytes``; tests replace only that).
"""

import contextlib
import hashlib
import json
import logging
import os
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

from tx2_inference.backends.tensorrt import loader
from tx2_inference.backends.tensorrt.cuda import gpu_name_and_capability
from tx2_inference.backends.tensorrt.options import BuildOptions
from tx2_inference.core.fileio import atomic_write_bytes, atomic_write_text, file_sha256
from tx2_inference.errors import ModelError

LOG = logging.getLogger('tx2_inference.backends.tensorrt.cache')

METADATA_FORMAT = 1

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
    gpu, cc = gpu_name_and_capability()
    trt = loader.import_tensorrt()
    return DeviceIdentity(str(trt.__version__), gpu, cc)


def cache_key(onnx_sha256: str, identity: DeviceIdentity, options: BuildOptions) -> str:
    """Return the engine's cache key: sha256 of ONNX hash, TensorRT, GPU and build options."""
    parts = {'onnx_sha256': onnx_sha256, 'identity': identity.as_dict(),
             'options': options.key_fields(), 'format': METADATA_FORMAT}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode('utf-8')).hexdigest()



def check_folder(folder: str) -> None:
    """Create ``folder`` (0700) if missing; refuse one that others could plant engines in.

    :raises ModelError: owned by another user (root aside), or writable by group or others.
    """
    if not os.path.isdir(folder):
        os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.stat(folder)
    if info.st_uid not in (os.getuid(), 0):
        raise ModelError('engine cache folder {!r} belongs to another user (uid {}): an engine '
                         'there runs on the GPU as this process. Use a folder of your own '
                         '(engine_cache_dir, --cache-dir).'.format(folder, info.st_uid))
    if info.st_mode & 0o022:
        raise ModelError('engine cache folder {!r} is writable by group or others (mode {:o}): '
                         'anyone could plant an engine there. chmod go-w it, or use a folder '
                         'of your own (engine_cache_dir, --cache-dir).'.format(
                             folder, info.st_mode & 0o777))


@contextlib.contextmanager
def file_lock(path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (released by the OS if the process dies).

    The lock file is opened without following a link: a link planted there is refused.
    """
    import fcntl
    os.makedirs(os.path.dirname(os.path.abspath(path)) or '.', exist_ok=True)
    flags = os.O_RDWR | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0) | getattr(os, 'O_CLOEXEC', 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError as error:
        raise ModelError('cannot open the engine cache lock {!r} ({}): a link there is refused; '
                         'remove it.'.format(path, error.strerror)) from error
    with os.fdopen(fd, 'a') as f:
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
        check_folder(self.folder)
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
                    'options': options.key_fields(), 'build': options.build_fields(),
                    'build_seconds': round(seconds, 3),
                    'built_at': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
            meta.update(identity.as_dict())
            self.store(entry, engine, meta)
            LOG.info('engine built in %.1f s: %s', seconds, entry.engine)
            return entry.engine

    def prune(self, keep: int, stem: Optional[str] = None) -> List[str]:
        """Delete all but the ``keep`` newest entries of each model (or of ``stem`` only).

        An entry is ``<stem>.<precision>.<key>.engine`` with its ``.json`` and ``.lock``;
        newest by the metadata's file time. Returns the engines deleted.
        """
        if keep < 0:
            raise ValueError('keep must be 0 or more')
        check_folder(self.folder)
        models: Dict[str, List[Any]] = {}  # model -> [(time, engine path)]
        for name in os.listdir(self.folder):
            parts = name.rsplit('.', 3)
            if len(parts) != 4 or parts[3] != 'engine' or (stem and parts[0] != stem):
                continue
            path = os.path.join(self.folder, name)
            meta = os.path.splitext(path)[0] + '.json'
            when = os.path.getmtime(meta if os.path.isfile(meta) else path)
            models.setdefault(parts[0], []).append((when, path))
        removed = []
        for entries in models.values():
            for _, path in sorted(entries, reverse=True)[keep:]:
                base = os.path.splitext(path)[0]
                for target in (base + '.json', path, base + '.lock'):
                    with contextlib.suppress(OSError):
                        os.unlink(target)  # metadata first: a half-removed entry is invalid
                removed.append(path)
                LOG.info('pruned %s', path)
        return sorted(removed)

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



def engine_metadata(engine_path: str) -> Optional[Dict[str, Any]]:
    """Return the metadata beside an engine (``<engine>.json``), or None."""
    return EngineCache.read_metadata(os.path.splitext(engine_path)[0] + '.json')
