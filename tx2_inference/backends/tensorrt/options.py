"""What a TensorRT engine is built with: ``BuildOptions``, the precisions, shape profiles.

No TensorRT here: the options are checked and turned into the fields of the engine's cache key
(``cache.py``) before anything is built.
"""

from typing import Any, Dict, Optional, Tuple

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
        only when set, so the keys of existing engines do not change.
        """
        fields = {'precision': self.precision, 'dla_core': self.dla_core,
                  'shapes': {k: [list(s) for s in v] for k, v in sorted(self.shapes.items())}}
        if self.shapes:
            fields['profiles'] = self.profiles
        if self.precision == 'int8':
            fields['calibrator'] = self.calibrator
        if self.version_compatible:
            fields['version_compatible'] = True
        return fields

    @classmethod
    def from_key_fields(cls, saved: Dict[str, Any]) -> 'BuildOptions':
        """Return the options an engine's metadata (``key_fields``) records, to rebuild it."""
        shapes = {name: (tuple(lo), tuple(opt), tuple(hi))
                  for name, (lo, opt, hi) in (saved.get('shapes') or {}).items()}
        return cls(precision=saved.get('precision', 'fp16'), dla_core=saved.get('dla_core'),
                   shapes=shapes, profiles=saved.get('profiles', 2),
                   calibrator=saved.get('calibrator', 'entropy'),
                   version_compatible=bool(saved.get('version_compatible', False)))


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
