"""What a TensorRT engine is built with: ``BuildOptions``, the precisions, shape profiles.

No TensorRT here: the options are checked and turned into the fields of the engine's cache key
(``cache.py``) before anything is built. ``build_fields`` are what a rebuild needs besides the
key (calibration images and cache, timing cache, the model config: paths), kept in an engine's
metadata so a stale engine is rebuilt as it was built (``from_metadata``), and
``engine_command`` is the ``tx2-convert engine`` line that builds it by hand.
"""

import hashlib
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tx2_inference.backends import PRECISIONS
from tx2_inference.errors import ConfigError, UserError

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
                 config_path: Optional[str] = None, profiles: int = 2,
                 version_compatible: bool = False) -> None:
        """Check and hold the options.

        :param precision: fp32, fp16 or int8.
        :param workspace_mb: builder workspace memory pool limit.
        :param dla_core: a DLA core (Xavier/Orin) with GPU fallback, or None for the GPU.
        :param calib_images: INT8 on TensorRT <= 10: a folder of representative images.
        :param calib_cache: INT8 calibration cache file, read if present and written after.
        :param calibrator: entropy (IInt8EntropyCalibrator2) or minmax (IInt8MinMaxCalibrator).
        :param calib_batch: images per calibration batch, where the network's batch is dynamic
            (clamped to its shape profile); a static network calibrates in its own batch.
        :param calib_limit: at most this many calibration images.
        :param timing_cache: timing cache file, read if present and written after the build.
        :param shapes: input name -> (min, opt, max) shapes for dynamic inputs.
        :param config_path: the model config (for the calibration images' preprocessing).
        :param profiles: optimisation profiles for a network with dynamic inputs, identical, one
            per executor slot (the node's ``executor_depth``, default 2).
        :param version_compatible: build with ``VERSION_COMPATIBLE | EXCLUDE_LEAN_RUNTIME``
            (TensorRT 8.6+), so the runtime-only ``tensorrt_lean`` package can run the engine;
            no plugins (EfficientNMS, ...) in the model.
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
        self.version_compatible = bool(version_compatible)

    def key_fields(self) -> Dict[str, Any]:
        """Return the options that change the engine (paths and cache files do not).

        ``profiles`` is there when shape profiles are given: a dynamic network needs them, so an
        engine built for 2 slots is not reused for 3. A static network's engine does not depend
        on it (its contexts share profile 0), and keeps its key. ``version_compatible`` is there
        only when set. ``workspace_mb`` is always there (the tactics TensorRT may pick depend
        on it). For INT8, ``calibration`` is the sha256 of the calibration data TensorRT will
        use (:meth:`calibration_digest`): a new image set or cache is a new engine.
        """
        fields = {'precision': self.precision, 'dla_core': self.dla_core,
                  'workspace_mb': self.workspace_mb,
                  'shapes': {k: [list(s) for s in v] for k, v in sorted(self.shapes.items())}}
        if self.shapes:
            fields['profiles'] = self.profiles
        if self.precision == 'int8':
            fields['calibrator'] = self.calibrator
            fields['calibration'] = self.calibration_digest()
        if self.version_compatible:
            fields['version_compatible'] = True
        return fields

    def calibration_digest(self) -> Optional[str]:
        """Return the sha256 of the INT8 calibration data, or None without any.

        With ``calib_images``: the images calibrated (names and content, at most
        ``calib_limit``) and ``calib_batch`` (the calibration cache written from them belongs to
        them: ``calibrator.py`` recalibrates when it was made from other images). Else the
        ``calib_cache`` file's content. Computed once per options object.
        """
        if getattr(self, '_calibration_digest', 0) != 0:
            return self._calibration_digest
        digest = None  # type: Optional[str]
        if self.calib_images:
            digest = images_digest(self.calib_images, self.calib_limit, self.calib_batch)
        elif self.calib_cache and os.path.isfile(self.calib_cache):
            with open(self.calib_cache, 'rb') as f:
                digest = 'cache:' + hashlib.sha256(f.read()).hexdigest()
        self._calibration_digest = digest
        return digest

    def build_fields(self) -> Dict[str, Any]:
        """Return what a rebuild needs besides ``key_fields``: paths (absolute) and counts."""
        path = lambda p: os.path.abspath(p) if p else None  # noqa: E731
        return {'workspace_mb': self.workspace_mb, 'calib_images': path(self.calib_images),
                'calib_cache': path(self.calib_cache), 'calibrator': self.calibrator,
                'calib_batch': self.calib_batch, 'calib_limit': self.calib_limit,
                'timing_cache': path(self.timing_cache), 'config_path': path(self.config_path)}

    @classmethod
    def from_key_fields(cls, saved: Dict[str, Any]) -> 'BuildOptions':
        """Return the options an engine's metadata (``key_fields``) records, to rebuild it."""
        shapes = {name: (tuple(lo), tuple(opt), tuple(hi))
                  for name, (lo, opt, hi) in (saved.get('shapes') or {}).items()}
        return cls(precision=saved.get('precision', 'fp16'), dla_core=saved.get('dla_core'),
                   shapes=shapes, profiles=saved.get('profiles', 2),
                   calibrator=saved.get('calibrator', 'entropy'),
                   workspace_mb=saved.get('workspace_mb', 1024),
                   version_compatible=bool(saved.get('version_compatible', False)))

    @classmethod
    def from_metadata(cls, meta: Dict[str, Any]) -> 'BuildOptions':
        """Return the options an engine was built with: its key fields and build fields.

        Metadata written before the build fields were kept has the key fields only.
        """
        options = cls.from_key_fields(meta.get('options') or {})
        build = meta.get('build') or {}
        for name in ('calib_images', 'calib_cache', 'timing_cache', 'config_path'):
            setattr(options, name, build.get(name))
        for name in ('workspace_mb', 'calib_batch', 'calib_limit'):
            if build.get(name):
                setattr(options, name, int(build[name]))
        return options

    def calibration_missing(self) -> List[str]:
        """Return what an INT8 calibration recorded here needs and does not find, if anything."""
        if self.precision != 'int8':
            return []
        if self.calib_images and os.path.isdir(self.calib_images):
            return []
        if self.calib_cache and os.path.isfile(self.calib_cache):
            return []
        missing = []
        if self.calib_images:
            missing.append('the calibration images {!r}'.format(self.calib_images))
        if self.calib_cache:
            missing.append('the calibration cache {!r}'.format(self.calib_cache))
        return missing or ['calibration images or a calibration cache (none was recorded)']

    def engine_command(self, onnx_path: str, output: Optional[str] = None) -> str:
        """Return the ``tx2-convert engine`` command that builds this engine."""
        words = ['tx2-convert', 'engine', onnx_path, '--precision', self.precision]
        if self.workspace_mb != 1024:
            words += ['--workspace-mb', str(self.workspace_mb)]
        if self.shapes:
            words += ['--shapes', ','.join('{}:{}'.format(name, ':'.join(
                'x'.join(str(d) for d in s) for s in profile))
                for name, profile in sorted(self.shapes.items())),
                '--profiles', str(self.profiles)]
        if self.dla_core is not None:
            words += ['--dla-core', str(self.dla_core)]
        if self.precision == 'int8':
            words += ['--calib-images', self.calib_images or 'DIR']
            if self.calib_cache:
                words += ['--calib-cache', self.calib_cache]
            if self.calibrator != 'entropy':
                words += ['--calibrator', self.calibrator]
        if self.timing_cache:
            words += ['--timing-cache', self.timing_cache]
        if self.config_path:
            words += ['--config', self.config_path]
        if self.version_compatible:
            words.append('--version-compatible')
        if output:
            words += ['-o', output]
        return ' '.join(words)


def images_digest(folder: str, limit: Optional[int], batch: int) -> str:
    """Return the sha256 of the images ``list_images(folder, limit)`` gives, names and content.

    A folder that does not exist (yet) gives the digest of its name alone.
    """
    from tx2_inference.core.images import list_images
    h = hashlib.sha256('batch {}\n'.format(batch).encode('utf-8'))
    try:
        paths = list_images(folder, limit)
    except UserError:
        paths = []
        h.update(os.path.abspath(folder).encode('utf-8'))
    for path in paths:
        h.update(os.path.basename(path).encode('utf-8') + b'\0')
        with open(path, 'rb') as f:
            h.update(hashlib.sha256(f.read()).digest())
    return 'images:' + h.hexdigest()


def batch_shapes(inputs: Sequence[Tuple[str, Sequence[int]]], batch: int,
                 strict: bool = False) -> Dict[str, ShapeProfile]:
    """Return the shape profiles for batches 1..``batch`` of the inputs with a free batch.

    What ``tx2-convert engine --batch N`` builds and the node builds for ``batch_size`` N: for
    each input whose first dimension is free and the others fixed, MIN batch 1, OPT and MAX
    batch N. An input with a fixed first dimension gets none (it runs its own batch).

    :param inputs: (name, dims) of the model's inputs, -1 where free.
    :param strict: refuse an input whose fixed batch is not ``batch`` (the CLI's ``--batch``).
    :raises UserError: with ``strict``, an input that cannot be batched as asked.
    """
    profiles = {}  # type: Dict[str, ShapeProfile]
    for name, dims in inputs:
        dims = [int(d) for d in dims]
        if not dims or dims[0] == batch:
            continue
        if dims[0] > 0 or any(d < 0 for d in dims[1:]):
            if strict:
                raise UserError(
                    '--batch {}: input {!r} has shape {}; a batch needs a free first dimension '
                    'and fixed others: convert it with tx2-convert onnx --batch dynamic (or '
                    '--batch {}), or give --shapes.'.format(batch, name, dims, batch))
            continue
        rest = tuple(dims[1:])
        profiles[name] = ((1,) + rest, (int(batch),) + rest, (int(batch),) + rest)
    return profiles


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
